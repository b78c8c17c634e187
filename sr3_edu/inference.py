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
model file (``info["inference"]``, written by `sr3_edu.export`), then `DEFAULT_INFERENCE`. `inference_options`
merges and validates them once; `inference_schedule` turns them into the `NoiseSchedule` the sampler walks.
"""

from __future__ import annotations

from typing import Any

from .diffusion import SAMPLERS
from .schedule import NoiseSchedule

__all__ = [
    "DEFAULT_INFERENCE",
    "inference_options",
    "as_arguments",
    "describe",
    "training_schedule",
    "inference_schedule",
]

DEFAULT_INFERENCE: dict[str, Any] = {
    "steps": 100,
    "variance": "paper",
    "start": "noise",
    "gamma_start": 0.2,
    "clip_y0": False,
    "betas": None,
    "sampler": "ddpm",
    "eta": 0.0,
}
"""Used for any option that neither the caller nor the model file sets: the paper's 100-step budget, its σ_t² =
1 − α_t, its start from pure noise and its unclipped update. γ_start only matters for ``start="bicubic"``;
``clip_y0`` is the reference code's variant (ŷ_0 clipped to [−1, 1] in each step, see `sr3_edu.diffusion.sample`).
``betas`` None respaces the training schedule; a pair (β_1, β_n) samples a linear β schedule of ``steps`` steps instead
(from noise only). A caller's ``betas="off"`` respaces the training schedule whatever the model file stores; a
caller's ``steps`` other than the file's stretches the file's linear schedule to that length (the same β_1 and the same
first noise level γ_n, `NoiseSchedule.linear_to`), as β_n was chosen for the file's own number of steps.
``sampler`` "ddpm" is Algorithm 2; "ddim" takes DDIM steps with noise η × the posterior σ (``variance`` unused)."""


def inference_options(info: dict | None = None, **given: Any) -> dict[str, Any]:
    """The sampler options in force: ``given`` (ignoring None) over the model file's ``info["inference"]``
    over `DEFAULT_INFERENCE`."""
    opts = dict(DEFAULT_INFERENCE)
    opts.update({k: v for k, v in ((info or {}).get("inference") or {}).items() if k in DEFAULT_INFERENCE})
    opts.update({k: v for k, v in given.items() if v is not None})
    if given.get("betas") == "off" or (given.get("start") == "bicubic" and given.get("betas") is None):
        opts["betas"] = None  # the training schedule respaced, over a model file's linear schedule
    if opts["variance"] not in ("paper", "posterior"):
        raise ValueError(f"variance must be 'paper' or 'posterior', got {opts['variance']!r}")
    if opts["start"] not in ("noise", "bicubic"):
        raise ValueError(f"start must be 'noise' or 'bicubic', got {opts['start']!r}")
    if int(opts["steps"]) < 1:
        raise ValueError(f"steps must be a positive number of refinement steps, got {opts['steps']}")
    if opts["sampler"] not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {opts['sampler']!r}")
    if not 0 <= float(opts["eta"]) <= 1:
        raise ValueError(f"eta must be in [0, 1] (0: deterministic DDIM, 1: the ancestral chain), got {opts['eta']}")
    opts["eta"] = float(opts["eta"])
    if not 0 < float(opts["gamma_start"]) < 1:
        raise ValueError(f"gamma_start is a noise level γ in (0, 1), got {opts['gamma_start']}")
    opts["steps"], opts["gamma_start"], opts["clip_y0"] = (
        int(opts["steps"]),
        float(opts["gamma_start"]),
        bool(opts["clip_y0"]),
    )
    if opts["betas"] is not None:
        betas = tuple(float(b) for b in opts["betas"])
        if len(betas) != 2 or not 0 < betas[0] <= betas[1] < 1:
            raise ValueError(f"betas are (β_1, β_n) of a linear schedule with 0 < β_1 ≤ β_n < 1, got {opts['betas']}")
        if opts["start"] != "noise":
            raise ValueError("a linear β schedule (betas) runs from pure noise; it cannot start part-way (bicubic)")
        stored = (info or {}).get("inference") or {}
        n = int(stored.get("steps") or DEFAULT_INFERENCE["steps"])
        if given.get("betas") is None and n != opts["steps"]:
            # The model file's linear chain at another length: the same β_1 and the same first noise level γ_T.
            gamma_T = NoiseSchedule.linear(n, *betas).gammas[-1].item()
            betas = (betas[0], NoiseSchedule.linear_to(opts["steps"], gamma_T, start=betas[0]).betas[-1].item())
        opts["betas"] = betas
    return opts


def as_arguments(opts: dict[str, Any]) -> dict[str, Any]:
    """Options `inference_options` resolved, as `super_resolve`'s keyword arguments: passed on with the same ``info``
    they resolve to themselves again (a respaced chain is said as ``betas="off"``, as None would mean "the file's")."""
    return {**{k: opts[k] for k in DEFAULT_INFERENCE}, "betas": opts["betas"] or "off"}


def describe(opts: dict[str, Any]) -> str:
    """The sampler options in words, for the lines the commands print: e.g. "100 steps, variance=paper, start=noise"."""
    sampler = f"DDIM η={opts['eta']:g}" if opts.get("sampler") == "ddim" else f"variance={opts['variance']}"
    return (
        f"{opts['steps']} steps, {sampler}, start={opts['start']}"
        + (f" (γ_start={opts['gamma_start']})" if opts["start"] == "bicubic" else "")
        + (f", linear β {opts['betas'][0]:g}→{opts['betas'][1]:g}" if opts.get("betas") else "")
        + (", ŷ_0 clipped" if opts["clip_y0"] else "")
    )


def training_schedule(info: dict | None = None) -> NoiseSchedule:
    """The schedule the model was trained with, as its model file records it (``info["inference"]["schedule"]``);
    `NoiseSchedule.linear()` (T = 2000, β 1e-6 → 1e-2, the trainer's default) when the file does not say."""
    spec = ((info or {}).get("inference") or {}).get("schedule")
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
