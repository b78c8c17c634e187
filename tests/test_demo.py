"""The demo command with tiny random models: the table, both figures, and the --train path."""

import pytest
import torch
from PIL import Image

from sr3_edu import demo
from sr3_edu.checkpoint import model_file, save_atomic
from sr3_edu.cli import main
from sr3_edu.unet import SR3UNet


def tiny_unet(seed=0):
    torch.manual_seed(seed)
    model = SR3UNet(base_channels=8, channel_mults=(1, 1, 1, 1), num_res_blocks=1, attn_levels=(), head_channels=8)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    return model.eval()


@pytest.fixture
def model_files(tmp_path):
    sr3 = save_atomic(model_file(tiny_unet(), objective="sr3", scale=4, inference={"steps": 50}), tmp_path / "s.pt")
    reg = save_atomic(model_file(tiny_unet(1), objective="regression", scale=4), tmp_path / "r.pt")
    return sr3, reg


def test_demo_prints_the_table_and_writes_both_figures(tmp_path, model_files, capsys):
    sr3, reg = model_files
    out = tmp_path / "figs"
    args = ["demo", "--checkpoint", str(sr3), "--regression", str(reg), "--steps", "4", "--samples", "2"]
    assert main(args + ["--crop", "32", "--out-dir", str(out), "--no-progress", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    for method in ("bicubic", "regression", "SR3 (a sample)", "SR3 mean of K"):
        assert method in text
    assert "4 steps" in text and "demo took" in text
    for name in ("demo.png", "refinement.png"):
        with Image.open(out / name) as im:
            im.load()
            assert im.width > 200 and im.height > 100
    with Image.open(out / "demo.png") as d, Image.open(out / "refinement.png") as r:
        assert d.height > d.width  # three photos, each with a zoomed row, under five columns
        assert r.width > r.height  # a strip


def test_demo_without_a_regression_model_drops_its_column(tmp_path, model_files, capsys):
    sr3, _ = model_files
    args = ["demo", "--checkpoint", str(sr3), "--regression", "none", "--steps", "2", "--samples", "1"]
    assert main(args + ["--crop", "24", "--out-dir", str(tmp_path), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "bicubic" in text and not any(line.startswith("regression") for line in text.splitlines())
    assert (tmp_path / "demo.png").is_file()


def test_demo_refuses_bad_options_and_a_wrong_model_kind(tmp_path, model_files, capsys):
    sr3, reg = model_files
    assert main(["demo", "--checkpoint", str(reg), "--out-dir", str(tmp_path)]) == 1
    assert "'regression' model" in capsys.readouterr().err
    assert main(["demo", "--checkpoint", str(sr3), "--samples", "0", "--out-dir", str(tmp_path)]) == 1
    assert "--samples" in capsys.readouterr().err
    assert not (tmp_path / "demo.png").exists()


@pytest.mark.slow
def test_demo_train_trains_both_models_then_runs(tmp_path, monkeypatch, capsys):
    from sr3_edu.train import TrainConfig

    def small_recipe(objective, steps):
        # the shipped recipe's path, shrunk: a 2-level U-Net, a few steps, no sample grids
        return TrainConfig.preset(
            "tiny",
            objective=objective,
            unet_overrides={"base_channels": 8, "channel_mults": (1, 2), "attn_levels": (1,), "head_channels": 8},
            hr_size=32,
            batch_size=2,
            steps=steps,
            warmup=1,
            sample_every=0,
            save_every=0,
            sample_images=1,
            device="cpu",
        )

    monkeypatch.setattr(demo, "_recipe", small_recipe)
    out = tmp_path / "figs"
    args = ["demo", "--train", "--train-steps", "2", "--train-dir", str(tmp_path / "runs"), "--steps", "2"]
    assert main(args + ["--samples", "1", "--crop", "24", "--out-dir", str(out), "--no-progress"]) == 0
    assert (tmp_path / "runs" / "sr3" / "checkpoints" / "last.pt").is_file()
    exported = sorted(p.name for p in (tmp_path / "runs").glob("*.pt"))
    assert exported == ["regression_tiny_x4.pt", "sr3_tiny_x4.pt"]
    assert (out / "demo.png").is_file() and (out / "refinement.png").is_file()
    assert "with training" in capsys.readouterr().out
