"""evaluate(), the schedule search, and their commands, end to end on tiny images."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sr3_edu.checkpoint import model_file, save_atomic
from sr3_edu.cli import main
from sr3_edu.evaluate import METRICS, evaluate
from sr3_edu.images import downscale_pil
from sr3_edu.protocol import prepare_pair, tensor_pairs
from sr3_edu.report import METHODS, format_search, format_table
from sr3_edu.schedule import NoiseSchedule
from sr3_edu.search import default_candidates, rank_schedules, search_schedules
from sr3_edu.unet import SR3UNet

# β from 1e-3, so that the oracle's division by √(1−γ) stays exact enough in float32 (see test_upscale.py)
ORACLE_TRAIN = NoiseSchedule.linear(1000, 1e-3, 2e-2)


class BicubicOracle(torch.nn.Module):
    """ε̂ = (y_t − √γ · bicubic(x)) / √(1−γ): the exact noise predictor when y_0 = bicubic(x); SR3 = bicubic."""

    multiple = 1

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x_lr, y_t, gamma):
        g = gamma.reshape(-1, 1, 1, 1).to(y_t)
        up = F.interpolate(x_lr, size=y_t.shape[-2:], mode="bicubic", align_corners=False)
        return (y_t - g.sqrt() * up) / (1 - g).sqrt()


def tiny_unet(seed=0):
    torch.manual_seed(seed)
    model = SR3UNet(base_channels=8, channel_mults=(1, 1, 1, 1), num_res_blocks=1, attn_levels=(), head_channels=8)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    return model.eval()


def photo(w, h, seed=0):
    """A smooth random RGB image with some texture (so every metric is finite)."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (max(2, h // 6), max(2, w // 6), 3), dtype=np.uint8))
    base = np.asarray(small.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float64)
    return Image.fromarray(np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8))


IMAGES = {"wide": photo(50, 38), "square": photo(44, 44, seed=1)}


def test_a_model_files_linear_chain_is_used_unless_betas_off_asks_for_the_respaced_one():
    info = {"scale": 4, "inference": {"steps": 4, "betas": [1e-3, 0.5]}}

    def chain_gammas(**kw):
        result = evaluate(
            BicubicOracle(), {"wide": IMAGES["wide"]}, samples=1, progress=False, keep_images=True, trajectory=1,
            crop=16, sr3_info=info, train_schedule=ORACLE_TRAIN, **kw,
        )  # fmt: skip
        return [s[1] for s in result["tensors"]["wide"]["trajectory"][:-1]], result["config"]["betas"]

    gammas, betas = chain_gammas()
    assert betas == (1e-3, 0.5)
    assert gammas == pytest.approx(NoiseSchedule.linear(4, 1e-3, 0.5).gammas.flip(0).tolist())
    gammas, betas = chain_gammas(betas="off")
    assert betas is None
    assert gammas == pytest.approx(ORACLE_TRAIN.respace(4).gammas.flip(0).tolist())


def test_prepare_pair_crops_to_the_scale_and_makes_the_training_lr():
    lr, hr = prepare_pair(photo(50, 38), 4)
    assert hr.size == (48, 36) and lr.size == (12, 9)
    assert np.array_equal(np.asarray(lr), np.asarray(downscale_pil(hr, 4)))
    lr, hr = prepare_pair(photo(50, 38), 4, crop=30)  # center crop 30×30 → 28×28
    assert hr.size == (28, 28) and lr.size == (7, 7)
    with pytest.raises(ValueError, match="smaller than the scale"):
        prepare_pair(photo(3, 30), 4)


def test_a_photo_too_small_to_evaluate_is_named_in_the_error():
    with pytest.raises(ValueError, match=r"photo 'sub/tiny': an image of 3×3 is smaller than the scale 4.*remove it"):
        tensor_pairs({"big": photo(16, 16), "sub/tiny": photo(3, 3)}, 4)
    with pytest.raises(ValueError, match=r"^a crop of 2 pixels is smaller than the scale 4: crop to at least 4$"):
        tensor_pairs({"big": photo(16, 16)}, 4, crop=2)  # the crop's fault, not the photo's


def test_evaluate_end_to_end_has_every_method_and_metric():
    result = evaluate(
        tiny_unet(),
        IMAGES,
        scale=4,
        steps=3,
        samples=2,
        regression_model=tiny_unet(1),
        seed=0,
        progress=False,
    )
    assert set(result) == {"config", "methods", "images"}
    assert set(result["methods"]) == set(METHODS)
    for m in METHODS:
        assert set(result["methods"][m]) == set(METRICS)
    assert [r["name"] for r in result["images"]] == ["wide", "square"]
    assert [r["size"] for r in result["images"]] == [[48, 36], [44, 44]]
    for rec in result["images"]:
        assert set(rec["methods"]) == set(METHODS)
    # the means are the means of the per-image values
    per = [r["methods"]["bicubic"]["psnr"] for r in result["images"]]
    assert result["methods"]["bicubic"]["psnr"] == pytest.approx(sum(per) / 2)
    assert result["config"]["steps"] == 3 and result["config"]["samples"] == 2
    json.dumps(result)  # plain numbers only
    table = format_table(result, per_image=True)
    assert "SR3 mean of K" in table and "regression" in table and "square" in table


def test_evaluate_with_the_oracle_gives_sr3_the_bicubic_scores():
    result = evaluate(BicubicOracle(), IMAGES, scale=4, steps=5, samples=3, progress=False, train_schedule=ORACLE_TRAIN)
    assert "regression" not in result["methods"]
    bic, sr3, mean = (result["methods"][m] for m in ("bicubic", "sr3", "sr3_mean"))
    for k in ("psnr", "psnr_y", "ssim", "consistency", "detail_ratio"):
        assert sr3[k] == pytest.approx(bic[k], rel=1e-3, abs=1e-3), k
        assert mean[k] == pytest.approx(bic[k], rel=1e-3, abs=1e-3), k
    # bicubic loses the detail above the input's Nyquist frequency
    assert bic["detail_ratio"] < 0.5
    assert all(math.isfinite(bic[k]) for k in METRICS)


def test_evaluate_keeps_images_and_a_trajectory_for_figures():
    result = evaluate(
        tiny_unet(), {"wide": IMAGES["wide"]}, scale=4, steps=4, samples=2, progress=False, keep_images=True,
        trajectory=2, crop=32,
    )  # fmt: skip
    t = result["tensors"]["wide"]
    assert t["hr"].shape == (3, 32, 32) and t["lr"].shape == (3, 8, 8)
    assert t["sr3"].shape == (2, 3, 32, 32) and t["sr3_mean"].shape == (3, 32, 32)
    assert [s[0] for s in t["trajectory"]] == [4, 2, 0]
    torch.testing.assert_close(t["trajectory"][-1][2].clamp(-1, 1), t["sr3"][0])


def test_rank_schedules_prefers_psnr_inside_the_detail_band():
    rows = [
        {"name": "blurry", "psnr": 30.0, "detail_ratio": 0.3, "nfe": 25},
        {"name": "good", "psnr": 27.0, "detail_ratio": 0.95, "nfe": 100},
        {"name": "noisy", "psnr": 24.0, "detail_ratio": 1.2, "nfe": 50},
        {"name": "very noisy", "psnr": 20.0, "detail_ratio": 2.0, "nfe": 25},
    ]
    ranked = rank_schedules(rows, (0.8, 1.25))
    assert [r["name"] for r in ranked] == ["good", "noisy", "very noisy", "blurry"]
    assert [r["rank"] for r in ranked] == [1, 2, 3, 4]
    assert [r["feasible"] for r in ranked] == [True, True, False, False]


def test_search_schedules_scores_every_candidate():
    cands = default_candidates(steps=(3, 6), variances=("posterior",), starts=("noise", 0.3))
    assert len(cands) == 4
    rows = search_schedules(
        BicubicOracle(), IMAGES, cands, scale=4, crop=32, progress=False, train_schedule=ORACLE_TRAIN
    )
    assert sorted(r["rank"] for r in rows) == [1, 2, 3, 4]
    assert {(r["steps"], r["start"]) for r in rows} == {(3, "noise"), (6, "noise"), (3, "bicubic"), (6, "bicubic")}
    for r in rows:
        assert set(METRICS) <= set(r) and r["nfe"] == r["steps"]
    # the oracle returns bicubic under every schedule: none is in the detail band, so the cheapest ranks first
    assert not any(r["feasible"] for r in rows) and rows[0]["nfe"] == 3
    assert "bicubic@0.3" in format_search(rows)
    both = default_candidates(steps=(3,), variances=("paper",), starts=("noise",), clips=(False, True))
    assert [c["clip_y0"] for c in both] == [False, True]


def test_search_tries_linear_chains_from_noise_and_prints_their_flags():
    cands = default_candidates(steps=(4,), variances=("paper",), starts=("noise",), linear_gammas=(0.01,))
    assert len(cands) == 2 and "betas" not in cands[0]
    b1, bn = cands[1]["betas"]
    assert cands[1]["start"] == "noise" and b1 == pytest.approx(1e-6)
    assert NoiseSchedule.linear(4, b1, bn).gammas[-1].item() == pytest.approx(0.01)
    rows = search_schedules(
        BicubicOracle(), IMAGES, cands, scale=4, crop=32, progress=False, train_schedule=ORACLE_TRAIN
    )
    linear = next(r for r in rows if r["betas"])
    assert linear["nfe"] == 4 and linear["betas"] == [b1, bn]
    assert f"linear β→{bn:.3g}" in format_search(rows) and "respaced" in format_search(rows)


def test_search_tries_ddim_beside_algorithm_2_and_prints_its_flags(tmp_path, capsys):
    cands = default_candidates(steps=(3,), variances=("paper",), starts=("noise",), etas=(0.0, 1.0))
    assert [c.get("sampler", "ddpm") for c in cands] == ["ddpm", "ddim", "ddim"]
    assert [c.get("eta") for c in cands] == [None, 0.0, 1.0]
    rows = search_schedules(
        BicubicOracle(), IMAGES, cands, scale=4, crop=32, progress=False, train_schedule=ORACLE_TRAIN
    )
    assert sorted((r["sampler"], r["eta"]) for r in rows) == [("ddim", 0.0), ("ddim", 1.0), ("ddpm", None)]
    assert "DDIM η=0" in format_search(rows) and "DDIM η=1" in format_search(rows)
    sr3, _ = write_models(tmp_path)
    IMAGES["wide"].save(tmp_path / "wide.png")
    args = ["search", "--checkpoint", str(sr3), "--data", str(tmp_path), "--steps", "2", "--variances", "paper"]
    args += ["--starts", "noise", "--linear-gammas", "none", "--crop", "32", "--no-progress"]
    assert main(args + ["--etas", "0,0.5"]) == 0
    assert "DDIM η=0.5" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(args + ["--etas", "1.5"])
    assert "η lies in [0, 1]" in capsys.readouterr().err


def write_models(tmp_path):
    sr3 = save_atomic(model_file(tiny_unet(), objective="sr3", scale=4, inference={"steps": 2}), tmp_path / "s.pt")
    reg = save_atomic(model_file(tiny_unet(1), objective="regression", scale=4), tmp_path / "r.pt")
    return sr3, reg


def test_evaluate_command_writes_json_with_every_key(tmp_path, capsys):
    sr3, reg = write_models(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    IMAGES["wide"].save(data / "wide.png")
    IMAGES["square"].save(data / "square.jpg")
    out = tmp_path / "res.json"
    args = ["evaluate", "--checkpoint", str(sr3), "--regression", str(reg), "--data", str(data), "--samples", "2"]
    assert main(args + ["--json", str(out), "--no-progress", "--device", "cpu"]) == 0
    result = json.loads(out.read_text())
    assert set(result["methods"]) == set(METHODS)
    assert {r["name"] for r in result["images"]} == {"wide", "square"}
    assert result["config"]["steps"] == 2  # from the model file
    assert "SR3 (a sample)" in capsys.readouterr().out


def test_evaluate_command_refuses_a_regression_file_as_sr3_and_a_wrong_scale(tmp_path, capsys):
    sr3, reg = write_models(tmp_path)
    IMAGES["wide"].save(tmp_path / "wide.png")
    assert main(["evaluate", "--checkpoint", str(reg), "--data", str(tmp_path)]) == 1
    assert "regression" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(sr3), "--scale", "2", "--regression", "none"]) == 1
    assert "×4" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(sr3), "--data", str(tmp_path / "nowhere")]) == 1
    assert "nowhere" in capsys.readouterr().err


def test_search_command_prints_a_ranking_and_the_best_flags(tmp_path, capsys):
    sr3, _ = write_models(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    IMAGES["wide"].save(data / "wide.png")
    out = tmp_path / "search.json"
    args = ["search", "--checkpoint", str(sr3), "--data", str(data), "--steps", "2,3", "--variances", "paper"]
    one = ["--starts", "noise,0.5", "--linear-gammas", "none", "--crop", "32", "--json", str(out), "--no-progress"]
    assert main(args + one) == 0
    text = capsys.readouterr().out
    assert "best: --steps" in text
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 4 and rows[0]["rank"] == 1
    assert main(args[:-2] + ["--variances", "ddim", "--no-progress"]) == 1
    assert "ddim" in capsys.readouterr().err
    # two step counts × (noise, 0.5, two linear chains) with the default --linear-gammas
    assert main(args + ["--starts", "noise,0.5", "--crop", "32", "--json", str(out), "--no-progress"]) == 0
    assert len(json.loads(out.read_text())["rows"]) == 8
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(args + ["--linear-gammas", "2"])
    assert "noise level" in capsys.readouterr().err


def test_rank_schedules_never_ranks_a_chain_less_consistent_than_bicubic_as_feasible():
    rows = [
        {"name": "drifting", "psnr": 30.0, "detail_ratio": 1.0, "consistency": 500.0, "nfe": 100},
        {"name": "faithful", "psnr": 25.0, "detail_ratio": 0.9, "consistency": 5.0, "nfe": 100},
    ]
    ranked = rank_schedules(rows, (0.8, 1.25), max_consistency=10.0)
    assert [r["name"] for r in ranked] == ["faithful", "drifting"]
    assert [r["feasible"] for r in ranked] == [True, False]
    assert rank_schedules(rows, (0.8, 1.25))[0]["name"] == "drifting"  # without the limit PSNR alone decides
