"""The U-Net's layers: the BigGAN-style residual block with FiLM noise conditioning, and self-attention."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ResBlock", "AttnBlock", "Dropout", "keep_mask", "GroupNorm", "group_norm", "upsample_conv"]


def _groups(ch: int) -> int:
    g = min(32, max(1, ch // 4))
    while ch % g:
        g -= 1
    return g


def group_norm(ch: int) -> GroupNorm:
    """GroupNorm over ``ch`` channels with up to 32 groups (fewer where ``ch`` is small or not divisible)."""
    return GroupNorm(_groups(ch), ch)


SMALL_MAP_PIXELS = 1024
"""Feature maps with fewer pixels than this count as small for `GroupNorm`'s layout choice."""
NARROW_GROUP = 16
"""Groups with fewer channels than this count as narrow for `GroupNorm`'s layout choice."""


class GroupNorm(nn.GroupNorm):
    """`torch.nn.GroupNorm` (the same parameters and state dict, the same normalisation), with two detours around
    slow CPU kernels for channels_last bf16 or fp16 inputs; results differ from the plain kernels only in rounding.

    - Forward, small maps of narrow groups (fewer than `SMALL_MAP_PIXELS` pixels, fewer than `NARROW_GROUP` channels
      a group): normalised in the contiguous layout and handed back channels_last. There torch's channels_last
      kernel took 2.6–4.4× as long on a 2-core CPU as the two layout copies and the contiguous kernel together — in
      the sampler's channels_last path at 1/8 of a tile's side, and at 8–16² in a 64² network. On larger maps or
      wider groups the channels_last kernel is the faster one.
    - Backward, every channels_last half-precision map (a training step in channels_last): the gradient is computed
      by the fp32 channels_last kernel on fp32 copies of y's gradient and of x, and rounded once to x's dtype. With
      torch's bf16 channels_last backward kernel instead, a 16→64 training step in channels_last took 1.16× as long.

    `benchmarks/bench_step_costs.py` times both, and whole sampler calls and training steps with and without them.
    """

    def forward(self, x: Tensor) -> Tensor:
        needs_grad = x.requires_grad or (self.weight is not None and self.weight.requires_grad)
        if _half_channels_last_cpu(x) and torch.is_grad_enabled() and needs_grad:
            return _ChannelsLastGroupNorm.apply(x, self.weight, self.bias, self.num_groups, self.eps)
        if _narrow_small_channels_last(x, self.num_groups):
            return super().forward(x.contiguous()).contiguous(memory_format=torch.channels_last)
        return super().forward(x)


def _half_channels_last_cpu(x: Tensor) -> bool:
    if x.device.type != "cpu" or x.dim() != 4 or x.dtype not in (torch.bfloat16, torch.float16):
        return False
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _narrow_small_channels_last(x: Tensor, groups: int) -> bool:
    if not _half_channels_last_cpu(x):
        return False
    N, C, H, W = x.shape
    return H * W < SMALL_MAP_PIXELS and C // groups < NARROW_GROUP


class _ChannelsLastGroupNorm(torch.autograd.Function):
    """GroupNorm of a channels_last half-precision CPU map whose backward runs in fp32 (see `GroupNorm`)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None, groups: int, eps: float) -> Tensor:
        N, C, H, W = x.shape
        detour = _narrow_small_channels_last(x, groups)
        y, mean, rstd = torch.native_group_norm(x.contiguous() if detour else x, weight, bias, N, C, H * W, groups, eps)
        ctx.save_for_backward(x, weight, mean, rstd)
        ctx.groups = groups
        return y.contiguous(memory_format=torch.channels_last) if detour else y

    @staticmethod
    def backward(ctx, dy: Tensor):
        x, weight, mean, rstd = ctx.saved_tensors
        N, C, H, W = x.shape
        # the gradient of a channel slice (torch.cat's backward) is strided: copy it into channels_last, not NCHW
        fp32 = {"dtype": torch.float32, "memory_format": torch.channels_last}
        mask = [ctx.needs_input_grad[0], weight is not None and ctx.needs_input_grad[1], ctx.needs_input_grad[2]]
        dx, dweight, dbias = torch.ops.aten.native_group_norm_backward(
            dy.to(**fp32), x.to(**fp32), mean, rstd, weight, N, C, H * W, ctx.groups, mask
        )
        return (dx.to(x.dtype) if dx is not None else None), dweight, dbias, None, None


MASK_BITS = 15
"""Random bits per unit of a CPU dropout mask (`keep_mask`): p is realised as a multiple of 2⁻¹⁵."""


def keep_mask(x: Tensor, p: float) -> tuple[Tensor, float]:
    """A Bernoulli keep-mask for ``x`` in x's memory layout, and the keep probability q it realises.

    Each unit gets 15 random bits b (four units per 64-bit draw of the generator, where ``torch.rand`` spends one
    32-bit draw and a conversion per unit) and is kept where b ≥ k = round(p·2¹⁵): q = 1 − k/2¹⁵, p rounded to a
    multiple of 2⁻¹⁵ (0.2 → 0.20001), k kept in [1, 2¹⁵ − 1]. The bits are laid out in x's memory order, so for a
    channels_last x the mask is channels_last too (a contiguous mask would make every product a strided copy)."""
    k = min(max(round(p * 2**MASK_BITS), 1), 2**MASK_BITS - 1)
    n = x.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_().view(torch.int16)[:n]
    dense = x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last))
    bits = bits.as_strided(x.shape, x.stride()) if dense else bits.view(x.shape)
    # random_ fills an int64 with 63 bits (its sign bit is 0): keep 15 of each 16 so all four units are alike
    return bits.bitwise_and_(2**MASK_BITS - 1) >= k, 1 - k / 2**MASK_BITS


class Dropout(nn.Dropout):
    """Inverted dropout: each unit kept with probability q = 1 − p and scaled by 1/q, as `torch.nn.Dropout`.

    On a CPU the mask comes from `keep_mask`: 15 random bits per unit against p·2¹⁵, a quarter of the generator's
    draws of ``torch.rand`` (`benchmarks/bench_step_costs.py`: one dropout on a 2 × 64 × 128² bf16 map 3.3× as fast
    as F.dropout's ``bernoulli_`` kernel, the ref128 training step 1.04–1.13× as fast over three runs). p is then
    realised to 2⁻¹⁵ (0.2 as 0.20001) and the kept units are scaled by that q's 1/q, so the expectation is x
    exactly. Elsewhere (CUDA's fused kernel) it is F.dropout. No parameters: state dicts are unchanged.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or not 0 < self.p < 1 or x.device.type != "cpu":
            return super().forward(x)
        keep, q = keep_mask(x, self.p)
        return x.mul(keep).mul_(1 / q)


def upsample_conv(h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """conv3×3(nearest×2(h)) (padding 1) as one transposed convolution of h itself: 4/9 of the multiplies, and the
    enlarged map is never made.

    Nearest-neighbour ×2 repeats each pixel of h in a 2×2 block, so along each axis the three taps w0, w1, w2 of the
    kernel fall on two pixels of h only: an even output row 2i sees rows i−1 (through w0) and i (w1 + w2), an odd
    row 2i+1 sees rows i (w0 + w1) and i+1 (w2). That is a transposed convolution with stride 2, padding 1 and the
    4-tap kernel [w2, w1 + w2, w0 + w1, w0] along each axis: 2×2 taps of h for each output pixel instead of 3×3 of
    the enlarged map (the relation of resize-convolution to transposed convolution, Odena et al. 2016). The numbers
    are those of the two-step form up to the order of the sums (tested). Under autocast the kernel is summed from
    ``weight`` cast to autocast's dtype, as a bf16 copy of the network (`sr3_edu.pipeline.FastNetwork`) holds it,
    so the two give the same bits. ``weight``: (C_out, C_in, 3, 3), the `nn.Conv2d` it replaces; its state dict is
    unchanged. `benchmarks/bench_upsample_conv.py` times it against the two steps: on a 2-core AVX2 CPU in fp32 the
    op 1.2–2.3× as fast, a whole sampler call or training step 1.02–1.24×.
    """
    if torch.is_autocast_enabled(h.device.type):
        weight = weight.to(torch.get_autocast_dtype(h.device.type))

    def taps(w: Tensor, axis: int) -> Tensor:  # [w2, w1 + w2, w0 + w1, w0] along ``axis``
        w0, w1, w2 = w.unbind(axis)
        return torch.stack([w2, w1 + w2, w0 + w1, w0], dim=axis)

    kernel = taps(taps(weight, 2), 3)  # (C_out, C_in, 4, 4)
    # conv_transpose2d takes its kernel as (C_in, C_out, k, k)
    return F.conv_transpose2d(h, kernel.transpose(0, 1), bias, stride=2, padding=1)


class ResBlock(nn.Module):
    """BigGAN-style residual block with FiLM noise conditioning and the 1/√2 rescaled sum; an "up" block's first
    convolution of the enlarged map is computed by `upsample_conv`."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float, resample: str | None = None):
        super().__init__()
        self.resample = resample
        self.norm1 = group_norm(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        # FiLM: the embedding sets a per-channel scale and shift of the normalised features.
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = group_norm(c_out)
        self.dropout = Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity on its skip path
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def _resample(self, h: Tensor) -> Tensor:
        if self.resample == "down":
            return F.avg_pool2d(h, 2)
        if self.resample == "up":
            return F.interpolate(h, scale_factor=2.0, mode="nearest")
        return h

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = F.silu(self.norm1(x))
        if self.resample == "up":
            h = upsample_conv(h, self.conv1.weight, self.conv1.bias)  # = conv1(nearest×2(h))
        else:
            h = self.conv1(self._resample(h))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)  # (B, C, 1, 1) each
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        # (h + skip) / √2
        return (h + self.skip(self._resample(x))) * (1 / math.sqrt(2))


class AttnBlock(nn.Module):
    """Multi-head self-attention over all pixels, residual sum rescaled by 1/√2."""

    def __init__(self, ch: int, head_channels: int = 32):
        super().__init__()
        self.heads = max(1, ch // head_channels)
        self.norm = group_norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).unbind(1)
        # (B, heads, HW, C/heads); the fused kernel never materialises the (HW)² matrix when it can avoid it
        h = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        h = h.transpose(-1, -2).reshape(B, C, H, W)
        return (x + self.proj(h)) * (1 / math.sqrt(2))
