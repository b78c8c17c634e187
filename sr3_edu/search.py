"""The inference-schedule search (SR3 §4: "hyper-parameter search over the inference noise schedule … inexpensive as we
only need to train the model once"): score SR3 under every candidate sampler on held-out photos, rank, and print the
flags of the winner, which `export` stores as the model's default."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from PIL import Image

from . import metrics
from .checkpoint import ModelInfo
from .evaluate import METRICS, timed_scored_samples
from .images import upscale_bicubic
from .inference import SamplerOptions, training_schedule
from .protocol import size_groups, tensor_pairs
from .schedule import NoiseSchedule

__all__ = ["default_candidates", "search_schedules", "rank_schedules"]


def default_candidates(
    steps: Iterable[int] = (25, 50, 100),
    variances: Iterable[str] = ("paper", "posterior"),
    starts: Iterable[str | float] = ("noise", 0.05, 0.2, 0.5),
    clips: Iterable[bool] = (False,),
    linear_gammas: Iterable[float] = (),
    etas: Iterable[float] = (),
) -> list[dict[str, Any]]:
    """The grid: steps × sampler × (start ∪ linear) × clip_y0, where a float in ``starts`` is a bicubic start at
    that γ_start and ``clips`` says whether ŷ_0 is clipped inside each step (the reference code's variant).
    The samplers are Algorithm 2 with each of ``variances``, then DDIM with each η in ``etas``.
    Each γ in ``linear_gammas`` adds a chain from pure noise on a linear β schedule of that many steps, β_1 = 10⁻⁶
    (the training schedule's), β_n chosen so the chain's noisiest level is γ (`NoiseSchedule.linear_to`)."""
    samplers = [{"variance": v} for v in variances] + [{"sampler": "ddim", "eta": float(e)} for e in etas]
    grid = []
    for n in steps:
        for sampler in samplers:
            for s in [*starts, *(("linear", float(g)) for g in linear_gammas)]:
                for c in clips:
                    cand: dict[str, Any] = {"steps": int(n), **sampler, "start": "noise", "clip_y0": bool(c)}
                    if isinstance(s, tuple):
                        betas = NoiseSchedule.linear_to(int(n), s[1]).betas
                        cand.update(betas=(betas[0].item(), betas[-1].item()))
                    elif s != "noise":
                        cand.update(start="bicubic", gamma_start=float(s))
                    grid.append(cand)
    return grid


@torch.inference_mode()
def search_schedules(
    model,
    images: dict[str, Image.Image],
    candidates: list[dict[str, Any]] | None = None,
    *,
    scale: int | None = None,
    info: ModelInfo | Mapping[str, Any] | None = None,
    samples: int = 1,
    seed: int = 0,
    crop: int | None = 128,
    batch_size: int = 4,
    progress: bool = True,
    train_schedule: NoiseSchedule | None = None,
    detail_band: tuple[float, float] = (0.8, 1.25),
    precision: str = "auto",
) -> list[dict[str, Any]]:
    """Score SR3 under each candidate inference schedule on ``images`` and rank them; returns rows, best first.

    The criterion: **the highest PSNR among the candidates whose detail ratio lies in ``detail_band`` and whose
    consistency with the input is no worse than bicubic's** (on the same photos; a chain that drifts from its input
    is not a super-resolution of it, however sharp), then the rest by how close their detail ratio is to 1.
    The paper chose its schedule by FID on held-out
    data because PSNR alone rewards blur (it "did not correlate well with image quality"). FID needs an Inception
    network's downloaded weights and thousands of images, neither of which this package has; PSNR alone would pick
    the blurriest schedule, and the detail ratio alone would accept noise of the right power. Together they pick
    the most faithful schedule among those whose output carries a photo-like amount of fine detail.
    Every candidate gets the same seed, so they differ by schedule, not by luck. Each row holds the options, the
    number of network evaluations, the mean metrics of the samples, ``feasible`` and ``rank``.
    """
    info = ModelInfo.of(info)
    scale = int(scale or info.scale or 0)
    if scale < 1:
        raise ValueError("give the scale (or info from load_model, which stores it)")
    candidates = candidates if candidates is not None else default_candidates()
    if not candidates:
        raise ValueError("no candidate schedules to search")
    pairs = tensor_pairs(images, scale, crop)
    from tqdm.auto import tqdm

    rows = []
    for cand in tqdm(candidates, desc="schedules", unit="schedule", disable=not progress):
        opts = SamplerOptions.resolve(None, **cand)
        kw = {"info": info, "batch_size": batch_size, "train_schedule": train_schedule, "precision": precision}
        means = _mean_scores(model, pairs, opts, samples, seed, scale=scale, **kw)
        train = train_schedule if train_schedule is not None else training_schedule(info)
        rows.append({**_options_row(opts), "nfe": opts.schedule(train).T, **means})
    bicubic = [metrics.consistency(upscale_bicubic(x, scale).clamp(-1, 1), x, scale).item() for x, _ in pairs.values()]
    return rank_schedules(rows, detail_band, max_consistency=sum(bicubic) / len(bicubic))


def _mean_scores(model, pairs, opts: SamplerOptions, samples: int, seed: int, *, scale: int, **kw) -> dict[str, float]:
    """Every metric's mean over all photos and samples under one sampler, from the same seed as every other."""
    generator = torch.Generator().manual_seed(int(seed))
    sums: dict[str, float] = dict.fromkeys(METRICS, 0.0)
    count = 0
    for names in size_groups(pairs):
        x = torch.cat([pairs[n][0] for n in names])
        y0 = torch.cat([pairs[n][1] for n in names])
        ys, _, elapsed, s = timed_scored_samples(
            model, x, y0, samples, opts, scale=scale, generator=generator, progress=False, **kw
        )
        for k, v in s.items():
            sums[k] += float(v.sum())
        sums["seconds_per_image"] += elapsed
        count += ys.shape[0] * ys.shape[1]
    return {k: v / count for k, v in sums.items()}


def _options_row(opts: SamplerOptions) -> dict[str, Any]:
    """A candidate's options as a row of the table: the options a sampler does not use are None."""
    return {
        "steps": opts.steps,
        "variance": opts.variance,
        "start": opts.start,
        "gamma_start": opts.gamma_start if opts.start == "bicubic" else None,
        "clip_y0": opts.clip_y0,
        "betas": list(opts.betas) if opts.betas else None,
        "sampler": opts.sampler,
        "eta": opts.eta if opts.sampler == "ddim" else None,
    }


def rank_schedules(
    rows: list[dict[str, Any]],
    detail_band: tuple[float, float] = (0.8, 1.25),
    max_consistency: float = math.inf,
) -> list[dict[str, Any]]:
    """Sort rows best first by the criterion of `search_schedules`; sets ``feasible`` and ``rank`` on each row.
    ``max_consistency`` (bicubic's in `search_schedules`): rows above it are never feasible."""
    lo, hi = detail_band
    for row in rows:
        r = row["detail_ratio"]
        consistent = row.get("consistency", 0.0) <= max_consistency
        if math.isfinite(max_consistency):
            row["consistency_limit"] = max_consistency
        row["feasible"] = bool(math.isfinite(r) and lo <= r <= hi and consistent)

    def key(row):
        r = row["detail_ratio"]
        off = abs(math.log(r)) if math.isfinite(r) and r > 0 else math.inf
        # in band first, by PSNR (higher first); then the rest by |log ratio|. Differences below 0.01 dB or 1 % of
        # the ratio are noise, not evidence: there the cheaper schedule (fewer network evaluations) wins.
        if row["feasible"]:
            return (0, -round(row["psnr"], 2), row["nfe"])
        return (1, round(off, 2), row["nfe"])

    rows = sorted(rows, key=key)
    for i, row in enumerate(rows, 1):
        row["rank"] = i
    return rows
