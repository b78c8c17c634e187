"""super_resolve and the `upscale` command: schedules, padding, exact output sizes, bad input."""

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sr3_edu.checkpoint import model_file, save_atomic
from sr3_edu.cli import main
from sr3_edu.commands.flags import add_sampler_arguments, add_tile_argument, sampler_options
from sr3_edu.files import write_image_atomic
from sr3_edu.images import upscale_bicubic
from sr3_edu.inference import (
    DEFAULT_INFERENCE,
    SamplerOptions,
    describe,
    inference_options,
    inference_schedule,
    training_schedule,
)
from sr3_edu.pipeline import TiledModel
from sr3_edu.regression import regress
from sr3_edu.schedule import NoiseSchedule
from sr3_edu.unet import SR3UNet
from sr3_edu.upscale import super_resolve

ROOT = Path(__file__).resolve().parents[1]


class BicubicOracle(torch.nn.Module):
    """The optimal noise predictor when y_0 = bicubic(x) exactly: ε̂ = (y_t − √γ · bicubic(x)) / √(1−γ).

    Any correct sampler, with any schedule, then ends on bicubic(x) (at t = 1, γ_0 = 1 makes the last step
    return ŷ_0 itself). ``multiple`` mimics a U-Net's size constraint.
    """

    def __init__(self, multiple: int = 1):
        super().__init__()
        self.multiple = multiple
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x_lr, y_t, gamma):
        H, W = y_t.shape[-2:]
        assert H % self.multiple == 0 and W % self.multiple == 0, (H, W)
        g = gamma.reshape(-1, 1, 1, 1).to(y_t)
        up = F.interpolate(x_lr, size=(H, W), mode="bicubic", align_corners=False)
        return (y_t - g.sqrt() * up) / (1 - g).sqrt()


def tiny_unet(seed=0):
    """A 40k-parameter U-Net (4 levels, so sides must be multiples of 8 like the real tiny preset), random weights."""
    torch.manual_seed(seed)
    model = SR3UNet(base_channels=8, channel_mults=(1, 1, 1, 1), num_res_blocks=1, attn_levels=(), head_channels=8)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)  # the zero-initialised output layer would make every sample the same
    return model.eval()


def write_model(path, objective="sr3", inference=None):
    save_atomic(model_file(tiny_unet(), objective=objective, scale=4, inference=inference), path)
    return path


# β from 1e-3: γ_1 = 0.999 is exact enough in float32 for the oracle's division by √(1−γ); with the default
# β_1 = 1e-6, float32 rounding of γ_1 alone moves 1 − γ_1 by 1 %, which the division amplifies.
ORACLE_TRAIN = NoiseSchedule.linear(1000, 1e-3, 2e-2)


def lr_batch(B=2, h=13, w=21, seed=0):
    return torch.rand(B, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ------------------------------------------------------------------------------------------ schedules


def test_inference_schedule_from_noise_is_the_training_schedule_respaced():
    train = NoiseSchedule.linear()
    s = inference_schedule(25, train_schedule=train)
    assert s.T == 25
    torch.testing.assert_close(s.gammas[-1], train.gammas[-1])  # still reaches the last noise level
    torch.testing.assert_close(s.gammas, train.respace(25).gammas)


def test_inference_schedule_from_bicubic_starts_at_gamma_start():
    train = NoiseSchedule.linear()
    s = inference_schedule(20, start="bicubic", gamma_start=0.3, train_schedule=train)
    assert s.T == 20
    assert 0.3 <= s.gammas[-1].item() < 0.31  # the lowest kept level is the last one ≥ γ_start
    assert s.gammas[0].item() == pytest.approx(train.gammas[0].item())
    with pytest.raises(ValueError, match="start"):
        inference_schedule(20, start="middle")


def test_inference_schedule_with_betas_is_a_linear_schedule_of_that_many_steps():
    s = inference_schedule(30, betas=(1e-4, 0.2), train_schedule=NoiseSchedule.linear(50))
    torch.testing.assert_close(s.betas, NoiseSchedule.linear(30, 1e-4, 0.2).betas)  # not capped at the training T
    with pytest.raises(ValueError, match="pure noise"):
        inference_schedule(30, start="bicubic", betas=(1e-4, 0.2))


def test_inference_options_check_betas_and_a_bicubic_start_overrides_a_stored_linear_chain():
    assert inference_options(betas=[1e-4, 0.1])["betas"] == (1e-4, 0.1)
    for bad in ([0.1, 1e-4], [0.0, 0.1], [1e-4, 1.0], [1e-4]):
        with pytest.raises(ValueError, match="betas"):
            inference_options(betas=bad)
    with pytest.raises(ValueError, match="pure noise"):
        inference_options(betas=[1e-4, 0.1], start="bicubic")
    info = {"inference": {"betas": [1e-4, 0.1]}}
    assert inference_options(info)["betas"] == (1e-4, 0.1)
    assert inference_options(info, start="bicubic")["betas"] is None
    assert inference_options(info, betas="off")["betas"] is None  # `--betas off`: the training schedule respaced
    # another number of steps keeps the file's chain shape: β_1 and its first noise level γ_n
    stored = {"inference": {"steps": 50, "betas": [1e-6, 0.17]}}
    b1, bn = inference_options(stored, steps=25)["betas"]
    first = NoiseSchedule.linear(50, 1e-6, 0.17).gammas[-1].item()
    assert b1 == 1e-6 and NoiseSchedule.linear(25, b1, bn).gammas[-1].item() == pytest.approx(first)
    assert inference_options(stored)["betas"] == (1e-6, 0.17)
    assert inference_options(stored, steps=25, betas=(1e-6, 0.5))["betas"] == (1e-6, 0.5)  # given betas win


def test_the_betas_flag_takes_two_numbers_or_off():
    p = argparse.ArgumentParser()
    add_sampler_arguments(p)
    assert sampler_options(p.parse_args(["--betas", "1e-6", "0.1"]))["betas"] == (1e-6, 0.1)
    assert sampler_options(p.parse_args(["--betas", "off"]))["betas"] == "off"
    assert sampler_options(p.parse_args([]))["betas"] is None
    with pytest.raises(ValueError, match="two numbers B1 BN, or 'off'"):
        sampler_options(p.parse_args(["--betas", "0.1"]))


def test_describe_names_every_option_in_force():
    assert describe(inference_options()) == "100 steps, variance=paper, start=noise"
    text = describe(inference_options(steps=25, betas=(1e-6, 0.3), clip_y0=True))
    assert text == "25 steps, variance=paper, start=noise, linear β 1e-06→0.3, ŷ_0 clipped"
    assert "(γ_start=0.5)" in describe(inference_options(start="bicubic", gamma_start=0.5))


def test_inference_options_precedence_caller_then_model_file_then_defaults():
    info = {"inference": {"steps": 30, "variance": "posterior", "schedule": {"kind": "linear", "T": 500}}}
    assert inference_options() == DEFAULT_INFERENCE
    opts = inference_options(info, steps=7, start=None)
    assert opts == {**DEFAULT_INFERENCE, "steps": 7, "variance": "posterior"}
    with pytest.raises(ValueError, match="variance"):
        inference_options(info, variance="ddim")
    with pytest.raises(ValueError, match="gamma_start"):
        inference_options(gamma_start=1.5)
    assert training_schedule(info).T == 500
    assert training_schedule(None).T == NoiseSchedule.linear().T


# ------------------------------------------------------------------------------------------ sampling


@pytest.mark.parametrize("variance", ["paper", "posterior"])
@pytest.mark.parametrize("start", ["noise", "bicubic", "linear"])
def test_the_oracle_chain_ends_on_the_bicubic_image(variance, start):
    x = lr_batch()
    # 6 linear steps, β_1 = 1e-3 → β_6 = 0.9 (a β_1 near 1e-6 would leave 1 − γ_1 to float32 rounding in the oracle)
    betas = (1e-3, 0.9) if start == "linear" else None
    start = "noise" if start == "linear" else start
    y = super_resolve(
        BicubicOracle(),
        x,
        scale=4,
        steps=6,
        variance=variance,
        start=start,
        betas=betas,
        seed=1,
        train_schedule=ORACLE_TRAIN,
    )
    assert y.shape == (2, 3, 52, 84)
    torch.testing.assert_close(y, upscale_bicubic(x, 4).clamp(-1, 1), atol=2e-4, rtol=0)


def test_padding_to_the_model_multiple_and_cropping_back():
    x = lr_batch(h=13, w=21)  # 52×84 output: neither side is a multiple of 16
    y = super_resolve(BicubicOracle(multiple=16), x, scale=4, steps=4, seed=0, train_schedule=ORACLE_TRAIN)
    assert y.shape == (2, 3, 52, 84)
    # away from the padded right and bottom edges, nothing changed (bicubic reaches 2 LR pixels = 8 HR pixels)
    want = upscale_bicubic(x, 4).clamp(-1, 1)
    torch.testing.assert_close(y[..., :-8, :-8], want[..., :-8, :-8], atol=2e-4, rtol=0)


def test_a_seed_fixes_the_samples_and_a_new_seed_changes_them():
    model, x = tiny_unet(), lr_batch(w=8, h=8)
    a = super_resolve(model, x, scale=4, steps=3, seed=5)
    b = super_resolve(model, x, scale=4, steps=3, seed=5)
    c = super_resolve(model, x, scale=4, steps=3, seed=6)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert (a - c).abs().mean() > 1e-3
    assert a.min() >= -1 and a.max() <= 1


def test_batches_of_any_size_and_pil_inputs_of_any_shape():
    model = tiny_unet()
    x = lr_batch(B=3, h=9, w=11)
    assert super_resolve(model, x, scale=4, steps=2, batch_size=2, seed=0).shape == (3, 3, 36, 44)
    assert super_resolve(model, x[0], scale=4, steps=2, seed=0).shape == (3, 36, 44)
    imgs = [Image.new("RGB", (7, 5), "red"), Image.new("RGB", (10, 3), "blue")]
    out = super_resolve(model, imgs, scale=4, steps=2, seed=0)
    assert [im.size for im in out] == [(28, 20), (40, 12)]
    assert super_resolve(model, imgs[0], scale=4, steps=2).size == (28, 20)


def test_bicubic_start_refuses_a_given_y_T():
    x = lr_batch()
    with pytest.raises(ValueError, match="y_T"):
        super_resolve(BicubicOracle(), x, scale=4, steps=3, start="bicubic", y_T=torch.zeros(2, 3, 52, 84))
    # with start="noise" it is used, and its size is checked
    out = super_resolve(BicubicOracle(), x, scale=4, steps=3, y_T=torch.zeros(2, 3, 52, 84))
    assert out.shape == (2, 3, 52, 84)
    with pytest.raises(ValueError, match="y_T"):
        super_resolve(BicubicOracle(), x, scale=4, steps=3, y_T=torch.zeros(2, 3, 50, 84))


def test_defaults_come_from_the_model_info_and_regression_models_regress():
    model, x = tiny_unet(), lr_batch(h=8, w=8)
    info = {"objective": "regression", "scale": 4, "inference": {}}
    with torch.inference_mode():
        want = regress(model, x, scale=4).clamp(-1, 1)
    torch.testing.assert_close(super_resolve(model, x, info=info, precision="fp32"), want)
    with pytest.raises(ValueError, match="scale"):
        super_resolve(model, x)


def test_trajectory_goes_from_y_T_to_y_0_cropped_to_the_output():
    x = lr_batch(h=9, w=11)
    y, steps = super_resolve(BicubicOracle(8), x, scale=4, steps=8, seed=0, return_trajectory=2, batch_size=1)
    assert [s.t for s in steps] == [8, 6, 4, 2, 0]
    assert all(s.y_t.shape == (2, 3, 36, 44) for s in steps)
    torch.testing.assert_close(steps[-1].y_t.clamp(-1, 1), y)
    assert steps[0].gamma < 1e-3 and steps[-1].gamma == 1.0


def test_tiles_change_nothing_when_the_image_fits_and_keep_the_size_when_it_does_not():
    model, x = tiny_unet(), lr_batch(h=10, w=14)
    whole = super_resolve(model, x, scale=4, steps=3, seed=0)
    torch.testing.assert_close(super_resolve(model, x, scale=4, steps=3, seed=0, tile=64), whole, atol=0, rtol=0)
    tiled = super_resolve(model, x, scale=4, steps=3, seed=0, tile=24)
    assert tiled.shape == whole.shape and torch.isfinite(tiled).all()
    # the oracle on tiles: exact where one tile alone covers a pixel and its bicubic support (rows and columns
    # 0..15 here: tiles start at rows 0, 16 and columns 0, 20, 32), close elsewhere (tile edges see less context)
    oracle = super_resolve(BicubicOracle(), x, scale=4, steps=3, seed=0, tile=24, train_schedule=ORACLE_TRAIN)
    want = upscale_bicubic(x, 4).clamp(-1, 1)
    torch.testing.assert_close(oracle[..., :16, :16], want[..., :16, :16], atol=2e-4, rtol=0)
    assert (oracle - want).abs().mean() < 0.05


def test_tiles_cover_the_image_with_overlap():
    t = TiledModel(BicubicOracle(8), tile=30, scale=4)
    assert t.tile == 24 and t.overlap % 8 == 0
    side, starts = t.layout(100)
    assert side <= t.tile and starts[0] == 0 and starts[-1] == 100 - side
    assert all(b - a <= side for a, b in zip(starts, starts[1:]))
    # the fewest tiles of at most 256 with at least 32 of overlap, spread evenly: 5 of 232 over 1024
    wide = TiledModel(BicubicOracle(8), tile=256, scale=4, overlap=32)
    side, starts = wide.layout(1024)
    assert (side, len(starts), starts[-1]) == (232, 5, 1024 - 232)
    assert all(32 <= a + side - b for a, b in zip(starts, starts[1:]))
    assert wide.layout(256) == (256, [0])


def test_sampler_options_are_frozen_validated_once_and_passed_on_as_they_are():
    opts = SamplerOptions.resolve({"inference": {"steps": 12, "variance": "posterior"}}, steps=None, start="noise")
    assert (opts.steps, opts.variance, opts.start) == (12, "posterior", "noise")  # None leaves the file's value
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.steps = 3
    with pytest.raises(ValueError, match="variance"):
        SamplerOptions(variance="ddim")
    with pytest.raises(TypeError, match="unknown sampler option 'step'"):
        SamplerOptions.resolve(None, step=3)
    assert SamplerOptions(steps="7", eta=1).steps == 7 and isinstance(SamplerOptions(eta=1).eta, float)
    assert inference_options() == DEFAULT_INFERENCE == SamplerOptions().as_dict()
    x = lr_batch(h=5, w=6)
    by_keywords = super_resolve(BicubicOracle(), x, scale=4, steps=3, variance="posterior", seed=1)
    chosen = SamplerOptions(steps=3, variance="posterior")
    by_options = super_resolve(BicubicOracle(), x, scale=4, options=chosen, seed=1)
    torch.testing.assert_close(by_options, by_keywords, atol=0, rtol=0)
    with pytest.raises(ValueError, match="not both"):
        super_resolve(BicubicOracle(), x, scale=4, options=SamplerOptions(), steps=3)


def test_write_image_atomic_refuses_an_unknown_suffix_and_leaves_nothing(tmp_path):
    img = Image.new("RGB", (4, 4))
    with pytest.raises(ValueError, match="suffix"):
        write_image_atomic(img, tmp_path / "out.xyz")
    assert list(tmp_path.iterdir()) == []
    write_image_atomic(img, tmp_path / "sub" / "out.png")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["out.png"]


@pytest.mark.parametrize("suffix", [".jpg", ".webp"])
def test_write_image_atomic_keeps_the_image_in_jpeg_and_webp_better_than_pils_defaults(tmp_path, suffix):
    yy, xx = np.mgrid[0:64, 0:64]
    rng = np.random.default_rng(0)
    a = 127 + 60 * np.sin(xx / 3.0)[..., None] * np.array([1.0, -0.5, 0.3]) + 20 * rng.standard_normal((64, 64, 3))
    img = Image.fromarray(np.clip(a + 10 * np.cos(yy / 2.0)[..., None], 0, 255).astype(np.uint8))
    write_image_atomic(img, tmp_path / f"ours{suffix}")
    img.save(tmp_path / f"pil{suffix}")

    def error(name):
        return np.abs(np.asarray(Image.open(tmp_path / name), float) - np.asarray(img, float)).mean()

    assert error(f"ours{suffix}") < 0.3 * error(f"pil{suffix}")
    if suffix == ".jpg":
        from PIL import JpegImagePlugin

        assert JpegImagePlugin.get_sampling(Image.open(tmp_path / "ours.jpg")) == 0  # 4:4:4: colour not halved
    else:
        assert error("ours.webp") == 0  # lossless


# ------------------------------------------------------------------------------------------ the command


def random_image(path, w, h, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.slow
def test_upscale_command_on_a_non_square_odd_sized_image_gives_exactly_w_s_by_h_s(tmp_path):
    ckpt = write_model(tmp_path / "model.pt")
    src = random_image(tmp_path / "in.png", 51, 37)
    out = tmp_path / "out.png"
    cmd = [sys.executable, "-m", "sr3_edu", "upscale", "--checkpoint", str(ckpt), "--input", str(src)]
    cmd += ["--output", str(out), "--steps", "3", "--device", "cpu", "--no-progress"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as im:
        assert im.size == (51 * 4, 37 * 4) and im.mode == "RGB"
    assert "3 steps" in proc.stderr


@pytest.mark.slow
def test_upscale_command_with_an_unreadable_input_fails_cleanly_and_writes_nothing(tmp_path):
    ckpt = write_model(tmp_path / "model.pt")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out.png"
    cmd = [sys.executable, "-m", "sr3_edu", "upscale", "--checkpoint", str(ckpt), "--input", str(bad)]
    proc = subprocess.run(cmd + ["--output", str(out), "--steps", "2"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0
    assert str(bad) in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["broken.png", "model.pt"]


def test_upscale_folder_to_folder_with_the_model_default_steps(tmp_path, capsys):
    ckpt = write_model(tmp_path / "model.pt", inference={"steps": 2, "variance": "posterior"})
    src = tmp_path / "in"
    src.mkdir()
    random_image(src / "a.png", 9, 14)
    random_image(src / "b.jpg", 16, 5, seed=1)
    (src / "notes.txt").write_text("not an image, ignored")
    out = tmp_path / "out"
    assert main(["upscale", "--checkpoint", str(ckpt), "--input", str(src), "--output", str(out), "--no-progress"]) == 0
    sizes = {p.name: Image.open(p).size for p in sorted(out.iterdir())}
    assert sizes == {"a.png": (36, 56), "b.png": (64, 20)}
    assert "2 steps, variance=posterior" in capsys.readouterr().err


def test_upscale_folder_goes_into_subfolders_and_mirrors_them_in_the_output(tmp_path):
    ckpt = write_model(tmp_path / "model.pt", inference={"steps": 2})
    src = tmp_path / "in"
    (src / "trip" / "day1").mkdir(parents=True)
    random_image(src / "a.png", 8, 8)
    random_image(src / "trip" / "a.jpg", 8, 4, seed=1)  # the same stem as a.png, in another folder: no clash
    random_image(src / "trip" / "day1" / "c.png", 4, 8, seed=2)
    (src / ".hidden").mkdir()
    random_image(src / ".hidden" / "d.png", 8, 8, seed=3)  # hidden folders are left out, as in training
    out = tmp_path / "out"
    assert main(["upscale", "--checkpoint", str(ckpt), "--input", str(src), "--output", str(out), "--no-progress"]) == 0
    written = {p.relative_to(out).as_posix(): Image.open(p).size for p in out.rglob("*.png")}
    assert written == {"a.png": (32, 32), "trip/a.png": (32, 16), "trip/day1/c.png": (16, 32)}


def test_upscale_folder_refuses_two_inputs_that_would_write_one_output_before_any_work(tmp_path, capsys):
    ckpt = write_model(tmp_path / "model.pt", inference={"steps": 2})
    src = tmp_path / "in"
    src.mkdir()
    random_image(src / "a.png", 8, 8)
    random_image(src / "a.jpg", 8, 8, seed=1)
    out = tmp_path / "out"
    assert main(["upscale", "--checkpoint", str(ckpt), "--input", str(src), "--output", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "a.jpg" in err and "a.png" in err and "rename" in err
    assert not out.exists()


def test_upscale_folder_with_a_bad_file_stops_before_writing_unless_told_to_skip(tmp_path, capsys):
    ckpt = write_model(tmp_path / "model.pt")
    src = tmp_path / "in"
    src.mkdir()
    random_image(src / "a.png", 8, 8)
    (src / "z.png").write_bytes(b"garbage")
    out = tmp_path / "out"
    args = ["upscale", "--checkpoint", str(ckpt), "--input", str(src), "--output", str(out), "--steps", "2"]
    assert main(args + ["--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "z.png" in err and not out.exists()
    assert main(args + ["--no-progress", "--skip-bad-images"]) == 0
    assert [p.name for p in out.iterdir()] == ["a.png"]


def test_upscale_errors_speak_to_the_user(tmp_path, capsys):
    src = random_image(tmp_path / "in.png", 8, 8)
    missing = tmp_path / "nope.pt"
    assert main(["upscale", "--checkpoint", str(missing), "--input", str(src), "--output", "o.png"]) == 1
    assert "nope.pt" in capsys.readouterr().err
    ckpt = write_model(tmp_path / "model.pt")
    assert main(["upscale", "--checkpoint", str(ckpt), "--input", str(tmp_path / "x.png"), "--output", "o.png"]) == 1
    assert "x.png" in capsys.readouterr().err
    assert main(["upscale", "--checkpoint", str(ckpt), "--input", str(src), "--output", str(tmp_path / "o.txt")]) == 1
    assert "suffix" in capsys.readouterr().err
    assert not (tmp_path / "o.txt").exists()


def test_upscale_help_explains_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as e:
        main(["upscale", "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--checkpoint", "--input", "--output", "--steps", "--seed", "--device", "--batch-size"):
        assert option in text
    for option in ("--variance", "--start", "--gamma-start", "--compile"):
        assert option in text
    assert "(default: 4)" in text and "else 100" in text and "not the paper" in text
    assert "(default: None)" not in text


def test_clip_y0_reaches_the_sampler_from_the_caller_the_model_file_and_the_command(tmp_path, monkeypatch):
    import sr3_edu.upscale as up

    seen = []
    real = up.sample

    def spy(*args, **kw):
        seen.append(kw["clip_y0"])
        return real(*args, **kw)

    monkeypatch.setattr(up, "sample", spy)
    x = lr_batch(h=8, w=8)
    super_resolve(BicubicOracle(), x, scale=4, steps=2)
    super_resolve(BicubicOracle(), x, scale=4, steps=2, clip_y0=True)
    super_resolve(BicubicOracle(), x, scale=4, steps=2, info={"inference": {"clip_y0": True}})
    super_resolve(BicubicOracle(), x, scale=4, steps=2, info={"inference": {"clip_y0": True}}, clip_y0=False)
    assert seen == [False, True, True, False]
    ckpt = write_model(tmp_path / "model.pt")
    src = random_image(tmp_path / "in.png", 8, 8)
    args = ["upscale", "--checkpoint", str(ckpt), "--input", str(src), "--output", str(tmp_path / "o.png")]
    assert main(args + ["--steps", "2", "--clip-y0", "on", "--no-progress"]) == 0
    assert seen[-1] is True


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_the_oracle_ddim_chain_ends_on_the_bicubic_image(eta):
    x = lr_batch()
    y = super_resolve(
        BicubicOracle(), x, scale=4, steps=6, sampler="ddim", eta=eta, seed=1, train_schedule=ORACLE_TRAIN
    )
    torch.testing.assert_close(y, upscale_bicubic(x, 4).clamp(-1, 1), atol=2e-4, rtol=0)


def test_ddim_reaches_the_sampler_from_the_command_and_a_bad_eta_is_refused(tmp_path, monkeypatch, capsys):
    import sr3_edu.upscale as up

    seen = []
    real = up.sample

    def spy(*args, **kw):
        seen.append((kw["sampler"], kw["eta"]))
        return real(*args, **kw)

    monkeypatch.setattr(up, "sample", spy)
    assert describe(inference_options(sampler="ddim", eta=0)) == "100 steps, DDIM η=0, start=noise"
    ckpt = write_model(tmp_path / "model.pt")
    src = random_image(tmp_path / "in.png", 8, 8)
    args = ["upscale", "--checkpoint", str(ckpt), "--input", str(src), "--output", str(tmp_path / "o.png")]
    assert main(args + ["--steps", "2", "--no-progress"]) == 0
    assert main(args + ["--steps", "2", "--sampler", "ddim", "--eta", "0.3", "--no-progress"]) == 0
    assert seen == [("ddpm", 0.0), ("ddim", 0.3)]
    capsys.readouterr()
    assert main(args + ["--steps", "2", "--sampler", "ddim", "--eta", "2", "--no-progress"]) == 1
    assert "eta must be in [0, 1]" in capsys.readouterr().err


def test_compile_flag_reaches_the_sampler_from_upscale_and_evaluate(tmp_path, monkeypatch, capsys):
    """--compile routes every refinement step through the compiled step (replaced here by a counting spy, so the
    test needs no compiler); without it the eager step runs."""
    import sr3_edu.compiled as compiled

    calls = []

    def fake_compiled(step, device):
        def spy(*args):
            calls.append(device.type)
            return step(*args)

        return spy

    monkeypatch.setattr(compiled, "compiled_step", fake_compiled)
    ckpt = write_model(tmp_path / "model.pt")
    src = random_image(tmp_path / "in.png", 8, 8)
    args = ["upscale", "--checkpoint", str(ckpt), "--input", str(src), "--steps", "3", "--no-progress"]
    assert main(args + ["--output", str(tmp_path / "eager.png")]) == 0
    assert calls == []
    assert main(args + ["--output", str(tmp_path / "compiled.png"), "--compile"]) == 0
    assert calls == ["cpu"] * 3
    # same seed, same noise on the CPU: the same picture to within a rounding step
    a = np.asarray(Image.open(tmp_path / "eager.png"), dtype=np.int16)
    b = np.asarray(Image.open(tmp_path / "compiled.png"), dtype=np.int16)
    assert np.abs(a - b).max() <= 1
    hr = tmp_path / "hr"
    hr.mkdir()
    random_image(hr / "a.png", 16, 16)
    calls.clear()
    ev = ["evaluate", "--checkpoint", str(ckpt), "--data", str(hr), "--steps", "2", "--samples", "1", "--no-progress"]
    assert main(ev + ["--compile"]) == 0
    assert calls == ["cpu"] * 2


def test_upscale_refuses_to_overwrite_its_input_before_any_work(tmp_path, capsys):
    ckpt = write_model(tmp_path / "model.pt", inference={"steps": 2})
    src = random_image(tmp_path / "photo.png", 8, 8)
    before = src.read_bytes()
    assert main(["upscale", "--checkpoint", str(ckpt), "--input", str(src), "--output", str(src), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "photo.png" in err and "overwritten" in err
    # a folder as the output of one file: the output would be photo.png in that folder, the input itself
    assert main(["upscale", "--checkpoint", str(ckpt), "--input", str(src), "--output", str(tmp_path)]) == 1
    assert "overwritten" in capsys.readouterr().err
    # a folder into itself: its PNGs would be replaced by their enlargements
    folder = tmp_path / "photos"
    folder.mkdir()
    random_image(folder / "a.jpg", 8, 8)
    random_image(folder / "b.png", 8, 8, seed=1)
    assert main(["upscale", "--checkpoint", str(ckpt), "--input", str(folder), "--output", str(folder)]) == 1
    assert "b.png" in capsys.readouterr().err
    assert src.read_bytes() == before and sorted(p.name for p in folder.iterdir()) == ["a.jpg", "b.png"]
    with Image.open(folder / "b.png") as im:
        assert im.size == (8, 8)


def test_upscale_turns_a_photo_upright_by_its_exif_orientation(tmp_path):
    ckpt = write_model(tmp_path / "model.pt", inference={"steps": 2})
    src = tmp_path / "phone.jpg"
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (6, 10, 3), dtype=np.uint8))  # stored 10 × 6
    exif = img.getexif()
    exif[0x0112] = 6  # "turn 90° clockwise to show": a viewer shows it 6 wide, 10 high
    img.save(src, exif=exif)
    out = tmp_path / "phone_x4.png"
    assert main(["upscale", "--checkpoint", str(ckpt), "--input", str(src), "--output", str(out), "--no-progress"]) == 0
    with Image.open(out) as im:
        assert im.size == (6 * 4, 10 * 4)


def test_upscale_folder_output_does_not_depend_on_the_other_images_and_skip_existing_goes_on(tmp_path, capsys):
    ckpt = write_model(tmp_path / "model.pt", inference={"steps": 2})
    src = tmp_path / "in"
    src.mkdir()
    for k, name in enumerate(["a.png", "b.png", "c.png"]):
        random_image(src / name, 8, 6, seed=k)
    common = ["upscale", "--checkpoint", str(ckpt), "--no-progress", "--seed", "3"]
    out = tmp_path / "out"
    assert main(common + ["--input", str(src), "--output", str(out)]) == 0
    first = {p.name: np.asarray(Image.open(p)) for p in out.iterdir()}
    # c.png alone gives the same pixels as c.png after a.png and b.png
    assert main(common + ["--input", str(src / "c.png"), "--output", str(tmp_path / "c_alone.png")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "c_alone.png")), first["c.png"])
    # an interrupted run: b.png and c.png not written yet; a.png stands for a finished output and must be left alone
    (out / "b.png").unlink()
    (out / "c.png").unlink()
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(out / "a.png")
    capsys.readouterr()
    assert main(common + ["--input", str(src), "--output", str(out), "--skip-existing"]) == 0
    assert "1 output already there (e.g. " in capsys.readouterr().err
    assert not np.asarray(Image.open(out / "a.png")).any()
    for name in ("b.png", "c.png"):
        assert np.array_equal(np.asarray(Image.open(out / name)), first[name])
    assert main(common + ["--input", str(src), "--output", str(out), "--skip-existing"]) == 0  # nothing left to do
    assert "3 outputs already there" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_upscale_writes_the_inputs_colour_profile_into_the_output(tmp_path, suffix):
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    ckpt = write_model(tmp_path / "model.pt", inference={"steps": 2})
    src = tmp_path / "wide_gamut.jpg"
    Image.fromarray(np.full((6, 8, 3), 120, np.uint8)).save(src, icc_profile=profile)
    out = tmp_path / f"x4{suffix}"
    assert main(["upscale", "--checkpoint", str(ckpt), "--input", str(src), "--output", str(out), "--no-progress"]) == 0
    with Image.open(out) as im:
        assert im.info.get("icc_profile") == profile
    plain = random_image(tmp_path / "plain.png", 6, 8)
    out = tmp_path / f"plain_x4{suffix}"
    assert (
        main(["upscale", "--checkpoint", str(ckpt), "--input", str(plain), "--output", str(out), "--no-progress"]) == 0
    )
    with Image.open(out) as im:
        assert not im.info.get("icc_profile")


@pytest.mark.parametrize("tile, ok", [("3", False), ("63", False), ("64", True), ("0", True), ("auto", True)])
def test_tile_flag_takes_a_side_of_at_least_64_pixels_and_says_it_is_not_a_count(tile, ok, capsys):
    parser = argparse.ArgumentParser()
    add_tile_argument(parser)
    if ok:
        assert parser.parse_args(["--tile", tile]).tile == (tile if tile == "auto" else int(tile))
    else:
        with pytest.raises(SystemExit):
            parser.parse_args(["--tile", tile])
        err = capsys.readouterr().err
        assert "at least 64 (a smaller" in err and "not a number of tiles; got" in err
