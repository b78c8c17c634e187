"""The sampler's fast path on a GPU: one refinement step under `torch.compile`, replayed as a CUDA graph.

`sr3_edu.diffusion.sample(compile=True)` runs each step (`refine_step` or `ddim_step`: the U-Net and the update
together) through `compiled_step`; the numbers of every step are read from a table already on the device and the
noise is drawn there, so a step needs no host work. The compiled loop is tested against the plain one in
``tests/test_device.py`` and ``tests/test_upscale.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["compiled_step"]

_CACHE: dict[tuple[str, str], Callable] = {}


def compiled_step(step: Callable, device: torch.device) -> Callable:
    """``step`` under `torch.compile`, one per (step, device type). On CUDA the mode is "reduce-overhead", which
    records the step as a CUDA graph and replays it: one launch per step and no host synchronisation."""
    mode = "reduce-overhead" if device.type == "cuda" else None
    key = (step.__name__, device.type)
    if key not in _CACHE:
        _CACHE[key] = torch.compile(step, mode=mode, dynamic=False)
    return _CACHE[key]
