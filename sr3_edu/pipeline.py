"""The image pipeline around the sampler: the network on the machine's fast path, in tiles, on padded images.

Tensors in, tensors out; `sr3_edu.upscale.super_resolve` puts the PIL layer on top. Three wrappers of f_θ, each
again a callable f(x, y_t, γ) → ε̂ that `sr3_edu.diffusion.sample` takes as it takes the network itself:

* `FastNetwork` — channels_last memory and bf16 autocast where the machine multiplies bf16 natively; ε̂ comes back
  in fp32, so the update of Algorithm 2 (a difference of nearly equal numbers near t = 1) stays in fp32. Within
  `FastNetwork.fixed_weights` (`sample` enters it for its whole chain) θ is cast to bf16 once, not at every step.
* `TiledModel` — f_θ on overlapping tiles of y_t, blended at every step (not pasted at the end).
* `auto_tile` — when to tile: the U-Net's self-attention costs grow with the square of the tile's area, so beyond
  about 256² output pixels a tile is both smaller in memory and faster per pixel.

And the padding that makes any size fit the U-Net: `pad_lr` pads x by reflection until its enlargement divides by
``model.multiple``; the output is cropped back to exactly (h·scale, w·scale).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .devices import resolve_precision, reuse_freed_memory
from .diffusion import model_device_dtype

__all__ = ["FastNetwork", "TiledModel", "AUTO_TILE", "AUTO_OVERLAP", "tiled", "auto_tile", "pad_lr", "pad_like"]

AUTO_TILE = 256
"""The tile side (output pixels) ``tile="auto"`` uses for images larger than it: on a 2-core CPU one call of the
tiny U-Net cost the least per pixel at 256² (1.5 µs, against 1.9 at 128² and 2.7 at 512², where its self-attention
at 1/8 scale grows with the square of the area; ``benchmarks/bench_upscale.py`` times it), and a tile bounds a step's
memory whatever the image size."""

AUTO_OVERLAP = 32
"""The least overlap of neighbouring auto tiles (output pixels); the tiles are then spread evenly, so most overlap
more. Blending every step makes the tiles agree on one y_t, so a narrow overlap leaves no seam (tested)."""


class FastNetwork:
    """f_θ in ``precision`` ("fp32", "bf16" or "auto": bf16 where `sr3_edu.devices.native_bf16`) and, with
    ``channels_last``, NHWC memory (faster convolutions in oneDNN and cuDNN; by default on unless ``precision`` is
    "fp32", which is plain fp32 in the default layout). ε̂ is returned in fp32, contiguous. On a CPU it also makes
    glibc keep the memory each step frees for the next (`sr3_edu.devices.reuse_freed_memory`, process-wide)."""

    def __init__(self, model, precision: str = "auto", channels_last: bool | None = None):
        if channels_last is None:
            channels_last = precision != "fp32"
        self.model = model
        device = model_device_dtype(model)[0]
        self.device_type = device.type
        if device.type == "cpu":
            reuse_freed_memory()  # every refinement step frees and re-allocates the same activations
        self.precision = resolve_precision(precision, device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.multiple = getattr(model, "multiple", 1)
        self._cast: nn.Module | None = None  # the bf16 copy in use inside fixed_weights
        self._copy: _CastCopy | None = None  # kept between chains

    def parameters(self):
        return self.model.parameters()

    @contextlib.contextmanager
    def fixed_weights(self):
        """Inside it, bf16 calls take the convolution and linear weights cast to bf16 once, on entering, rather
        than autocast casting them again at every call: a chain of Algorithm 2 never changes θ. The numbers are
        the same (both casts round to nearest; tested bit for bit), and a step is 1–7 % faster on a 2-core CPU,
        the most for the largest network (``benchmarks/bench_step_costs.py``). `sample` enters it for its whole
        chain. The copy is kept and refreshed from the model on every entry, so θ changed between chains (an EMA
        update) is seen; it holds those weights a second time, in bf16 (half their fp32 size). For inference only:
        the copy's weights take no gradient. In fp32 it does nothing."""
        if self.precision != "bf16":
            yield
            return
        if self._copy is None or not self._copy.matches(self.model):
            self._copy = _CastCopy(self.model)
        previous, self._cast = self._cast, self._copy.refresh()
        try:
            yield
        finally:
            self._cast = previous

    def __call__(self, x_lr: Tensor, y_t: Tensor, gamma: Tensor) -> Tensor:
        bf16 = self.precision == "bf16"
        autocast = torch.autocast(self.device_type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        model = self.model if self._cast is None else self._cast
        with autocast:
            eps = model(
                x_lr.contiguous(memory_format=self.memory_format),
                y_t.contiguous(memory_format=self.memory_format),
                gamma,
            )
        return eps.float().contiguous()


CAST_LAYERS = (nn.Conv2d, nn.Linear)
"""The layers whose weights bf16 autocast casts at every call (convolutions and matrix products); GroupNorm's stay
fp32."""


class _CastCopy:
    """A copy of a network whose `CAST_LAYERS` hold bf16 weights; every other parameter and buffer is shared with
    the network itself (nothing copied). The copy stays the same module from chain to chain, so a compiled step
    that traced it need not trace again; `refresh` casts the network's current weights into it."""

    def __init__(self, model: nn.Module):
        self.source, self.sources = model, list(model.parameters())
        with torch.no_grad(), torch.inference_mode(False):  # normal tensors, refreshable in and out of inference
            cast = {
                id(p): nn.Parameter(p.to(torch.bfloat16), requires_grad=False)
                for layer in model.modules()
                if isinstance(layer, CAST_LAYERS)
                for p in layer.parameters(recurse=False)
            }
            # deepcopy takes a tensor found in its memo as already copied: the cast ones replaced, the rest shared
            memo = {id(t): cast.get(id(t), t) for t in itertools.chain(model.parameters(), model.buffers())}
            self.model = copy.deepcopy(model, memo)
        self.pairs = [(p, memo[id(p)]) for p in self.sources if id(p) in cast]

    def matches(self, model: nn.Module) -> bool:
        """Whether ``model`` still has the parameter tensors this copy was made from."""
        params = list(model.parameters())
        return len(params) == len(self.sources) and all(a is b for a, b in zip(params, self.sources))

    def refresh(self) -> nn.Module:
        """The copy, with the network's current weights cast into it and each layer in the network's mode."""
        with torch.no_grad():
            for source, cast in self.pairs:
                cast.copy_(source)
        for layer, twin in zip(self.source.modules(), self.model.modules()):
            twin.training = layer.training
        return self.model


class TiledModel:
    """f_θ evaluated on overlapping tiles of y_t, the ε̂ of the tiles blended with smooth weights.

    Every step of the chain still updates the whole image (as in MultiDiffusion, Bar-Tal et al. 2023), so tiles
    leave no seams; only the network's view is local. Memory then grows with the tile, not the image.
    ``tile`` is the largest tile side and ``overlap`` the least overlap, both sizes of y_t rounded to multiples of
    the scale and ``model.multiple``. Along each side the fewest tiles that cover it with that overlap are spread
    evenly (`layout`); ``batch`` tiles go through the network together (default: one at a time on a CPU, where a
    batch of four 256² tiles measured slower per tile than one; eight on a GPU, which needs the parallel work).
    """

    def __init__(self, model, tile: int, scale: int, overlap: int | None = None, batch: int | None = None):
        self.model, self.scale = model, scale
        self.batch = max(1, int(batch)) if batch else (1 if model_device_dtype(model)[0].type == "cpu" else 8)
        self.multiple = getattr(model, "multiple", 1)
        self.unit = math.lcm(scale, self.multiple)
        self.tile = max(self.unit, tile // self.unit * self.unit)
        overlap = self.tile // 4 if overlap is None else overlap
        self.overlap = min(self.tile - self.unit, max(0, overlap // self.unit * self.unit))

    def parameters(self):
        return self.model.parameters()

    def fixed_weights(self):
        """The tiled network's own `FastNetwork.fixed_weights`, if it has one."""
        return getattr(self.model, "fixed_weights", contextlib.nullcontext)()

    def layout(self, size: int) -> tuple[int, list[int]]:
        """(tile side, tile starts) along a side of ``size`` pixels (a multiple of the unit)."""
        if size <= self.tile:
            return size, [0]
        n = math.ceil((size - self.overlap) / (self.tile - self.overlap))
        side = min(self.tile, math.ceil((size + (n - 1) * self.overlap) / n / self.unit) * self.unit)
        n = max(n, math.ceil((size - self.overlap) / (side - self.overlap)))
        starts = [round(i * (size - side) / (n - 1) / self.unit) * self.unit for i in range(n - 1)]
        return side, [*starts, size - side]

    def borders(self, size: int) -> list[int]:
        """The rows (or columns) i, along a side of ``size``, where a tile ends after i or begins at i + 1."""
        side, starts = self.layout(size)
        return sorted({s - 1 for s in starts if s > 0} | {s + side - 1 for s in starts if s + side < size})

    def _weight(self, h: int, w: int, like: Tensor) -> Tensor:
        # A tent that is highest in the tile's middle: where tiles overlap, each one's centre counts most.
        def ramp(n: int) -> Tensor:
            i = torch.arange(n, device=like.device, dtype=like.dtype)
            return torch.minimum(i + 1, n - i).clamp(max=max(1, self.overlap))

        return ramp(h)[:, None] * ramp(w)[None, :]

    def __call__(self, x_lr: Tensor, y_t: Tensor, gamma: Tensor) -> Tensor:
        H, W = y_t.shape[-2:]
        if H <= self.tile and W <= self.tile:
            return self.model(x_lr, y_t, gamma)
        s, B = self.scale, y_t.shape[0]
        (h, tops), (w, lefts) = self.layout(H), self.layout(W)
        corners = [(top, left) for top in tops for left in lefts]
        wgt = self._weight(h, w, y_t)
        out = torch.zeros_like(y_t)
        total = y_t.new_zeros(H, W)
        for i in range(0, len(corners), self.batch):
            group = corners[i : i + self.batch]
            # the group's tiles side by side in one batch: (len(group)·B, C, h, w)
            x_tiles = torch.cat([x_lr[..., t // s : (t + h) // s, c // s : (c + w) // s] for t, c in group])
            y_tiles = torch.cat([y_t[..., t : t + h, c : c + w] for t, c in group])
            eps = self.model(x_tiles, y_tiles, gamma.repeat(len(group))).to(y_t.dtype)
            for j, (t, c) in enumerate(group):
                out[..., t : t + h, c : c + w] += eps[j * B : (j + 1) * B] * wgt
                total[t : t + h, c : c + w] += wgt
        return out / total


def tiled(model, tile: int | str | None, scale: int, H: int, W: int) -> TiledModel | None:
    """The `TiledModel` that refines an output of H × W for ``tile`` (see `auto_tile`), or None for one piece:
    ``"auto"`` tiles with the least overlap `AUTO_OVERLAP`, a given tile size with a quarter of it."""
    side = auto_tile(tile, H, W)
    if side is None:
        return None
    return TiledModel(model, side, scale, overlap=AUTO_OVERLAP if tile == "auto" else None)


def auto_tile(tile: int | str | None, H: int, W: int) -> int | None:
    """The tile side for an output of H × W: ``"auto"`` → `AUTO_TILE` when either side is larger, else None (the
    whole image); None or 0 → None; a number → itself."""
    if tile == "auto":
        return AUTO_TILE if max(H, W) > AUTO_TILE else None
    return int(tile) if tile else None


def pad_lr(x_lr: Tensor, scale: int, multiple: int) -> tuple[Tensor, int, int]:
    """Pad x on the right and bottom (by reflection) until h·scale and w·scale are multiples of ``multiple``;
    returns (padded x, h, w) with h, w the sizes before padding."""
    h, w = x_lr.shape[-2:]
    # h_pad must be a multiple of m / gcd(m, scale) for h_pad · scale to be a multiple of m
    unit = multiple // math.gcd(multiple, scale)
    ph, pw = -h % unit, -w % unit
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x_lr = F.pad(x_lr, (0, pw, 0, ph), mode=mode)
    return x_lr, h, w


def pad_like(y: Tensor, H: int, W: int, lr_shape: torch.Size, scale: int) -> Tensor:
    """A caller's y_T of the output size (H, W), padded like x to the padded output size."""
    if tuple(y.shape[-2:]) != (H, W):
        raise ValueError(f"y_T must have the output's size {H}×{W}, got {tuple(y.shape[-2:])}")
    ph, pw = lr_shape[-2] * scale - H, lr_shape[-1] * scale - W
    if ph or pw:
        y = F.pad(y, (0, pw, 0, ph), mode="reflect" if ph < H and pw < W else "replicate")
    return y
