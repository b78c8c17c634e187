"""The inference-schedule search (SR3 §4: "hyper-parameter search over the inference noise schedule … inexpensive as we
only need to train the model once"): score SR3 under every candidate sampler on held-out photos, rank, and print the
flags of the winner, which `export` stores as the model's default."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable
from typing import Any

import torch
from PIL import Image

from . import metrics
from .checkpoint import load_model
from .devices import resolve_device, resolve_precision
from .evaluate import (
    METRICS,
    add_common_arguments,
    check_scale,
    size_groups,
    tensor_pairs,
    timed_scored_samples,
)
from .files import write_json
from .flags import add_precision_argument
from .folders import load_images
from .images import upscale_bicubic
from .inference import SamplerOptions, training_schedule
from .report import format_search
from .schedule import NoiseSchedule

__all__ = ["default_candidates", "search_schedules", "rank_schedules", "add_arguments", "run"]


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
    info: dict | None = None,
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
    scale = int(scale or (info or {}).get("scale") or 0)
    if scale < 1:
        raise ValueError("give the scale (or info from load_model, which stores it)")
    candidates = candidates if candidates is not None else default_candidates()
    if not candidates:
        raise ValueError("no candidate schedules to search")
    pairs = tensor_pairs(images, scale, crop)
    groups = size_groups(pairs)
    rows = []
    cands = candidates
    if progress:
        from tqdm.auto import tqdm

        cands = tqdm(candidates, desc="schedules", unit="schedule")
    for cand in cands:
        opts = SamplerOptions.resolve(None, **cand)
        generator = torch.Generator().manual_seed(int(seed))
        sums: dict[str, float] = dict.fromkeys(METRICS, 0.0)
        count = 0
        for names in groups:
            hr = torch.cat([pairs[n][0] for n in names])
            lr = torch.cat([pairs[n][1] for n in names])
            ys, _, elapsed, s = timed_scored_samples(
                model,
                lr,
                hr,
                samples,
                opts,
                scale=scale,
                generator=generator,
                batch_size=batch_size,
                progress=False,
                train_schedule=train_schedule,
                info=info,
                precision=precision,
            )
            for k, v in s.items():
                sums[k] += float(v.sum())
            sums["seconds_per_image"] += elapsed
            count += ys.shape[0] * ys.shape[1]
        row = {
            "steps": opts.steps,
            "variance": opts.variance,
            "start": opts.start,
            "gamma_start": opts.gamma_start if opts.start == "bicubic" else None,
            "clip_y0": opts.clip_y0,
            "betas": list(opts.betas) if opts.betas else None,
            "sampler": opts.sampler,
            "eta": opts.eta if opts.sampler == "ddim" else None,
            "nfe": opts.schedule(train_schedule if train_schedule is not None else training_schedule(info)).T,
            **{k: v / count for k, v in sums.items()},
        }
        rows.append(row)

    bicubic = [
        metrics.consistency(upscale_bicubic(pairs[n][1], scale).clamp(-1, 1), pairs[n][1], scale).item() for n in pairs
    ]
    return rank_schedules(rows, detail_band, max_consistency=sum(bicubic) / len(bicubic))


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


# ------------------------------------------------------------------------------------------------------ CLI


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from e


def _starts(text: str) -> list[str | float]:
    if text.strip() == "none":
        return []  # only the linear chains of --linear-gammas
    out: list[str | float] = []
    for v in (v.strip() for v in text.split(",") if v.strip()):
        try:
            out.append("noise" if v == "noise" else float(v))
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"a start is 'noise' or a γ_start in (0, 1), got {v!r}") from e
    return out


def _floats_or_none(lo: float, hi: float, what: str, open_interval: bool = False):
    """An argparse type: comma-separated numbers in [lo, hi] ((lo, hi) with ``open_interval``), or 'none'."""

    def parse(text: str) -> list[float]:
        if text.strip() == "none":
            return []
        try:
            out = [float(v) for v in text.split(",") if v.strip()]
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers or 'none', got {text!r}") from e
        bad = [v for v in out if not (lo < v < hi if open_interval else lo <= v <= hi)]
        if bad:
            raise argparse.ArgumentTypeError(f"{what}, got {bad[0]:g}")
        return out

    return parse


_floats = _floats_or_none(0.0, 1.0, "a noise level γ lies in (0, 1)", open_interval=True)


CLIPS = {"off": (False,), "on": (True,), "both": (False, True)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p, crop_default=128)
    p.add_argument("--steps", type=_ints, default="25,50,100", help="step counts to try, comma-separated")
    p.add_argument(
        "--variances",
        default="paper,posterior",
        help="sampler variances to try: paper (σ²=1−α_t), posterior (σ²=(1−γ_{t−1})(1−α_t)/(1−γ_t))",
    )
    p.add_argument(
        "--starts",
        type=_starts,
        default="noise,0.05,0.2,0.5",
        help="starts to try: 'noise' (the paper's, the training schedule respaced) and γ_start values for a part-way "
        "bicubic start; 'none' for only the linear chains of --linear-gammas",
    )
    p.add_argument(
        "--clip-y0",
        choices=("off", "on", "both"),
        default="off",
        help="clip ŷ_0 to [−1, 1] inside each step (the reference code's variant): off, on, or try both",
    )
    p.add_argument(
        "--linear-gammas",
        type=_floats,
        default="0.01,0.001",
        help="also try chains from pure noise on a linear β schedule (β_1 = 1e-6) that begin at each of these noise "
        "levels γ, comma-separated; 'none' for no linear chains",
    )
    p.add_argument(
        "--etas",
        type=_floats_or_none(0.0, 1.0, "DDIM's η lies in [0, 1]"),
        default="none",
        help="also try DDIM with each of these η (0: deterministic, 1: the ancestral chain), comma-separated; "
        "'none' for Algorithm 2 only",
    )
    p.add_argument("--samples", type=int, default=1, help="SR3 samples per photo and schedule")
    p.add_argument(
        "--detail-band",
        type=float,
        nargs=2,
        default=(0.8, 1.25),
        metavar=("LO", "HI"),
        help="detail ratios counted as photo-like; the best PSNR inside the band wins",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (the same for every schedule)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps, or auto")
    p.add_argument("--batch-size", type=int, default=4, help="images refined together")
    add_precision_argument(p)


def run(args: argparse.Namespace) -> int:
    variances = [v.strip() for v in args.variances.split(",") if v.strip()]
    bad = [v for v in variances if v not in ("paper", "posterior")]
    if bad:
        raise ValueError(f"--variances: {bad[0]!r} is not one of paper, posterior")
    device = resolve_device(args.device)
    images = load_images(args.data)
    model, info = load_model(args.checkpoint, device=device, strict=True)
    scale = check_scale(args.scale, info)
    rows = search_schedules(
        model,
        images,
        default_candidates(args.steps, variances, args.starts, CLIPS[args.clip_y0], args.linear_gammas, args.etas),
        scale=scale,
        info=info,
        samples=args.samples,
        seed=args.seed,
        crop=args.crop,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        detail_band=tuple(args.detail_band),
        precision=args.precision,
    )
    print(format_search(rows))
    best = rows[0]
    flags = f"--steps {best['steps']} --variance {best['variance']} --start {best['start']}"
    if best.get("sampler") == "ddim":
        flags = f"--steps {best['steps']} --sampler ddim --eta {best['eta']:g} --start {best['start']}"
    if best["start"] == "bicubic":
        flags += f" --gamma-start {best['gamma_start']:g}"
    if best.get("betas"):
        flags += f" --betas {best['betas'][0]:.6g} {best['betas'][1]:.6g}"
    if best["clip_y0"]:
        flags += " --clip-y0 on"
    print(f"best: {flags}" + ("" if best["feasible"] else " (no schedule reached the detail band)"))
    if args.json:
        out = {
            "criterion": "max PSNR with detail ratio in band and consistency <= bicubic's, else detail ratio nearest 1",
            "rows": rows,
        }
        out["config"] = {
            "scale": scale,
            "samples": args.samples,
            "seed": args.seed,
            "crop": args.crop,
            "detail_band": list(args.detail_band),
            "precision": resolve_precision(args.precision, device),
            "checkpoint": info["path"],
        }
        print(f"wrote {write_json(out, args.json)}", file=sys.stderr)
    return 0
