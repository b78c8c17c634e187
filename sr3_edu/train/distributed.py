"""Several processes under torchrun: DistributedDataParallel without a framework.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``. Each process trains on its own slice of every batch
(`sr3_edu.train.stream.BatchStream`), DDP averages the gradients, and rank 0 alone logs, samples and saves. With
``WORLD_SIZE`` unset (or 1) every function here does nothing, or the single-process thing.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .state import params_digest, write_text_atomic

__all__ = ["process_ranks", "start", "wrap", "no_sync", "mean_over_ranks", "check_replicas", "stop"]


def process_ranks() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun set them; (0, 1, 0) in a plain process."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


def start(device: torch.device, world: int) -> bool:
    """Join the process group (NCCL between GPUs, gloo between CPU processes); return whether there is one."""
    if world <= 1:
        return False
    import torch.distributed as dist

    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` in DistributedDataParallel, which averages its gradients across the processes in backward."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def no_sync(model: torch.nn.Module, skip: bool):
    """A context without DDP's gradient averaging when ``skip`` (every micro-batch but a step's last one)."""
    if skip and isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()


def mean_over_ranks(value: Tensor) -> float:
    """The mean of a 0-d tensor over the processes (this process's value when there is no process group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value.item()


def check_replicas(models: dict[str, torch.nn.Module], rank: int, world: int, out: Path) -> None:
    """Every process must hold the same weights: compare their digests; rank 0 writes them to ddp_replicas.json."""
    import torch.distributed as dist

    digests: list[Any] = [None] * world
    dist.all_gather_object(digests, {"rank": rank, **{name: params_digest(m) for name, m in models.items()}})
    if rank == 0:
        write_text_atomic(out / "ddp_replicas.json", json.dumps(digests, indent=2) + "\n")
    if len({tuple(d[name] for name in models) for d in digests}) != 1:
        raise RuntimeError(f"the {world} processes ended with different weights: {digests}")


def stop() -> None:
    """Wait for every process, then shut the process group down (no-op if it is not up)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
