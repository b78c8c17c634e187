"""Where to run: one resolver of the ``--device`` flag for every command (train, upscale, evaluate, search, demo)."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``"auto"``: the GPU of this process (CUDA, index ``local_rank`` under torchrun), else Apple's MPS, else the CPU.
    Any other name (``cpu``, ``cuda``, ``cuda:1``, ``mps``) is checked against what this torch can see; a bare
    ``cuda`` means this process's GPU. Raises ValueError with the fix when the device is unknown or absent."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"unknown device {name!r} (use cpu, cuda, cuda:1, mps or auto)") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {name!r} was asked for, but this torch ({torch.__version__}) sees no CUDA GPU; "
                "use --device cpu or auto"
            )
        if device.index is None:
            device = torch.device("cuda", local_rank)
    if device.type == "mps" and not _mps_available():
        raise ValueError("device 'mps' was asked for, but MPS is not available here; use --device cpu or auto")
    return device
