"""The inference policy: which chain the sampler runs, from the caller, the model file and the defaults.

The inference schedule. f_θ is conditioned on the continuous noise level γ, never on the step index, so it can be
sampled with a chain other than the one it was trained on (SR3 §2.4: "flexibility in choosing number of diffusion
steps, and the noise schedule during inference"). `inference_schedule` keeps n of the training schedule's γ_t,
evenly spaced in t (`NoiseSchedule.respace`): a short chain through the same noise levels. Or, with
``betas=(β_1, β_n)``, a fresh linear β schedule of n steps (`NoiseSchedule.linear`), the form the paper's inference
schedules take. The paper capped inference at 100 steps and searched the schedule on held-out data;
`sr3_edu.search.search_schedules` does that search here.

Two ways to start the chain:

* ``start="noise"`` — the paper's Algorithm 2: y_T ~ N(0, I), then all the way down.
* ``start="bicubic"`` — **not the paper's sampler**: Chung et al. 2022, "Come-Closer-Diffuse-Faster". The
  bicubic enlargement of x is already close to y_0, so the chain starts part-way, at the noise level γ_start:
  y_S = √γ_S · bicubic(x) + √(1−γ_S) · ε over the schedule ``train.truncate(γ_start).respace(n)``. The n steps
  then cover only the low-noise end, where the detail is made.

The options come from three places, in this order of precedence: the caller (a keyword or a command-line flag), the
model file (`ModelInfo.inference`, written by `sr3_edu.export`), then `DEFAULT_INFERENCE`. `inference_options`
merges and validates them once, into a frozen `SamplerOptions` that the sampler, `evaluate` and `search` pass on as it
is; `inference_schedule` (`SamplerOptions.schedule`) turns it into the `NoiseSchedule` the sampler walks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from .checkpoint import ModelInfo
from .diffusion import SAMPLERS
from .schedule import NoiseSchedule

__all__ = [
    "SamplerOptions",
    "DEFAULT_INFERENCE",
    "inference_options",
    "describe",
    "training_schedule",
    "inference_schedule",
]


@dataclass(frozen=True)
class SamplerOptions:
    """Which chain the sampler runs, validated once when made (a ValueError names the bad option).

    The defaults are used for any option that neither the caller nor the model file sets: the paper's 100-step
    budget, its σ_t² = 1 − α_t, its start from pure noise and its unclipped update. ``gamma_start`` only matters for
    ``start="bicubic"``; ``clip_y0`` is the reference code's variant (ŷ_0 clipped to [−1, 1] in each step, see
    `sr3_edu.diffusion.sample`). ``betas`` None respaces the training schedule; a pair (β_1, β_n) samples a linear β
    schedule of ``steps`` steps instead (from noise only). ``sampler`` "ddpm" is Algorithm 2; "ddim" takes DDIM steps
    with noise η × the posterior σ (``variance`` unused). `resolve` merges a caller's options with a model file's.
    """

    steps: int = 100
    variance: str = "paper"
    start: str = "noise"
    gamma_start: float = 0.2
    clip_y0: bool = False
    betas: tuple[float, float] | None = None
    sampler: str = "ddpm"
    eta: float = 0.0

    def __post_init__(self) -> None:
        if self.variance not in ("paper", "posterior"):
            raise ValueError(f"variance must be 'paper' or 'posterior', got {self.variance!r}")
        if self.start not in ("noise", "bicubic"):
            raise ValueError(f"start must be 'noise' or 'bicubic', got {self.start!r}")
        if int(self.steps) < 1:
            raise ValueError(f"steps must be a positive number of refinement steps, got {self.steps}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if not 0 <= float(self.eta) <= 1:
            raise ValueError(f"eta must be in [0, 1] (0: deterministic DDIM, 1: the ancestral chain), got {self.eta}")
        if not 0 < float(self.gamma_start) < 1:
            raise ValueError(f"gamma_start is a noise level γ in (0, 1), got {self.gamma_start}")
        coerced = {"steps": int(self.steps), "gamma_start": float(self.gamma_start), "clip_y0": bool(self.clip_y0)}
        coerced["eta"] = float(self.eta)
        if self.betas is not None:
            betas = tuple(float(b) for b in self.betas)
            if len(betas) != 2 or not 0 < betas[0] <= betas[1] < 1:
                raise ValueError(f"betas are (β_1, β_n) of a linear schedule with 0 < β_1 ≤ β_n < 1, got {self.betas}")
            if self.start != "noise":
                raise ValueError("a linear β schedule (betas) runs from pure noise; it cannot start part-way (bicubic)")
            coerced["betas"] = betas
        for name, value in coerced.items():
            object.__setattr__(self, name, value)  # frozen: the one place the values are normalised

    @classmethod
    def resolve(cls, info: ModelInfo | Mapping[str, Any] | None = None, **given: Any) -> SamplerOptions:
        """The options in force: ``given`` (ignoring None) over the model file's ``info.inference`` over the
        defaults. A caller's ``betas="off"`` (or ``start="bicubic"`` without betas) respaces the training schedule
        whatever the file stores; a caller's ``steps`` other than the file's stretches the file's linear schedule to
        that length (the same β_1 and the same first noise level γ_n, `NoiseSchedule.linear_to`), as β_n was chosen
        for the file's own number of steps."""
        names = {f.name for f in fields(cls)}
        unknown = set(given) - names
        if unknown:
            raise TypeError(
                f"unknown sampler option {sorted(unknown)[0]!r}; the options are {', '.join(sorted(names))}"
            )
        stored = ModelInfo.of(info).inference
        opts = {k: v for k, v in stored.items() if k in names}
        opts.update({k: v for k, v in given.items() if v is not None})
        if given.get("betas") == "off" or (given.get("start") == "bicubic" and given.get("betas") is None):
            opts["betas"] = None  # the training schedule respaced, over a model file's linear schedule
        merged = cls(**opts)
        n = int(stored.get("steps") or cls.steps)
        if merged.betas is not None and given.get("betas") is None and n != merged.steps:
            # The model file's linear chain at another length: the same β_1 and the same first noise level γ_T.
            b1 = merged.betas[0]
            gamma_T = NoiseSchedule.linear(n, *merged.betas).gammas[-1].item()
            merged = replace(
                merged, betas=(b1, NoiseSchedule.linear_to(merged.steps, gamma_T, start=b1).betas[-1].item())
            )
        return merged

    def as_dict(self) -> dict[str, Any]:
        """The options as a plain dict (the form model files and JSON results store)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def describe(self) -> str:
        """The options in words, for the lines the commands print: e.g. "100 steps, variance=paper, start=noise"."""
        return describe(self.as_dict())

    def schedule(self, train_schedule: NoiseSchedule | None = None) -> NoiseSchedule:
        """The `NoiseSchedule` the sampler walks (see `inference_schedule`)."""
        return inference_schedule(
            self.steps, start=self.start, gamma_start=self.gamma_start, train_schedule=train_schedule, betas=self.betas
        )


DEFAULT_INFERENCE: dict[str, Any] = SamplerOptions().as_dict()
"""The defaults of `SamplerOptions` as a dict."""


def inference_options(info: ModelInfo | Mapping[str, Any] | None = None, **given: Any) -> dict[str, Any]:
    """`SamplerOptions.resolve` as a dict: ``given`` (ignoring None) over the model file's ``info.inference``
    over `DEFAULT_INFERENCE`."""
    return SamplerOptions.resolve(info, **given).as_dict()


def describe(opts: dict[str, Any] | SamplerOptions) -> str:
    """The sampler options in words, for the lines the commands print: e.g. "100 steps, variance=paper, start=noise"."""
    if isinstance(opts, SamplerOptions):
        opts = opts.as_dict()
    sampler = f"DDIM η={opts['eta']:g}" if opts.get("sampler") == "ddim" else f"variance={opts['variance']}"
    return (
        f"{opts['steps']} steps, {sampler}, start={opts['start']}"
        + (f" (γ_start={opts['gamma_start']})" if opts["start"] == "bicubic" else "")
        + (f", linear β {opts['betas'][0]:g}→{opts['betas'][1]:g}" if opts.get("betas") else "")
        + (", ŷ_0 clipped" if opts["clip_y0"] else "")
    )


def training_schedule(info: ModelInfo | Mapping[str, Any] | None = None) -> NoiseSchedule:
    """The schedule the model was trained with, as its model file records it (``info.inference["schedule"]``);
    `NoiseSchedule.linear()` (T = 2000, β 1e-6 → 1e-2, the trainer's default) when the file does not say."""
    spec = ModelInfo.of(info).inference.get("schedule")
    return NoiseSchedule.from_dict(spec) if spec else NoiseSchedule.linear()


def inference_schedule(
    steps: int,
    *,
    start: str = "noise",
    gamma_start: float = 0.2,
    train_schedule: NoiseSchedule | None = None,
    betas: tuple[float, float] | None = None,
) -> NoiseSchedule:
    """The chain to sample with: ``train.respace(steps)`` (from noise), ``train.truncate(γ_start).respace(steps)``
    (the part-way bicubic start), or with ``betas`` = (β_1, β_n) the linear schedule ``NoiseSchedule.linear(steps,
    β_1, β_n)`` (from noise). A respaced ``steps`` is capped at the number of training steps it can choose from."""
    if betas is not None:
        if start != "noise":
            raise ValueError("a linear β schedule (betas) runs from pure noise; it cannot start part-way (bicubic)")
        return NoiseSchedule.linear(int(steps), float(betas[0]), float(betas[1]))
    train = train_schedule if train_schedule is not None else NoiseSchedule.linear()
    if start == "bicubic":
        train = train.truncate(gamma_start)
    elif start != "noise":
        raise ValueError(f"start must be 'noise' or 'bicubic', got {start!r}")
    return train.respace(min(int(steps), train.T))
