"""The conditional U-Net f_θ(x, y_t, γ)."""

import math

import pytest
import torch
import torch.nn.functional as F

from sr3_edu.blocks import upsample_conv
from sr3_edu.unet import PRESETS, ResBlock, SR3UNet, noise_level_embedding


def randomised(model):
    torch.manual_seed(0)
    for p in model.parameters():  # zero-initialised output layers would hide the inputs' effect
        torch.nn.init.normal_(p, std=0.05)
    return model.eval()


def small():
    return SR3UNet(base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=1, attn_levels=(2,))


@pytest.mark.parametrize("scale", [4, 8])
def test_output_has_y_t_shape_for_non_square_sizes(scale):
    model = small()
    x = torch.randn(2, 3, 24 // scale * 2, 40 // scale * 2)
    y_t = torch.randn(2, 3, x.shape[2] * scale, x.shape[3] * scale)
    out = model(x, y_t, torch.rand(2))
    assert out.shape == y_t.shape and out.dtype == torch.float32


def test_output_changes_with_gamma_and_with_x():
    model = randomised(small())
    x, y_t = torch.randn(1, 3, 8, 8), torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        base = model(x, y_t, torch.tensor([0.5]))
        other_gamma = model(x, y_t, torch.tensor([0.9]))
        other_x = model(x + 0.5, y_t, torch.tensor([0.5]))
    assert (base - other_gamma).abs().max() > 1e-4
    assert (base - other_x).abs().max() > 1e-4


def test_input_is_bicubic_x_concatenated_with_y_t():
    model = small()
    assert model.conv_in.in_channels == 6


def test_sizes_not_divisible_by_the_level_count_are_refused_with_the_fix():
    model = small()
    with pytest.raises(ValueError, match="divisible by 4.*pad"):
        model(torch.randn(1, 3, 5, 5), torch.randn(1, 3, 20, 22), torch.rand(1))


def test_noise_level_embedding_sees_sqrt_gamma_and_separates_nearby_levels():
    e = noise_level_embedding(torch.tensor([0.25, 0.2501, 0.81]), 64)
    assert e.shape == (3, 64)
    # c = 1000·√γ: sin/cos of the slowest frequency (ω = 1) at index 0 and 32
    assert e[0, 0].item() == pytest.approx(math.sin(500.0), abs=1e-4)
    assert (e[0] - e[1]).abs().max() > 1e-3


def test_resblock_sums_its_paths_scaled_by_one_over_sqrt_two():
    torch.manual_seed(0)
    block = ResBlock(8, 16, emb_dim=12, dropout=0.0)
    torch.nn.init.normal_(block.conv2.weight, std=0.1)
    x, emb = torch.randn(2, 8, 6, 6), torch.randn(2, 12)
    h = block.conv1(F.silu(block.norm1(x)))
    scale, shift = block.film(emb)[:, :, None, None].chunk(2, dim=1)
    h = block.conv2(F.silu(block.norm2(h) * (1 + scale) + shift))
    torch.testing.assert_close(block(x, emb), (h + block.skip(x)) / math.sqrt(2))


def two_step_up_conv(h, weight, bias):
    """The up block's convolution as the paper's U-Net writes it: nearest-neighbour ×2, then the 3×3 convolution."""
    return F.conv2d(F.interpolate(h, scale_factor=2.0, mode="nearest"), weight, bias, padding=1)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_upsample_conv_is_nearest_enlargement_then_the_3x3_convolution_values_and_gradients(memory_format):
    torch.manual_seed(0)
    h = torch.randn(2, 5, 7, 6, dtype=torch.float64).contiguous(memory_format=memory_format).requires_grad_()
    weight = torch.randn(4, 5, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
    out = upsample_conv(h, weight, bias)
    want = two_step_up_conv(h, weight, bias)
    assert out.shape == (2, 4, 14, 12) and out.is_contiguous(memory_format=memory_format)
    torch.testing.assert_close(out, want, rtol=0, atol=1e-12)  # the same sums in another order
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, (h, weight, bias), g)
    for got, expected in zip(grads, torch.autograd.grad(want, (h, weight, bias), g)):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)  # trains the 3×3 weight it replaces


def test_upsample_conv_under_bf16_autocast_sums_the_kernel_from_the_weight_as_autocast_casts_it():
    torch.manual_seed(0)
    h, weight, bias = torch.randn(1, 8, 5, 5), torch.randn(8, 8, 3, 3), torch.randn(8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = upsample_conv(h, weight, bias)
        cast_once = upsample_conv(h, weight.to(torch.bfloat16), bias.to(torch.bfloat16))  # a bf16 copy's weights
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, cast_once)  # what FastNetwork.fixed_weights relies on
    exact = two_step_up_conv(h.double(), weight.double(), bias.double())
    # bf16's rounding (2⁻⁸ relative) and no more: a wrong tap would be off by the size of the output itself
    assert (out.double() - exact).abs().mean() < 0.01 * exact.abs().mean()


def test_up_block_is_the_two_step_block_with_its_convolution_in_one_step():
    torch.manual_seed(0)
    block = ResBlock(8, 8, emb_dim=12, dropout=0.0, resample="up").double()
    torch.nn.init.normal_(block.conv2.weight, std=0.1)
    x, emb = torch.randn(2, 8, 5, 6, dtype=torch.float64), torch.randn(2, 12, dtype=torch.float64)
    up = lambda t: F.interpolate(t, scale_factor=2.0, mode="nearest")  # noqa: E731
    h = block.conv1(up(F.silu(block.norm1(x))))
    scale, shift = block.film(emb)[:, :, None, None].chunk(2, dim=1)
    h = block.conv2(F.silu(block.norm2(h) * (1 + scale) + shift))
    torch.testing.assert_close(block(x, emb), (h + up(x)) / math.sqrt(2), rtol=0, atol=1e-12)
    assert set(block.state_dict()) >= {"conv1.weight", "conv1.bias"}  # model files load as before


def test_up_block_convolution_costs_four_ninths_of_the_two_step_form():
    from torch.utils.flop_counter import FlopCounterMode

    block = ResBlock(8, 8, emb_dim=12, dropout=0.0, resample="up").eval()
    B, C, h, w = 2, 8, 5, 6
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        block(torch.randn(B, C, h, w), torch.randn(B, 12))
    # multiply-adds × 2: conv1 as 4×4 taps of each input pixel, conv2 3×3 at 2h × 2w, FiLM's linear layer
    conv1, conv2, film = B * C * C * 16 * h * w, B * C * C * 9 * 4 * h * w, B * 12 * 2 * C
    assert counter.get_total_flops() == 2 * (conv1 + conv2 + film)
    assert conv1 * 9 == 4 * (B * C * C * 9 * 4 * h * w)  # against conv1 on the enlarged map


def test_presets_include_a_tiny_model_and_the_paper_16_to_128_configuration():
    assert sum(p.numel() for p in SR3UNet.from_preset("tiny").parameters()) < 5_000_000
    paper = PRESETS["sr3_16_128"]
    assert (paper.base_channels, paper.channel_mults, paper.num_res_blocks, paper.dropout) == (
        128,
        (1, 2, 4, 8, 8),
        3,
        0.2,
    )
    with torch.device("meta"):
        n = sum(p.numel() for p in SR3UNet.from_preset("sr3_16_128").parameters())
    assert 500e6 < n < 650e6  # the paper reports 550M


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="tiny"):
        SR3UNet.from_preset("huge")


def test_config_round_trips():
    m = small()
    m2 = SR3UNet.from_config(m.config.to_dict())
    assert m2.config == m.config
    m2.load_state_dict(m.state_dict())


def test_activation_checkpointing_gives_the_same_gradients_and_recomputes_each_stage():
    torch.manual_seed(0)
    model = SR3UNet(base_channels=16, channel_mults=(1, 2), num_res_blocks=1, attn_levels=(1,), dropout=0.3)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    model.train()
    x, y_t, gamma = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 16, 16), torch.rand(2)
    calls = {"n": 0}
    stage = model._run_stage

    def counting(*args):
        calls["n"] += 1
        return stage(*args)

    model._run_stage = counting

    def grads(checkpointing: bool) -> tuple[list[torch.Tensor], int]:
        model.zero_grad()
        model.activation_checkpointing = checkpointing
        calls["n"] = 0
        torch.manual_seed(1)  # the same dropout masks in both runs
        model(x, y_t, gamma).square().mean().backward()
        return [p.grad.clone() for p in model.parameters()], calls["n"]

    plain, plain_calls = grads(False)
    checkpointed, checkpointed_calls = grads(True)
    assert checkpointed_calls == 2 * plain_calls  # every stage ran again in the backward pass
    for a, b in zip(plain, checkpointed):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)
    # in evaluation (and under no_grad) nothing is recomputed
    model.eval()
    calls["n"] = 0
    with torch.no_grad():
        model(x, y_t, gamma)
    assert calls["n"] == plain_calls


def test_dropout_keeps_each_unit_with_probability_one_minus_p_and_rescales_it():
    from sr3_edu.blocks import Dropout

    drop = Dropout(0.2)
    q = 1 - round(0.2 * 2**15) / 2**15  # p realised to 2⁻¹⁵: 0.20001
    assert abs(q - 0.8) < 2**-16
    x = torch.randn(1_000_000, requires_grad=True)
    torch.manual_seed(0)
    y = drop(x)
    kept = y != 0
    # Binomial(10⁶, 0.8): its standard deviation is 0.0004 in the kept fraction; 0.003 is over 7 of them
    assert abs(kept.float().mean().item() - 0.8) < 0.003
    torch.testing.assert_close(y[kept], x[kept] / q)
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / q)  # the gradient goes through the kept units only
    torch.manual_seed(0)
    assert torch.equal(drop(x) != 0, kept)  # the mask is a function of the seed
    drop.eval()
    assert drop(x) is x or torch.equal(drop(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
    assert isinstance(ResBlock(8, 8, emb_dim=4, dropout=0.2).dropout, Dropout)


@pytest.mark.parametrize("p", [0.05, 0.2, 0.5, 0.9])
def test_dropout_masks_keep_every_lane_of_the_random_words_alike(p):
    from sr3_edu.blocks import keep_mask

    # four units share one 64-bit draw; the top lane has the draw's sign bit, which is always 0
    torch.manual_seed(0)
    keep, q = keep_mask(torch.ones(4 * 250_000), p)
    assert q == 1 - round(p * 2**15) / 2**15
    lanes = keep.view(-1, 4).float().mean(0)
    # Binomial(250 000, q) per lane: its standard deviation is at most 0.001; 0.006 is over 6 of them
    assert (lanes - q).abs().max().item() < 0.006, lanes
    # and neighbouring units are not tied to each other: P(both kept) = q²
    both = (keep[:-1] & keep[1:]).float().mean().item()
    assert abs(both - q * q) < 0.006


def test_dropout_draws_its_mask_in_the_layout_of_its_input():
    from sr3_edu.blocks import Dropout

    drop = Dropout(0.2)
    k = round(0.2 * 2**15)
    x = torch.randn(2, 8, 6, 6)
    n = x.numel()
    for memory_format, shape in ((torch.contiguous_format, (2, 8, 6, 6)), (torch.channels_last, (2, 6, 6, 8))):
        torch.manual_seed(0)
        y = drop(x.contiguous(memory_format=memory_format))
        torch.manual_seed(0)
        # the generator's numbers in memory order: 15 bits of each 16-bit lane of its 64-bit draws
        bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_().view(torch.int16)[:n] & (2**15 - 1)
        u = bits.view(shape)
        keep = (u if shape[1] == 8 else u.permute(0, 3, 1, 2)) >= k
        torch.testing.assert_close(y, x * keep / (1 - k / 2**15))
        assert y.is_contiguous(memory_format=memory_format)


def test_dropout_of_a_strided_view_is_still_a_mask_of_its_shape():
    from sr3_edu.blocks import Dropout

    x = torch.randn(4, 6, 10)[:, ::2, 1:]  # neither contiguous nor channels_last
    torch.manual_seed(0)
    y = Dropout(0.5)(x)
    kept = y != 0
    assert y.shape == x.shape and 0 < kept.float().mean().item() < 1
    torch.testing.assert_close(y[kept], x[kept] * 2)


def test_group_norm_of_small_channels_last_bf16_maps_matches_the_plain_kernel_and_keeps_the_layout(monkeypatch):
    from sr3_edu import blocks

    cl = torch.channels_last
    norm = blocks.group_norm(128)  # 32 groups of 4 channels
    torch.nn.init.normal_(norm.weight), torch.nn.init.normal_(norm.bias)
    assert isinstance(norm, torch.nn.GroupNorm)
    assert list(norm.state_dict()) == list(torch.nn.GroupNorm(32, 128).state_dict())
    x = torch.randn(2, 128, 29, 29).bfloat16().contiguous(memory_format=cl)
    assert blocks._narrow_small_channels_last(x, norm.num_groups)
    seen, group_norm = [], torch.nn.functional.group_norm
    monkeypatch.setattr(
        torch.nn.functional, "group_norm", lambda x, *a: seen.append(x.is_contiguous()) or group_norm(x, *a)
    )
    with torch.no_grad():  # the sampler's path; training's is the next test's
        y = norm(x)
    assert seen == [True]  # normalised in the contiguous layout
    monkeypatch.undo()
    assert y.is_contiguous(memory_format=cl) and y.dtype == torch.bfloat16
    plain = torch.nn.GroupNorm.forward(norm, x)
    # the two kernels sum in different orders: they may differ in the last bf16 bit, nowhere more
    torch.testing.assert_close(y, plain, rtol=2**-7, atol=2**-7)
    exact = torch.nn.functional.group_norm(x.double(), 32, norm.weight.double(), norm.bias.double())
    assert (y.double() - exact).abs().max() <= (plain.double() - exact).abs().max() * 1.5 + 1e-3


@pytest.mark.parametrize("shape", [(2, 128, 16, 16), (2, 32, 64, 64)], ids=["small map", "large map"])
def test_group_norm_trains_channels_last_bf16_maps_with_the_fp32_backward_and_gradients_as_close_as_torchs(shape):
    from sr3_edu import blocks

    cl = torch.channels_last
    torch.manual_seed(0)
    norm = blocks.group_norm(shape[1])
    torch.nn.init.normal_(norm.weight), torch.nn.init.normal_(norm.bias)
    x = (torch.randn(shape) * 3 + 1).bfloat16().contiguous(memory_format=cl).requires_grad_()
    # the gradient arrives as a channel slice of a wider channels_last map, as torch.cat's backward hands it on
    dy = torch.randn(shape[0], 2 * shape[1], *shape[2:]).bfloat16().contiguous(memory_format=cl)[:, : shape[1]]
    y = norm(x)
    assert y.grad_fn.name() == "_ChannelsLastGroupNormBackward"
    with torch.no_grad():
        assert torch.equal(y, norm(x))  # the same forward kernels as inference
    dx, dw, db = torch.autograd.grad(y, (x, norm.weight, norm.bias), dy)
    assert dx.dtype == torch.bfloat16 and dx.is_contiguous(memory_format=cl)

    def grads(x, weight, bias):
        x, weight, bias = (t.detach().requires_grad_() for t in (x, weight, bias))
        out = torch.nn.functional.group_norm(x, norm.num_groups, weight, bias, norm.eps)
        return torch.autograd.grad(out, (x, weight, bias), dy.to(x.dtype))

    exact = grads(x.double(), norm.weight.double(), norm.bias.double())
    torchs = grads(x, norm.weight, norm.bias)  # torch's own bf16 channels_last backward
    assert torchs[0].is_contiguous(memory_format=cl)
    for ours, theirs, want in zip((dx, dw, db), torchs, exact):
        assert (ours.double() - want).abs().max() <= (theirs.double() - want).abs().max() * 1.5 + 1e-6
        assert (ours.double() - want).abs().max() <= 0.02 * want.abs().max()  # and both are close to exact


def test_group_norm_keeps_torchs_own_backward_for_fp32_and_contiguous_maps():
    from sr3_edu import blocks

    norm = blocks.group_norm(32)
    for x in (
        torch.randn(2, 32, 16, 16).contiguous(memory_format=torch.channels_last).requires_grad_(),
        torch.randn(2, 32, 16, 16).bfloat16().requires_grad_(),
    ):
        assert norm(x).grad_fn.name() == "NativeGroupNormBackward0"
    x = torch.randn(2, 32, 16, 16).bfloat16().contiguous(memory_format=torch.channels_last)
    norm.requires_grad_(False)
    assert norm(x).grad_fn is None  # nothing to differentiate: the inference path


def test_group_norm_takes_the_plain_kernel_unless_the_map_is_small_the_groups_narrow_and_the_layout_channels_last():
    from sr3_edu import blocks

    cl = torch.channels_last

    def takes_detour(shape, groups, dtype=torch.bfloat16, memory_format=cl):
        return blocks._narrow_small_channels_last(
            torch.zeros(shape, dtype=dtype).contiguous(memory_format=memory_format), groups
        )

    assert takes_detour((8, 256, 8, 8), 32) and takes_detour((1, 64, 31, 33), 16)
    assert takes_detour((1, 128, 16, 16), 32, torch.float16)
    assert not takes_detour((1, 128, 32, 32), 32)  # 1024 pixels: the channels_last kernel's fast case
    assert not takes_detour((2, 512, 8, 8), 32)  # 16 channels a group
    assert not takes_detour((8, 256, 8, 8), 32, torch.float32)
    assert not takes_detour((8, 256, 8, 8), 32, memory_format=torch.contiguous_format)
    assert not takes_detour((8, 256, 1, 1), 32)  # both layouts at once
    # fp32, and every input the rule leaves alone, is exactly nn.GroupNorm
    norm = blocks.group_norm(64)
    for x in (torch.randn(2, 64, 8, 8).contiguous(memory_format=cl), torch.randn(2, 64, 40, 40).bfloat16()):
        assert torch.equal(norm(x), torch.nn.GroupNorm.forward(norm, x))
