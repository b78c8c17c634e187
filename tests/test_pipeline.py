"""The image pipeline: the fast path's precision, tiles blended at every step, and the seams they do not leave."""

import pytest
import torch

from sr3_edu import devices
from sr3_edu.builtin import builtin_images
from sr3_edu.checkpoint import load_model
from sr3_edu.devices import channels_last_training, native_bf16, resolve_precision
from sr3_edu.metrics import seam_ratio
from sr3_edu.pipeline import AUTO_TILE, FastNetwork, auto_tile, tiled
from sr3_edu.protocol import tensor_pairs
from sr3_edu.upscale import super_resolve

SEAM_TOLERANCE = 1.1
"""A tile border may be at most 10 % more visible than an average row or column of the same image."""


@pytest.fixture(scope="module")
def shipped():
    return load_model(None)


@pytest.fixture(scope="module")
def photo_lr():
    """A built-in validation photo: its 256² centre crop, as the 64² input of a ×4 model."""
    lr, _ = tensor_pairs({"grace_hopper": builtin_images("val")["grace_hopper"]}, 4, 256)["grace_hopper"]
    return lr


def test_precision_auto_is_bf16_exactly_where_the_machine_has_native_bf16():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if native_bf16(cpu) else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", cpu)


@pytest.mark.parametrize(
    "features, expected",
    [
        ({"AVX2": True, "AVX-512": True, "AVX512_BF16": True, "AMX-BF16": True}, True),  # a Xeon with AMX
        ({"AVX2": True, "AVX-512": True, "AVX512_BF16": True, "AMX-BF16": False}, False),  # an EPYC: bf16, no AMX
        ({"AVX2": True, "AVX-512": False, "AVX512_BF16": False, "AMX-BF16": False}, False),
        (None, False),  # /proc/cpuinfo unreadable
    ],
)
def test_training_is_channels_last_on_a_cpu_exactly_where_it_has_amx(monkeypatch, features, expected):
    monkeypatch.setattr(devices, "cpu_features", lambda: features)
    assert channels_last_training(torch.device("cpu")) is expected
    assert channels_last_training(torch.device("cpu"), "bf16") is expected
    assert channels_last_training(torch.device("cpu"), "fp32") is False  # plain fp32: the default layout


def test_fast_network_returns_fp32_close_to_the_plain_network(shipped):
    model, _ = shipped
    x, y, g = torch.rand(1, 3, 16, 16) * 2 - 1, torch.randn(1, 3, 64, 64), torch.full((1,), 0.3)
    with torch.inference_mode():
        plain = model(x, y, g)
        fp32 = FastNetwork(model, "fp32", channels_last=True)(x, y, g)
        bf16 = FastNetwork(model, "bf16")(x, y, g)
    assert fp32.dtype == bf16.dtype == torch.float32 and bf16.is_contiguous()
    torch.testing.assert_close(fp32, plain, atol=1e-4, rtol=0)  # the layout alone: rounding only
    assert (bf16 - plain).abs().mean() < 0.01  # bf16 keeps about 3 significant digits


def test_auto_tiles_only_images_larger_than_the_auto_tile():
    assert auto_tile("auto", AUTO_TILE, AUTO_TILE) is None
    assert auto_tile("auto", AUTO_TILE + 8, 64) == AUTO_TILE
    assert auto_tile(0, 4096, 4096) is None and auto_tile(None, 4096, 4096) is None and auto_tile(96, 64, 64) == 96


def test_tiles_leave_no_seams_where_tiles_pasted_at_the_end_do(shipped, photo_lr):
    """Blended at every step, the tiles agree on one y_t: their borders jump no more than other rows and columns.
    The control, the same tiles refined one by one and pasted, shows the seams this measure catches."""
    model, info = shipped
    kw = {"info": info, "sampler": "ddim", "eta": 0.0, "steps": 4, "seed": 0, "precision": "fp32"}
    y = super_resolve(model, photo_lr, tile=96, **kw)
    tiles = tiled(model, 96, 4, 256, 256)  # the tiles super_resolve used
    side, starts = tiles.layout(256)
    assert len(starts) > 1
    borders = tiles.borders(256)
    blended = seam_ratio(y, borders, borders)

    pasted = torch.zeros_like(y)
    for top in starts:
        for left in starts:
            x_tile = photo_lr[..., top // 4 : (top + side) // 4, left // 4 : (left + side) // 4]
            pasted[..., top : top + side, left : left + side] = super_resolve(model, x_tile, tile=0, **kw)
    assert blended < SEAM_TOLERANCE < seam_ratio(pasted, borders, borders)


def test_seam_ratio_is_one_without_a_seam_and_large_with_one():
    smooth = torch.linspace(0, 1, 64).expand(3, 64, 64).clone()
    assert seam_ratio(smooth, [31], [31]) == pytest.approx(1.0, abs=1e-4)
    stepped = smooth.clone()
    stepped[..., 32:, :] += 0.5
    assert seam_ratio(stepped, [31], []) > 10
    with pytest.raises(ValueError, match="borders"):
        seam_ratio(smooth, [], [])
