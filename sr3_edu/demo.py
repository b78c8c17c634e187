"""The quickstart's two models, trained from scratch: `train_models` retrains SR3 and the regression baseline with the
recipe stored in the shipped model files (``sr3-edu demo --train``, `sr3_edu.commands.demo`)."""

from __future__ import annotations

import sys
from pathlib import Path

from .checkpoint import CheckpointError, load_model

__all__ = ["train_models"]


def _recipe(objective: str, steps: int | None):
    """The TrainConfig the shipped model was trained with (stored in its metadata), else the tiny preset."""
    from .train import TrainConfig

    config = None
    try:
        _, info = load_model(None, objective=objective)
        stored = info.meta.get("config")
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


# ------------------------------------------------------------------------------------------------------ run
