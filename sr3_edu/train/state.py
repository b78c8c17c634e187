"""A run's state on disk: the checkpoint dict (weights, EMA, Adam, warm-up, every RNG), its checks on resume, and
the hygiene of the run folder (refuse to overwrite a run, drop metrics written after the last save).

The checkpoint is a plain dict that describes itself (see `sr3_edu.checkpoint`); every value survives
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import FORMAT, VERSION, CheckpointError, load_checkpoint
from ..files import write_atomic
from ..unet import UNetConfig
from .config import TrainConfig

__all__ = [
    "RunExistsError",
    "CheckpointSource",
    "rng_state",
    "set_rng_state",
    "params_digest",
    "make_checkpoint",
    "restore_optimizer",
    "warn_if_data_changed",
    "load_resume_checkpoint",
    "refuse_existing_run",
    "check_compatible",
    "prepare_run_folder",
    "truncate_metrics",
    "write_text_atomic",
]


# What a resume goes on from: a checkpoint dict already read, the path of a checkpoint file, or None for the run's own.
CheckpointSource = dict[str, Any] | str | os.PathLike | None


class RunExistsError(ValueError):
    """The output folder already holds a run, and it was not asked to be resumed."""


# ---------------------------------------------------------------------------------------------------- random state
def rng_state() -> dict[str, Any]:
    """Every global RNG state, as tensors and plain values (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    state = {
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy": {
            "kind": np_state[0],
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """The inverse of `rng_state` (CUDA states only onto as many GPUs as they came from)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def params_digest(model: torch.nn.Module) -> str:
    """sha256 of every tensor of ``model.state_dict()`` with its name: equal digests, identical weights."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------- the checkpoint
def make_checkpoint(
    config: TrainConfig,
    *,
    raw: torch.nn.Module,
    ema: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    lr_schedule: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    samples_seen: int,
    train_seconds: float,
    data: dict[str, Any],
    segments: list[dict[str, Any]],
    world: int,
) -> dict[str, Any]:
    """The training checkpoint as a plain dict: all a resume needs, and how the run came to be."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "kind": "train",
        "objective": config.objective,
        "scale": config.scale,
        "unet": raw.config.to_dict(),
        "model": {k: v.detach().cpu().clone() for k, v in raw.state_dict().items()},
        "ema": {k: v.detach().cpu().clone() for k, v in ema.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": lr_schedule.state_dict(),  # the key predates the name lr_schedule; files keep it
        "step": step,
        "samples_seen": samples_seen,
        "train_seconds": train_seconds,
        "config": asdict(config),
        "data": data,
        "rng": rng_state(),
        "meta": {"segments": copy.deepcopy(segments), "world_size": world},
    }


def restore_optimizer(
    optimizer: torch.optim.Optimizer,
    lr_schedule: torch.optim.lr_scheduler.LambdaLR,
    ckpt: dict[str, Any],
    config: TrainConfig,
    lr_factor: Callable[[int], float],
) -> None:
    """Load Adam's moments and the warm-up's position from ``ckpt``, keeping this run's lr and weight decay."""
    # The saved groups would also bring back how the optimizer ran (fused or not), which is this machine's choice.
    fresh = [
        {k: g[k] for k in ("fused", "foreach", "capturable", "differentiable") if k in g}
        for g in optimizer.param_groups
    ]
    optimizer.load_state_dict(ckpt["optimizer"])
    lr_schedule.load_state_dict(ckpt["scheduler"])
    # This run's options win over the saved ones (a different --lr or --warmup takes effect from here).
    lr_schedule.base_lrs = [config.lr for _ in optimizer.param_groups]
    for g, keep in zip(optimizer.param_groups, fresh):
        g.update(keep)
        g["initial_lr"] = config.lr
        g["lr"] = config.lr * lr_factor(lr_schedule.last_epoch)
        g["weight_decay"] = config.weight_decay
    lr_schedule._last_lr = [g["lr"] for g in optimizer.param_groups]


def warn_if_data_changed(ckpt: dict[str, Any], dataset_len: int, stacklevel: int) -> None:
    """A data set of another size breaks the stream's positions: the run goes on, in another order (say so)."""
    n_then = ckpt.get("data", {}).get("dataset_len")
    if n_then is not None and n_then != dataset_len:
        warnings.warn(
            f"the data set has {dataset_len} items per epoch but had {n_then} when the checkpoint was "
            f"saved: training goes on, in a different data order than an uninterrupted run",
            stacklevel=stacklevel + 1,
        )


# ------------------------------------------------------------------------------------------------ checks on resume
def load_resume_checkpoint(out: str | os.PathLike, checkpoint: CheckpointSource = None) -> tuple[dict[str, Any], Path]:
    """The training checkpoint a resume of the run in ``out`` goes on from, and the file it names in messages.

    ``checkpoint``: None reads ``out/checkpoints/last.pt``; a path reads that file; a dict is taken as already read
    from ``out/checkpoints/last.pt``.
    """
    last = Path(out) / "checkpoints" / "last.pt"
    if isinstance(checkpoint, dict):
        return checkpoint, last
    if checkpoint is None and not last.is_file():
        raise CheckpointError(
            f"nothing to resume in {out}: {last} does not exist; leave out --resume to start a new run there"
        )
    path = last if checkpoint is None else Path(checkpoint)
    return load_checkpoint(path, kind="train", map_location="cpu"), path


def check_compatible(ckpt: dict[str, Any], config: TrainConfig, unet_config: UNetConfig, path: Path) -> None:
    """Refuse to resume ``ckpt`` (read from ``path``) with another U-Net, objective or scale."""
    diff = _unet_mismatch(ckpt["unet"], unet_config.to_dict())
    if diff:
        saved = ckpt.get("config", {})
        raise CheckpointError(
            f"{path} holds a U-Net (preset {saved.get('unet', '?')!r}, "
            f"overrides {saved.get('unet_overrides', {})}) "
            f"that differs from the requested one (preset {config.unet!r}, overrides "
            f"{config.unet_overrides}) in {'; '.join(diff)} (checkpoint vs requested); resume with the "
            f"run's own settings, or start a new run with another --out"
        )
    for name, have, want in (
        ("objective", ckpt.get("objective"), config.objective),
        ("scale", ckpt.get("scale"), config.scale),
    ):
        if have != want:
            raise CheckpointError(
                f"{path} was trained with {name} {have!r} but this run asks for {want!r}; "
                f"resume with {name} {have!r}, or start a new run with another --out"
            )


def _unet_mismatch(have: dict, want: dict) -> list[str]:
    # a field missing from an older file has its default (e.g. parametrisation "eps")
    defaults = UNetConfig().to_dict()

    def norm(d: dict, k: str):
        v = d.get(k, defaults.get(k))
        return list(v) if isinstance(v, (list, tuple)) else v

    return [
        f"{k}: {norm(have, k)} vs {norm(want, k)}"
        for k in sorted(set(have) | set(want))
        if norm(have, k) != norm(want, k)
    ]


# ----------------------------------------------------------------------------------------------- the run folder
def refuse_existing_run(out: str | os.PathLike) -> None:
    """Raise `RunExistsError` if ``out`` already holds a run (a checkpoint, metrics or a config)."""
    out = Path(out)
    ckpt_dir = out / "checkpoints"
    found = sorted(ckpt_dir.glob("*.pt")) if ckpt_dir.is_dir() else []
    found += [p for p in (out / "metrics.jsonl", out / "config.json") if p.is_file()]
    if found:
        raise RunExistsError(
            f"{out} already holds a training run ({found[0]} exists); use --resume (resume=True) to go on "
            f"with it, or another --out (out_dir) to start a new one. Nothing was changed"
        )


def prepare_run_folder(out: Path, config: TrainConfig, step: int) -> None:
    """Create ``samples/`` and ``checkpoints/``, write ``config.json``, and cut ``metrics.jsonl`` back to ``step``."""
    ckpt_dir = out / "checkpoints"
    (out / "samples").mkdir(parents=True, exist_ok=True)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    for stale in ckpt_dir.glob("*.pt.tmp*"):  # left by a kill during a save; the .pt files are whole
        stale.unlink()
    write_text_atomic(out / "config.json", json.dumps(asdict(config), indent=2) + "\n")
    truncate_metrics(out / "metrics.jsonl", step)


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics.jsonl lines after ``step`` (written after the last save), so no step appears twice."""
    if not path.is_file():
        path.touch()
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line + "\n")
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut short by a kill
    write_text_atomic(path, "".join(kept))


def write_text_atomic(path: Path, text: str) -> None:
    """``text`` as UTF-8, through `sr3_edu.files.write_atomic` (a kill leaves the old file or the new one)."""
    write_atomic(path, lambda f: f.write(text.encode()))
