"""``sr3-edu demo``, the quickstart: super-resolve the built-in validation photos and show what SR3 does that
regression does not.

``python -m sr3_edu demo`` takes a center crop of each validation photo (never seen in training), makes its ×4
low-resolution version as training did, and runs bicubic, the regression baseline and SR3 (K samples). It prints
the table of `sr3_edu.evaluate` and writes two figures:

* ``figures/demo.png`` — columns LR | bicubic | regression | SR3 | HR, each photo with a zoomed detail below;
* ``figures/refinement.png`` — one chain of iterative refinement: y_t from pure noise to y_0 (top row) and the
  network's running estimate ŷ_0 = (y_t − √(1−γ_t) ε̂)/√γ_t (bottom row, paper eq. 6).

The crops keep the whole run to about two minutes on two CPU cores with the shipped tiny model. ``--train``
first retrains both models from scratch with the recipe stored in the shipped model files (`sr3_edu.demo`).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from ..checkpoint import CheckpointError, load_model, shipped_model_path
from ..demo import train_models
from ..devices import resolve_device
from ..evaluate import evaluate
from ..files import writable_folder
from ..folders import load_images
from ..inference import inference_options
from ..plots import plot_comparison, plot_refinement
from ..report import format_table
from .flags import HelpFormatter, add_precision_argument

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = HelpFormatter
    p.add_argument("--steps", type=int, default=None, help="refinement steps (default: the model file's, else 100)")
    p.add_argument("--samples", type=int, default=2, help="K: SR3 samples per photo (scored each, and their mean)")
    p.add_argument("--crop", type=int, default=128, help="center-crop each validation photo to N×N (the HR size)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out-dir", default="figures", help="folder for demo.png and refinement.png")
    p.add_argument("--checkpoint", default=None, help="SR3 model file (default: the shipped one)")
    p.add_argument("--regression", default=None, help="regression model file, or 'none' (default: the shipped one)")
    p.add_argument("--data", default="builtin", help="'builtin' (the built-in validation photos) or a folder of photos")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps, or auto")
    p.add_argument("--batch-size", type=int, default=8, help="images refined together")
    add_precision_argument(p)
    p.add_argument("--train", action="store_true", help="first retrain both models from scratch (slow on a CPU)")
    p.add_argument(
        "--train-steps",
        type=int,
        default=None,
        help="with --train: optimizer steps per model (default: the shipped models' own number)",
    )
    p.add_argument("--train-dir", default="runs/demo", help="with --train: where the runs and model files go")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _load(arg: str | None, objective: str, device):
    """``--checkpoint``/``--regression``: a path, ``none``, or the shipped model (none for a missing regression)."""
    if arg == "none":
        return None, None
    if arg is None and objective == "regression":
        try:
            shipped_model_path("regression")
        except CheckpointError as e:
            print(f"note: no regression column ({e})", file=sys.stderr)
            return None, None
    try:
        return load_model(arg, device=device, objective=objective, strict=True)
    except CheckpointError as e:
        if arg is None:
            raise CheckpointError(f"{e}; or run `python -m sr3_edu demo --train` to train both models first") from e
        raise


def run(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    if args.samples < 1:
        raise ValueError(f"--samples must be at least 1, got {args.samples}")
    if args.crop is not None and args.crop < 16:
        raise ValueError(f"--crop must be at least 16 pixels, got {args.crop}")
    out = writable_folder(args.out_dir, "--out-dir")
    device = resolve_device(args.device)
    images = load_images(args.data, "val")
    sr3_path, reg_path = args.checkpoint, args.regression
    if args.train:
        files = train_models(args.train_dir, args.train_steps, device=str(device))
        sr3_path = sr3_path or str(files["sr3"])
        reg_path = reg_path or str(files["regression"])
    t_models = time.perf_counter()
    model, info = _load(sr3_path, "sr3", device)
    reg, reg_info = _load(reg_path, "regression", device)
    if reg_info is not None and reg_info.scale != info.scale:
        raise ValueError(f"the regression model is ×{reg_info.scale} but the SR3 model is ×{info.scale}")

    steps = inference_options(info, steps=args.steps)["steps"]  # the flag, else the model file's, else the default
    result = evaluate(
        model,
        images,
        steps=steps,
        samples=args.samples,
        regression_model=reg,
        seed=args.seed,
        crop=args.crop,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        sr3_info=info,
        regression_info=reg_info,
        keep_images=True,
        trajectory=max(1, steps // 16),
        precision=args.precision,
    )
    print(format_table(result))
    demo_png = plot_comparison(result, out / "demo.png")
    first = next(iter(result["tensors"].values()))
    refinement_png = plot_refinement(first["trajectory"], out / "refinement.png")
    seconds = time.perf_counter() - t_models
    print(f"wrote {demo_png} and {refinement_png}")
    print(
        f"demo took {seconds:.0f} s ({len(images)} photos cropped to {args.crop}px, K={args.samples}, {steps} steps, "
        f"{torch.get_num_threads()} CPU threads, {device})"
        + (f"; with training {time.perf_counter() - t_start:.0f} s" if args.train else "")
    )
    return 0
