"""Noise schedules: β_t, α_t and γ_t, and the continuous noise level p(γ) used in training.

SR3 (Saharia et al. 2021, §2) writes the forward process with α_t and γ_t:

    q(y_t | y_{t-1}) = N(√α_t · y_{t-1}, (1 − α_t) I)
    q(y_t | y_0)     = N(√γ_t · y_0,     (1 − γ_t) I),     γ_t = ∏_{i≤t} α_i

The textbook (ゼロから作るDeep Learning 5, and DDPM) writes the same process with
β_t = 1 − α_t and ᾱ_t = ∏ α_i, so the paper's γ_t *is* the textbook's ᾱ_t and the
paper's 1 − α_t *is* the textbook's β_t. `NoiseSchedule` exposes both names.

A schedule owns these numbers and nothing else (diffusers' split): the network only
ever sees γ, so a model trained on one schedule samples with any other one.

Indexing: every tensor has length T and index ``t − 1`` holds step ``t`` (t = 1..T).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["NoiseSchedule"]


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """A discrete noise schedule, stored as the paper's per-step keep factors α_1..α_T (float64)."""

    alphas: Tensor
    """Paper α_t (textbook 1 − β_t), shape (T,), float64."""
    spec: dict[str, Any] | None = field(default=None, repr=False)
    """How the schedule was made, when a constructor knows (`linear`): what `to_dict` writes."""

    def __post_init__(self) -> None:
        a = torch.as_tensor(self.alphas, dtype=torch.float64).flatten().cpu()
        if a.numel() == 0:
            raise ValueError("a noise schedule needs at least one step (got T = 0)")
        if not bool(((a > 0) & (a <= 1)).all()):
            bad = a[~((a > 0) & (a <= 1))][0].item()
            raise ValueError(f"every α_t must lie in (0, 1]; found {bad!r}")
        object.__setattr__(self, "alphas", a)

    # ---------------------------------------------------------------- constructors
    @classmethod
    def linear(cls, T: int = 2000, start: float = 1e-6, end: float = 1e-2) -> NoiseSchedule:
        """β_t linear from ``start`` to ``end`` over T steps.

        The default (T = 2000, 1e-6 → 1e-2) is the training schedule of Janspiry's SR3 code and
        WaveGrad's range; the paper gives T = 2000 but not the β values. The textbook uses
        T = 1000, 1e-4 → 0.02.
        """
        if T < 1:
            raise ValueError(f"T must be a positive number of steps, got {T}")
        if not 0 < start <= end < 1:
            raise ValueError(f"need 0 < start <= end < 1 for β, got start={start}, end={end}")
        # β_t = start + (end − start)·(t−1)/(T−1)    (textbook β_t, paper 1 − α_t)
        betas = torch.linspace(start, end, T, dtype=torch.float64)
        # α_t = 1 − β_t
        return cls(1.0 - betas, spec={"kind": "linear", "T": T, "beta_start": start, "beta_end": end})

    @classmethod
    def linear_to(cls, T: int, gamma_end: float, start: float = 1e-6) -> NoiseSchedule:
        """The linear β schedule of T steps from β_1 = ``start`` whose last noise level γ_T is ``gamma_end``.

        This is how the paper's inference schedules are described (a linear β over at most 100 steps, its end points
        searched): here the end point β_T is found by bisection, since γ_T = ∏ (1 − β_t) falls as β_T grows.
        """
        if not 0 < gamma_end < 1:
            raise ValueError(f"gamma_end is a noise level γ in (0, 1), got {gamma_end}")
        if T < 2:
            raise ValueError(f"a linear schedule to a given γ_T needs T ≥ 2 steps, got {T}")
        if cls.linear(T, start, start).gammas[-1].item() <= gamma_end:
            raise ValueError(f"β_1 = {start} alone already brings γ_T below {gamma_end} in {T} steps")
        lo, hi = start, 1 - 1e-12
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if cls.linear(T, start, mid).gammas[-1].item() > gamma_end else (lo, mid)
        return cls.linear(T, start, (lo + hi) / 2)

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
        """Nichol & Dhariwal's cosine schedule: γ(u) ∝ cos²((u + s)/(1 + s) · π/2), u = t/T."""
        u = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
        gammas = f / f[0]
        alphas = (gammas[1:] / gammas[:-1]).clamp(min=1 - max_beta)
        return cls(alphas)

    @classmethod
    def from_alphas(cls, alphas) -> NoiseSchedule:
        """A schedule from any list of α_t (e.g. one found by a search)."""
        return cls(torch.as_tensor(alphas, dtype=torch.float64))

    @classmethod
    def from_gammas(cls, gammas) -> NoiseSchedule:
        """A schedule from a decreasing list γ_1 > … > γ_T, with α_t = γ_t / γ_{t−1} and γ_0 = 1."""
        g = torch.as_tensor(gammas, dtype=torch.float64).flatten()
        if g.numel() > 1 and not bool((g[1:] < g[:-1]).all()):
            raise ValueError("γ_t must decrease strictly with t")
        prev = torch.cat([g.new_ones(1), g[:-1]])
        return cls(g / prev)

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> NoiseSchedule:
        """The schedule `to_dict` wrote (model files store their training schedule so). A linear one may leave out
        T, beta_start or beta_end, which then take `linear`'s defaults."""
        kind = spec.get("kind", "linear")
        if kind == "linear":
            names = {"T": "T", "beta_start": "start", "beta_end": "end"}
            return cls.linear(**{arg: spec[key] for key, arg in names.items() if key in spec})
        if kind == "alphas":
            return cls.from_alphas(spec["alphas"])
        raise ValueError(f"unknown noise schedule kind {kind!r} (known: linear, alphas)")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description: ``{"kind": "linear", "T", "beta_start", "beta_end"}`` for a linear schedule,
        else ``{"kind": "alphas", "alphas": [α_1, …, α_T]}``. `from_dict` reads it back."""
        return dict(self.spec) if self.spec else {"kind": "alphas", "alphas": self.alphas.tolist()}

    def respace(self, n: int) -> NoiseSchedule:
        """Keep n of this schedule's γ_t, evenly spaced in t and always keeping γ_T.

        The result is a schedule of its own with α_t = γ_t / γ_{t−1}: a shorter chain through the
        same noise levels, which a γ-conditioned network can sample without retraining.
        """
        if not 1 <= n <= self.T:
            raise ValueError(f"can respace to 1..{self.T} steps, not {n}")
        idx = torch.linspace(0, self.T - 1, n, dtype=torch.float64).round().long().unique()
        return NoiseSchedule.from_gammas(self.gammas[idx])

    def truncate(self, gamma_min: float) -> NoiseSchedule:
        """The first steps of this schedule, up to the last γ_t ≥ ``gamma_min``."""
        keep = int((self.gammas >= gamma_min).sum())
        if keep == 0:
            raise ValueError(f"no step has γ_t ≥ {gamma_min}; γ_1 = {self.gammas[0].item():.6g}")
        return NoiseSchedule(self.alphas[:keep])

    # ------------------------------------------------------------------ quantities
    @property
    def T(self) -> int:
        """Number of steps."""
        return self.alphas.numel()

    @property
    def betas(self) -> Tensor:
        """Textbook β_t = 1 − α_t (the paper writes 1 − α_t)."""
        return 1.0 - self.alphas

    @property
    def gammas(self) -> Tensor:
        """Paper γ_t = ∏_{i≤t} α_i (textbook ᾱ_t)."""
        # γ_t = ∏_{i≤t} α_i   (the textbook's ᾱ_t)
        return torch.cumprod(self.alphas, dim=0)

    @property
    def gammas_prev(self) -> Tensor:
        """γ_{t−1}, with γ_0 = 1."""
        return torch.cat([self.alphas.new_ones(1), self.gammas[:-1]])

    @property
    def posterior_variance(self) -> Tensor:
        """σ_q(t)² = (1 − γ_{t−1})(1 − α_t)/(1 − γ_t): the variance of q(y_{t−1} | y_t, y_0).

        The textbook's sampler uses this (it calls it σ_q(t)²); the paper's uses 1 − α_t.
        """
        return (1 - self.gammas_prev) * (1 - self.alphas) / (1 - self.gammas)

    @property
    def snr(self) -> Tensor:
        """Signal-to-noise ratio γ_t / (1 − γ_t) of q(y_t | y_0)."""
        return self.gammas / (1 - self.gammas)

    # ---------------------------------------------------------------- p(γ) (WaveGrad)
    def sample_gamma(
        self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """Draw n noise levels from p(γ) = Σ_t (1/T)·U(γ_t, γ_{t−1})  (paper §2.4, WaveGrad).

        Two stages, **independently for every example**: t ~ U{1..T}, then γ ~ U(γ_t, γ_{t−1}).
        (The reference implementation draws one t per batch; one per example gives every batch
        the whole range of noise levels.) Returns a CPU tensor of shape (n,).
        """
        gen_device = generator.device if generator is not None else "cpu"
        t = torch.randint(0, self.T, (n,), generator=generator, device=gen_device).cpu()
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=gen_device).cpu()
        lo, hi = self.gammas[t], self.gammas_prev[t]
        # γ ~ U(γ_t, γ_{t−1})
        return (lo + u * (hi - lo)).to(dtype)

    def __repr__(self) -> str:
        g = self.gammas
        return f"NoiseSchedule(T={self.T}, γ_1={g[0].item():.6g}, γ_T={g[-1].item():.3g})"
