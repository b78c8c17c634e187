"""The sampler's fast path on a GPU: one refinement step under `torch.compile`, replayed as a CUDA graph.

`sr3_edu.diffusion.sample(compile=True)` runs each step (`refine_step` or `ddim_step`: the U-Net and the update
together) through `compiled_step`; the numbers of every step are read from a table already on the device and the
noise is drawn there, so a step needs no host work. The compiled loop is tested against the plain one in
``tests/test_device.py`` and ``tests/test_upscale.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["compiled_step", "compiled_sampler"]

_CACHE: dict[tuple[str, str], Callable] = {}


def compiled_step(step: Callable, device: torch.device) -> Callable:
    """``step`` under `torch.compile`, one per (step, device type). On CUDA the mode is "reduce-overhead", which
    records the step as a CUDA graph and replays it: one launch per step and no host synchronisation."""
    mode = "reduce-overhead" if device.type == "cuda" else None
    key = (step.__name__, device.type)
    if key not in _CACHE:
        _CACHE[key] = torch.compile(step, mode=mode, dynamic=False)
    return _CACHE[key]


def compiled_sampler(
    step: Callable, generator: torch.Generator | None, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype
) -> tuple[Callable, torch.Generator | None]:
    """``step`` through `compiled_step`, and the generator its noise is drawn from: the step of `sample(compile=True)`.

    The compiled step always takes a tensor z and, on CUDA, marks where each replay of its graph begins."""
    fast = compiled_step(step, device)
    if generator is not None and generator.device != device:
        # Noise drawn where the model runs (no host work per step), from a seed taken from ``generator``.
        seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
        generator = torch.Generator(device=device).manual_seed(seed)
    no_noise = torch.zeros(shape, device=device, dtype=dtype)  # z at t = 1: the same graph for every step

    def run(model, x, y_t, gamma_t, k, z, clip_y0):
        if device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()  # the last step's output is this step's input
        return fast(model, x, y_t, gamma_t, k, no_noise if z is None else z, clip_y0)

    return run, generator
