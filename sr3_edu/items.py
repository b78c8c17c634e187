"""A data item as a pure function of (seed, epoch, index), so that a resumed run sees exactly the same batches; and
the checks of the sizes and seeds both data sets share."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["item_generator", "draw_index", "check_sizes", "check_seed_epoch"]


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A generator that depends only on (seed, epoch, index); SeedSequence mixes the three into 64 well-spread bits."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def draw_index(g: torch.Generator, n: int) -> int:
    """An integer uniform on {0, …, n−1}."""
    return int(torch.randint(n, (1,), generator=g))


def check_sizes(hr_size: int, scale: int) -> None:
    for name, v in (("hr_size", hr_size), ("scale", scale)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if hr_size % scale:
        raise ValueError(
            f"hr_size {hr_size} is not divisible by scale {scale}: the LR side would be {hr_size / scale:g}; "
            f"use an hr_size that is a multiple of {scale}, e.g. {max(scale, hr_size // scale * scale)}"
        )


def check_seed_epoch(seed: int, epoch: int) -> None:
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
