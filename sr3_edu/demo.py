"""The quickstart: super-resolve the built-in validation photos and show what SR3 does that regression does not.

``python -m sr3_edu demo`` takes a center crop of each validation photo (never seen in training), makes its ×4
low-resolution version as training did, and runs bicubic, the regression baseline and SR3 (K samples). It prints
the table of `sr3_edu.evaluate` and writes two figures:

* ``figures/demo.png`` — columns LR | bicubic | regression | SR3 | HR, each photo with a zoomed detail below;
* ``figures/refinement.png`` — one chain of iterative refinement: y_t from pure noise to y_0 (top row) and the
  network's running estimate ŷ_0 = (y_t − √(1−γ_t) ε̂)/√γ_t (bottom row, paper eq. 6).

The crops keep the whole run to about two minutes on two CPU cores with the shipped tiny model. ``--train``
first retrains both models from scratch with the recipe stored in the shipped model files (`sr3_edu.train`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .checkpoint import CheckpointError, load_model, shipped_model_path
from .devices import resolve_device
from .evaluate import evaluate
from .flags import HelpFormatter, add_precision_argument
from .folders import load_images
from .inference import inference_options
from .report import format_table

__all__ = ["add_arguments", "run", "plot_comparison", "plot_refinement", "train_models"]

COLUMNS = (("lr", "LR (input)"), ("bicubic", "bicubic"), ("regression", "regression"), ("sr3", "SR3"), ("hr", "HR"))


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


# ----------------------------------------------------------------------------------------------- training


def _recipe(objective: str, steps: int | None):
    """The TrainConfig the shipped model was trained with (stored in its metadata), else the tiny preset."""
    from .train import TrainConfig

    config = None
    try:
        _, info = load_model(None, objective=objective)
        stored = info["meta"].get("config")
        if stored:
            config = TrainConfig.from_dict(stored)
    except CheckpointError:
        pass
    if config is None:
        config = TrainConfig.preset("tiny", objective=objective, lr=1e-5 if objective == "regression" else 1e-4)
    config.objective, config.data, config.command = objective, "builtin", "sr3-edu demo --train"
    if steps is not None:
        config.steps = steps
        config.warmup = min(config.warmup, steps)
    return config.validate()


def train_models(out_dir: str | Path, steps: int | None = None, device: str = "auto") -> dict[str, Path]:
    """Train SR3 and the regression baseline from scratch on the built-in photos; return the two model files.

    An interrupted run in ``out_dir`` is resumed rather than restarted.
    """
    from .export import export
    from .train import Trainer

    out_dir = Path(out_dir)
    files = {}
    for objective in ("sr3", "regression"):
        config = _recipe(objective, steps)
        config.device = device
        run_dir = out_dir / objective
        resume = (run_dir / "checkpoints" / "last.pt").is_file()
        print(
            f"training {objective}: {config.steps} steps of batch {config.batch_size} on {config.hr_size}² crops"
            + (" (resuming)" if resume else ""),
            file=sys.stderr,
        )
        with Trainer(config, run_dir, resume=resume) as trainer:
            trainer.train()
        target = out_dir / f"{objective}_{config.unet}_x{config.scale}.pt"
        files[objective] = export(trainer.ckpt_dir / "last.pt", target, overwrite=True)
        print(f"wrote {files[objective]}", file=sys.stderr)
    return files


# ------------------------------------------------------------------------------------------------- figures


def _show(ax, t: torch.Tensor, title: str | None = None) -> None:
    from .images import to_uint8

    ax.imshow(to_uint8(t), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def plot_comparison(result: dict[str, Any], path: str | Path, zoom: float = 1 / 3, dpi: int = 80) -> Path:
    """LR | bicubic | regression | SR3 | HR for every photo, a zoomed center detail under each row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    tensors = result["tensors"]
    scores = {rec["name"]: rec["methods"] for rec in result["images"]}
    cols = [(k, label) for k, label in COLUMNS if k in ("lr", "hr") or k in next(iter(tensors.values()))]
    rows = len(tensors) * 2
    fig, axes = plt.subplots(rows, len(cols), figsize=(1.9 * len(cols), 1.9 * rows), squeeze=False)
    for r, (name, t) in enumerate(tensors.items()):
        H, W = t["hr"].shape[-2:]
        zh, zw = max(8, int(H * zoom)), max(8, int(W * zoom))
        top, left = (H - zh) // 2, (W - zw) // 2
        for c, (key, label) in enumerate(cols):
            img = t[key][0] if key == "sr3" else t[key]  # the first of the K samples
            title = f"{name}\n{label}" if c == 0 else label
            if key in scores[name]:
                s = scores[name][key]
                title += f"\n{s['psnr']:.1f} dB, detail {s['detail_ratio']:.2f}"
            _show(axes[2 * r, c], img, title)
            # the same region in every column; the LR is `scale` times smaller
            f = img.shape[-1] / W
            axes[2 * r, c].add_patch(
                Rectangle((left * f - 0.5, top * f - 0.5), zw * f, zh * f, fill=False, edgecolor="yellow", lw=0.8)
            )
            crop = img[:, int(top * f) : int((top + zh) * f), int(left * f) : int((left + zw) * f)]
            _show(axes[2 * r + 1, c], crop)
    fig.suptitle("×{scale}: PSNR rewards the blurry mean; SR3 samples keep the detail".format(**result["config"]))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_refinement(
    steps: list[tuple[int, float, torch.Tensor, torch.Tensor | None]], path: str | Path, columns: int = 8, dpi: int = 80
) -> Path:
    """A strip of y_t (top) and ŷ_0 (bottom) along the reverse process, from y_T to y_0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(steps) > columns:
        # always the first (y_T) and the last (y_0), evenly in between
        idx = torch.linspace(0, len(steps) - 1, columns).round().long().unique().tolist()
        steps = [steps[i] for i in idx]
    fig, axes = plt.subplots(2, len(steps), figsize=(1.6 * len(steps), 3.9), squeeze=False)
    for c, (t, gamma, y_t, y0_hat) in enumerate(steps):
        # 1 − γ_t: the share of noise in y_t's variance (γ_t itself rounds to 1 near the end)
        _show(axes[0, c], y_t, f"y_{t}\n1−γ={1 - gamma:.2g}")
        _show(axes[1, c], y0_hat if y0_hat is not None else y_t)
        axes[1, c].set_xlabel(f"ŷ_0 from y_{t}" if y0_hat is not None else "y_0 (the output)", fontsize=8)
    fig.suptitle("Iterative refinement: y_t (top) and the network's estimate ŷ_0 (bottom)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------------ run


def _load(arg: str | None, objective: str, device):
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
    if reg_info is not None and reg_info["scale"] != info["scale"]:
        raise ValueError(f"the regression model is ×{reg_info['scale']} but the SR3 model is ×{info['scale']}")

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
    out = Path(args.out_dir)
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
