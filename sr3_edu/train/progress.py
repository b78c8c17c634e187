"""What a run shows of itself as it goes: the progress bar, ``metrics.jsonl`` and the sample grids."""

from __future__ import annotations

import json
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import diffusion
from ..files import write_atomic
from ..images import to_image, upscale_bicubic
from ..regression import regress
from ..schedule import NoiseSchedule
from .config import TrainConfig
from .seeds import VAL, mix_seeds

__all__ = ["progress_bar", "append_metrics", "save_sample_grid"]


def progress_bar(total: int, initial: int, disable: bool):
    """A tqdm bar over the steps of the run, starting at ``initial`` (a resume)."""
    from tqdm.auto import tqdm

    # When stderr is a file (a background run), a few updates a minute are plenty.
    mininterval = 0.1 if sys.stderr.isatty() else 30.0
    return tqdm(total=total, initial=initial, disable=disable, unit="step", dynamic_ncols=True, mininterval=mininterval)


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    """One JSON object a line; json writes repr(float), so every bit of a loss survives."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


@torch.no_grad()
def save_sample_grid(
    path: Path,
    model: nn.Module,
    val_batch: tuple[Tensor, Tensor],
    config: TrainConfig,
    schedule: NoiseSchedule,
    device: torch.device,
    autocast: AbstractContextManager,
) -> Path:
    """Super-resolve ``val_batch`` = (x_lr, y0) with ``model`` under ``autocast``; save rows bicubic | sample | HR.

    SR3 samples with Algorithm 2 on the training ``schedule`` respaced to ``config.sample_steps``, from a generator
    seeded by the run's seed alone, so every grid of a run starts from the same y_T; the regression baseline is one
    forward pass."""
    x_lr, y0 = val_batch  # (n, 3, h, w), (n, 3, H, W)
    with autocast:
        if config.objective == "regression":
            y = regress(model, x_lr.to(device), scale=config.scale)
        else:
            g = torch.Generator().manual_seed(mix_seeds(config.seed, VAL))
            # ŷ_0 clipped: a young model's unclipped chain from pure noise can leave the image range entirely
            y = diffusion.sample(
                model, x_lr, schedule.respace(config.sample_steps), scale=config.scale, generator=g, clip_y0=True
            )
    rows = [upscale_bicubic(x_lr, config.scale), y.float().cpu(), y0]
    grid = torch.cat([torch.cat(list(r), dim=-1) for r in rows], dim=-2)  # (3, 3·H, n·W)
    return write_atomic(path, lambda f: to_image(grid).save(f, format="PNG"))
