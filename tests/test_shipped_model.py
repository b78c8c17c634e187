"""The shipped SR3 model runs the paper's own sampler: Algorithm 2 from pure noise keeps the photo.

A short chain (50 steps of the training schedule respaced, σ_t² = 1 − α_t, ŷ_0 never clipped, y_T ~ N(0, I)) on small
crops of two built-in validation photos, which training never saw. An ε-network blind to image-wide offsets fails
both checks by far (its chain's mean walks off the photo: colour errors of 0.06–0.2, consistency in the thousands).
"""

import re
import subprocess
import sys

import pytest
import torch
from helpers import ROOT

from sr3_edu import metrics
from sr3_edu.builtin import builtin_images
from sr3_edu.checkpoint import load_model, shipped_model_path
from sr3_edu.images import upscale_bicubic
from sr3_edu.protocol import tensor_pairs
from sr3_edu.upscale import super_resolve


@pytest.fixture(scope="module")
def shipped():
    return load_model(shipped_model_path("sr3"))


@pytest.fixture(scope="module")
def chains(shipped):
    model, info = shipped
    images = {k: v for k, v in builtin_images("val").items() if k in ("rocket", "chelsea")}
    pairs = tensor_pairs(images, info.scale, crop=64)
    lr = torch.cat([x for x, _ in pairs.values()])
    hr = torch.cat([y0 for _, y0 in pairs.values()])
    torch.manual_seed(0)
    out = super_resolve(
        model, lr, info=info, steps=50, variance="paper", start="noise", clip_y0=False, betas=None, seed=0
    )
    return hr, lr, out, info.scale


def test_the_shipped_sr3_model_is_v_parametrised(shipped):
    _, info = shipped
    assert info.objective == "sr3"
    assert info.parametrisation == "v"


def test_algorithm_2_from_pure_noise_keeps_the_photos_colour(chains):
    hr, _, out, _ = chains
    err = metrics.color_error(out, hr)
    assert err.shape == (2,)
    assert float(err.max()) <= 0.03, f"per-photo colour errors {err.tolist()}"


def test_algorithm_2_from_pure_noise_stays_consistent_with_its_input(chains):
    _, lr, out, scale = chains
    ours = metrics.consistency(out, lr, scale)
    bicubic = metrics.consistency(upscale_bicubic(lr, scale).clamp(-1, 1), lr, scale)
    assert bool((ours <= 2 * bicubic).all()), f"consistency {ours.tolist()} against bicubic's {bicubic.tolist()}"


def test_the_readmes_one_liner_prints_the_commands_stored_in_the_shipped_model():
    code = re.search(
        r'`python -c "(from sr3_edu\.checkpoint import load_model; [^"]*)"`', (ROOT / "README.md").read_text()
    )
    assert code, "README.md no longer shows how to print a model file's stored commands"
    out = subprocess.run([sys.executable, "-c", code.group(1)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "'commands': ['python -m sr3_edu train --preset tiny" in out.stdout
