"""diagnose: the noise estimate's errors at fixed γ and the drift of a chain from pure noise."""

import math

import pytest
import torch
import torch.nn.functional as F

from sr3_edu.cli import main
from sr3_edu.diagnose import chain_drift, noise_estimate_errors
from sr3_edu.images import upscale_bicubic


class Oracle(torch.nn.Module):
    """ε̂ = (y_t − √γ·bicubic(x))/√(1−γ), plus a constant ``bias``: exact when y_0 is the bicubic image.
    ``blind`` removes any image-wide offset of y_t beyond the photo's first: an estimate that never calls one noise."""

    def __init__(self, bias=0.0, blind=False):
        super().__init__()
        self.bias, self.blind = bias, blind
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x_lr, y_t, gamma):
        g = gamma.reshape(-1, 1, 1, 1).to(y_t)
        up = F.interpolate(x_lr, size=y_t.shape[-2:], mode="bicubic", align_corners=False)
        eps = (y_t - g.sqrt() * up) / (1 - g).sqrt()
        if self.blind:
            eps = eps - eps.mean(dim=(1, 2, 3), keepdim=True)
        return eps + self.bias


def pair(seed=0):
    lr = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(seed)) * 1.2 - 0.6
    return upscale_bicubic(lr, 4), lr  # y_0 is exactly the oracle's answer


def test_an_exact_noise_estimate_has_no_error_and_a_constant_bias_is_divided_by_sqrt_gamma():
    hr, lr = pair()
    exact = noise_estimate_errors(Oracle(), lr, hr, (1e-4, 0.5), repeats=2)
    for row in exact:
        assert row["eps_mse"] < 1e-8 and row["eps_bias"] < 1e-4
        assert row["mean_response"] == pytest.approx(row["mean_response_exact"], rel=1e-3)
    blind = noise_estimate_errors(Oracle(blind=True), lr, hr, (1e-4, 0.5), repeats=1)
    assert all(abs(row["mean_response"]) < 1e-3 for row in blind)
    biased = noise_estimate_errors(Oracle(bias=0.01), lr, hr, (1e-4, 0.5), repeats=2)
    for row in biased:
        g = row["gamma"]
        assert row["eps_bias"] == pytest.approx(0.01, abs=1e-4)
        assert row["eps_mse"] == pytest.approx(1e-4, rel=0.05)
        assert row["y0_shift"] == pytest.approx(0.01 * math.sqrt(1 - g) / math.sqrt(g), rel=0.02)
    assert biased[0]["y0_shift"] > 0.9  # at γ = 10⁻⁴ a 1 % bias moves ŷ_0 by half the image range


def test_a_biased_estimate_that_calls_offsets_noise_stays_on_the_photo_and_a_blind_one_drifts():
    hr, lr = pair()
    info = {"scale": 4, "objective": "sr3"}
    for model in (Oracle(), Oracle(bias=0.01)):  # the bias is corrected at every step
        good = chain_drift(model, lr, info, steps=20, every=5)
        assert [r["t"] for r in good] == [20, 15, 10, 5, 0]
        assert good[-1]["mean"] == pytest.approx(hr.mean().item(), abs=0.02)
    bad = chain_drift(Oracle(bias=0.01, blind=True), lr, info, steps=20, every=5)
    assert abs(bad[-1]["mean"] - hr.mean().item()) > 0.2


def test_diagnose_command_prints_both_tables_and_refuses_bad_levels(capsys):
    assert main(["diagnose", "--gammas", "0.001,0.5", "--repeats", "1", "--steps", "4", "--crop", "32"]) == 0
    out = capsys.readouterr().out
    assert "ε-MSE" in out and "chain from pure noise" in out
    assert main(["diagnose", "--gammas", "0,0.5"]) == 1
    assert "(0, 1)" in capsys.readouterr().err
