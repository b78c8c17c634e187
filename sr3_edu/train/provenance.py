"""What a checkpoint records about how it was made: the hardware, the data, and one segment per launch of the run
(its command, steps, seconds). `sr3_edu.export` copies this into a model file's metadata."""

from __future__ import annotations

import contextlib
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from .config import TrainConfig

__all__ = ["hardware", "new_segment", "describe_data", "format_duration"]


def hardware(device: torch.device | None = None) -> dict[str, Any]:
    """What the run is on: accelerator or CPU model, torch version, CPU threads."""
    info: dict[str, Any] = {
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    if device is not None and device.type == "cuda":
        info["device"] = torch.cuda.get_device_name(device)
    elif device is not None and device.type == "mps":
        info["device"] = "Apple MPS"
    else:
        info["device"] = _cpu_model()
    return info


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} logical CPUs)"
    return (platform.processor() or platform.machine() or "unknown CPU") + f" ({os.cpu_count()} logical CPUs)"


def new_segment(command: str, step: int, world: int, device: torch.device) -> dict[str, Any]:
    """The record of a launch that starts at ``step``; the trainer updates ``to_step`` and ``seconds`` as it goes."""
    return {
        "command": command,
        "from_step": step,
        "to_step": step,
        "seconds": 0.0,
        "world_size": world,
        "hardware": hardware(device),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def describe_data(config: TrainConfig, dataset, user_supplied: bool) -> dict[str, Any]:
    """Where the training images came from, for the checkpoint and the exported model's metadata."""
    if user_supplied:
        return {"source": f"a {type(dataset).__name__} passed to Trainer", "split": "as given"}
    info: dict[str, Any] = {"source": config.data, "split": "train" if config.data == "builtin" else "whole folder"}
    names = getattr(dataset, "names", None)
    if names is not None:
        info["images"] = [Path(n).name for n in names]
    return info


def format_duration(seconds: float) -> str:
    """Seconds as "1h 02m 03s" (or "2m 03s"), as model files and the end-of-run line state a training time."""
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"
