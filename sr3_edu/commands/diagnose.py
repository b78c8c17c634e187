"""``sr3-edu diagnose``: the noise estimate's errors at fixed noise levels and the drift of a chain from pure noise
(`sr3_edu.diagnose`), on held-out photos."""

from __future__ import annotations

import argparse
import sys

import torch

from ..checkpoint import load_model
from ..devices import resolve_device
from ..diagnose import GAMMAS, chain_drift, format_report, noise_estimate_errors
from ..folders import load_images
from ..protocol import tensor_pairs
from .flags import HelpFormatter

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = HelpFormatter
    p.add_argument("--checkpoint", default=None, help="SR3 model file or training checkpoint (default: the shipped)")
    p.add_argument(
        "--data", default="builtin", help="a folder of high-resolution images, or 'builtin' for the validation photos"
    )
    p.add_argument("--crop", type=int, default=64, help="center-crop each photo to N×N (all must be at least that)")
    p.add_argument("--gammas", default=",".join(f"{g:g}" for g in GAMMAS), help="noise levels γ, comma-separated")
    p.add_argument("--repeats", type=int, default=8, help="draws of ε per noise level")
    p.add_argument("--steps", type=int, default=100, help="steps of the chain from pure noise")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps, or auto")


def run(args: argparse.Namespace) -> int:
    try:
        gammas = [float(g) for g in args.gammas.split(",") if g.strip()]
    except ValueError as e:
        raise ValueError(f"--gammas must be comma-separated numbers, got {args.gammas!r}") from e
    if not gammas or not all(0 < g < 1 for g in gammas):
        raise ValueError(f"--gammas must lie in (0, 1), got {args.gammas!r}")
    if args.repeats < 1 or args.steps < 1:
        raise ValueError("--repeats and --steps must be at least 1")
    model, info = load_model(args.checkpoint, device=resolve_device(args.device), strict=True)
    scale = info.scale
    pairs = tensor_pairs(load_images(args.data), scale, args.crop)
    small = [f"{y0.shape[-1]}×{y0.shape[-2]}" for _, y0 in pairs.values() if y0.shape[-2:] != (args.crop, args.crop)]
    if small:
        raise ValueError(f"every photo must be at least {args.crop}×{args.crop} (found {small[0]}); lower --crop")
    x = torch.cat([x for x, _ in pairs.values()])
    y0 = torch.cat([y0 for _, y0 in pairs.values()])
    errors = noise_estimate_errors(model, x, y0, gammas, repeats=args.repeats, seed=args.seed)
    drift = chain_drift(model, x, info, steps=args.steps, every=max(1, args.steps // 10), seed=args.seed)
    print(format_report(errors, drift, y0.mean().item()))
    print(
        f"{info.path} ({info.parametrisation}-parametrised f_θ): {len(pairs)} photos, {args.crop}×{args.crop}",
        file=sys.stderr,
    )
    return 0
