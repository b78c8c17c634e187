"""``sr3-edu export``: a training checkpoint's EMA weights as a small model file (`sr3_edu.export.export`)."""

from __future__ import annotations

import argparse

from ..export import export

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sr3-edu export``."""
    parser.add_argument("--checkpoint", required=True, help="training checkpoint, e.g. runs/tiny/checkpoints/last.pt")
    parser.add_argument("--out", required=True, help="model file to write")
    parser.add_argument("--fp32", action="store_true", help="store float32 weights (default: float16, half the size)")
    parser.add_argument(
        "--steps", type=int, default=100, help="default refinement steps stored with the model (the paper: ≤ 100)"
    )
    parser.add_argument(
        "--variance",
        choices=["paper", "posterior"],
        default="paper",
        help="default sampler variance: paper (σ² = 1 − α_t) or posterior (σ² = β̃_t)",
    )
    parser.add_argument(
        "--start",
        choices=["noise", "bicubic"],
        default="noise",
        help="default start of the chain: noise (the paper's Algorithm 2) or bicubic (part-way, at --gamma-start)",
    )
    parser.add_argument(
        "--gamma-start", type=float, default=0.2, help="noise level γ where a bicubic start begins, in (0, 1)"
    )
    parser.add_argument(
        "--clip-y0", choices=["on", "off"], default="off", help="default for clipping ŷ_0 to [−1, 1] in each step"
    )
    parser.add_argument(
        "--betas",
        type=float,
        nargs=2,
        default=None,
        metavar=("B1", "BN"),
        help="default chain: a linear β schedule from B1 to BN over --steps steps (from noise) instead of the "
        "training schedule respaced",
    )
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")


def run(args: argparse.Namespace) -> int:
    """``sr3-edu export``."""
    path = export(
        args.checkpoint,
        args.out,
        half=not args.fp32,
        steps=args.steps,
        variance=args.variance,
        start=args.start,
        gamma_start=args.gamma_start,
        clip_y0=args.clip_y0 == "on",
        betas=None if args.betas is None else tuple(args.betas),
        overwrite=args.force,
    )
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
