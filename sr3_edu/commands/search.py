"""``sr3-edu search``: grid-search inference schedules on the validation photos (`sr3_edu.search`) and print the
flags of the best, which ``sr3-edu export`` stores as a model's default sampler."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..checkpoint import load_model
from ..devices import resolve_device, resolve_precision
from ..files import writable_folder, write_json
from ..folders import load_images
from ..report import format_search
from ..search import default_candidates, search_schedules
from .evaluate import add_common_arguments, check_scale
from .flags import add_precision_argument

__all__ = ["add_arguments", "run"]


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
    if args.json:
        writable_folder(Path(args.json).parent, "--json")
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
            "checkpoint": info.path,
        }
        print(f"wrote {write_json(out, args.json)}", file=sys.stderr)
    return 0
