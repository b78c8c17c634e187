"""The seed of every random draw of a run, a pure function of (seed, purpose, step, rank, …): resumes are exact."""

from __future__ import annotations

import numpy as np

__all__ = ["mix_seeds", "INIT", "DATA", "STEP", "NOISE", "VAL"]

# Purpose tags, the second argument of `mix_seeds`, so that the seeds of different purposes never coincide:
# the initial weights, the data order, a step's global RNG (γ, dropout), a step's noise ε, the validation samples.
INIT, DATA, STEP, NOISE, VAL = 0, 1, 2, 3, 4


def mix_seeds(*ints: int) -> int:
    """A 63-bit seed from a few non-negative integers (SeedSequence: nearby inputs give unrelated seeds)."""
    return int(np.random.SeedSequence([int(i) for i in ints]).generate_state(1, dtype=np.uint64)[0] >> 1)
