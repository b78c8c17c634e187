"""``sr3-edu evaluate``: score bicubic, regression, SR3 and the mean of SR3 samples on held-out photos
(`sr3_edu.evaluate.evaluate`), and the options it shares with ``sr3-edu search``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..checkpoint import CheckpointError, ModelInfo, load_model, shipped_model_path
from ..devices import resolve_device
from ..evaluate import evaluate
from ..files import writable_folder, write_json
from ..folders import load_images
from ..report import format_table
from .flags import HelpFormatter, add_sampler_arguments, add_tile_argument, sampler_options

__all__ = ["add_common_arguments", "add_arguments", "check_scale", "load_regression", "run"]


def load_regression(arg: str | None, device, scale: int):
    """``--regression``: a path, ``none``, or (default) the shipped model when it is there."""
    if arg == "none":
        return None, None
    if arg is None:
        try:
            shipped_model_path("regression")
        except CheckpointError as e:
            print(f"note: no regression baseline ({e})", file=sys.stderr)
            return None, None
    model, info = load_model(arg, device=device, objective="regression", strict=True)
    if info.scale != scale:
        raise ValueError(f"--regression {info.path} is ×{info.scale}, but the SR3 model is ×{scale}")
    return model, info


def add_common_arguments(p: argparse.ArgumentParser, crop_default: int | None) -> None:
    """The options evaluate and search share: the model, the photos, the scale, the crop, --json, --no-progress."""
    p.formatter_class = HelpFormatter
    p.add_argument(
        "--checkpoint", default=None, help="SR3 model file or training checkpoint (default: the shipped one)"
    )
    p.add_argument(
        "--data",
        default="builtin",
        help="a folder of high-resolution images, or 'builtin' for the built-in validation photos",
    )
    p.add_argument("--scale", type=int, default=None, help="upscaling factor (default: the model's)")
    p.add_argument(
        "--crop",
        type=int,
        default=crop_default,
        help="center-crop each photo to at most N×N first, to keep CPU runs short (default: no crop = full size)"
        if crop_default is None
        else "center-crop each photo to at most N×N first",
    )
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p, crop_default=None)
    p.add_argument(
        "--regression",
        default=None,
        help="regression-baseline model file, or 'none' (default: the shipped one when installed)",
    )
    p.add_argument("--samples", type=int, default=4, help="K: SR3 samples per photo (scored each, and their mean)")
    add_sampler_arguments(p)
    add_tile_argument(p)
    p.add_argument("--per-image", action="store_true", help="also print one table per photo")


def check_scale(arg: int | None, info: ModelInfo) -> int:
    """The model's scale; a --scale that disagrees with it is an error."""
    if arg is not None and arg != info.scale:
        raise ValueError(f"--scale {arg} does not match the model, which is ×{info.scale}")
    return info.scale


def run(args: argparse.Namespace) -> int:
    if args.json:
        writable_folder(Path(args.json).parent, "--json")
    device = resolve_device(args.device)
    images = load_images(args.data)
    model, info = load_model(args.checkpoint, device=device, strict=True)
    scale = check_scale(args.scale, info)
    reg, reg_info = load_regression(args.regression, device, scale)
    result = evaluate(
        model,
        images,
        scale=scale,
        samples=args.samples,
        regression_model=reg,
        seed=args.seed,
        **sampler_options(args),
        crop=args.crop,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        sr3_info=info,
        regression_info=reg_info,
        tile=args.tile,
        precision=args.precision,
        compile=args.compile,
    )
    print(format_table(result, per_image=args.per_image))
    if args.json:
        print(f"wrote {write_json(result, args.json)}", file=sys.stderr)
    return 0
