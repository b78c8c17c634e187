"""The image pipeline: the fast path's precision, tiles blended at every step, and the seams they do not leave."""

import contextlib

import pytest
import torch
from torch import nn

from sr3_edu import devices
from sr3_edu.builtin import builtin_images
from sr3_edu.checkpoint import load_model
from sr3_edu.devices import channels_last_training, native_bf16, resolve_precision
from sr3_edu.diffusion import sample
from sr3_edu.metrics import seam_ratio
from sr3_edu.pipeline import AUTO_TILE, FastNetwork, TiledModel, auto_tile, tiled
from sr3_edu.protocol import tensor_pairs
from sr3_edu.schedule import NoiseSchedule
from sr3_edu.unet import SR3UNet, UNetConfig
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


def _random_unet() -> SR3UNet:
    """A small U-Net with attention and dropout whose every weight is drawn (the zero-initialised convolutions too)."""
    torch.manual_seed(0)
    cfg = UNetConfig(base_channels=16, channel_mults=(1, 2), num_res_blocks=1, attn_levels=(1,), dropout=0.2)
    model = SR3UNet.from_config(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model


def test_fixed_weights_casts_theta_once_and_gives_autocasts_numbers_bit_for_bit():
    model = _random_unet()
    fast = FastNetwork(model, "bf16")
    x, y, g = torch.rand(2, 3, 8, 8) * 2 - 1, torch.randn(2, 3, 32, 32), torch.tensor([0.3, 0.9])
    with torch.inference_mode():
        every_call = fast(x, y, g)
        with fast.fixed_weights():
            assert torch.equal(fast(x, y, g), every_call)
            with torch.no_grad():
                model.conv_in.weight.mul_(2)  # a change inside the chain is not seen: θ was cast on entering
            assert torch.equal(fast(x, y, g), every_call)
        changed = fast(x, y, g)
        assert not torch.equal(changed, every_call)
        with fast.fixed_weights():  # the next chain casts the weights as they are now
            assert torch.equal(fast(x, y, g), changed)
        model.conv_in.weight = nn.Parameter(model.conv_in.weight.detach() / 2)  # a new tensor, not an update
        with fast.fixed_weights():
            assert torch.equal(fast(x, y, g), every_call)
        model.train()  # dropout on: the copy follows the model's mode too
        with fast.fixed_weights():
            torch.manual_seed(1)
            inside = fast(x, y, g)
        torch.manual_seed(1)
        assert torch.equal(inside, fast(x, y, g)) and not torch.equal(inside, every_call)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the model itself is untouched


def test_fixed_weights_does_nothing_in_fp32():
    model = _random_unet()
    fast = FastNetwork(model, "fp32")
    x, y, g = torch.rand(1, 3, 8, 8) * 2 - 1, torch.randn(1, 3, 32, 32), torch.tensor([0.5])
    with torch.inference_mode(), fast.fixed_weights():
        assert fast._cast is None
        torch.testing.assert_close(fast(x, y, g), model(x, y, g), atol=0, rtol=0)


class _Spy:
    """A stand-in f_θ that records whether each call came inside its own ``fixed_weights``."""

    multiple = 1

    def __init__(self):
        self.inside, self.calls, self.entered = False, [], 0

    def parameters(self):
        return iter([torch.zeros(1)])

    @contextlib.contextmanager
    def fixed_weights(self):
        self.entered += 1
        self.inside = True
        yield
        self.inside = False

    def __call__(self, x_lr, y_t, gamma):
        self.calls.append(self.inside)
        return torch.zeros_like(y_t)


@pytest.mark.parametrize("tiles", [False, True])
def test_sample_holds_the_weights_fixed_for_its_whole_chain(tiles):
    spy = _Spy()
    net = TiledModel(spy, tile=16, scale=4) if tiles else spy
    sample(net, torch.zeros(1, 3, 8, 8), NoiseSchedule.linear(3), scale=4, generator=torch.Generator().manual_seed(0))
    assert spy.entered == 1 and not spy.inside
    per_step = len(net.layout(32)[1]) ** 2 if tiles else 1  # 32² in 16² tiles: 3 × 3 tiles, one call each
    assert per_step == (9 if tiles else 1) and spy.calls == [True] * (3 * per_step)


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
