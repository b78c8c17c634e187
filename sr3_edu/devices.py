"""Where and how to run: one resolver of the ``--device`` flag for every command (train, upscale, evaluate, search,
demo), of ``--precision``, the arithmetic the machine is fastest at, and of how the process's C allocator treats
the memory torch frees between steps."""

from __future__ import annotations

import ctypes
import functools
import os
import platform

import torch

__all__ = [
    "resolve_device",
    "PRECISIONS",
    "cpu_features",
    "native_bf16",
    "resolve_precision",
    "channels_last_training",
    "reuse_freed_memory",
]


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


# ------------------------------------------------------------------------------------------------ precision

PRECISIONS = ("auto", "fp32", "bf16")
"""``--precision``: "auto" picks bf16 where the hardware computes it natively (see `native_bf16`), else fp32."""

# The extensions that decide which kernels oneDNN picks on a CPU: fp32 speed follows AVX2 → AVX-512, and bf16 is only
# fast with AVX512_BF16 or AMX (without them it is emulated, and usually slower than fp32).
CPU_FEATURES = {"AVX2": ("avx2",), "AVX-512": ("avx512f",), "AVX512_BF16": ("avx512_bf16",), "AMX-BF16": ("amx_bf16",)}


@functools.cache
def cpu_features() -> dict[str, bool] | None:
    """Which of `CPU_FEATURES` this CPU has, from /proc/cpuinfo (read once); None where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return {name: all(flag in have for flag in flags) for name, flags in CPU_FEATURES.items()}
    except OSError:
        pass
    return None


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 natively: a CUDA GPU that supports it, or a CPU with AVX512_BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        features = cpu_features() or {}
        return features.get("AVX512_BF16", False) or features.get("AMX-BF16", False)
    return False


def resolve_precision(name: str, device: torch.device) -> str:
    """``"auto"`` → "bf16" where `native_bf16`, else "fp32"; "fp32" and "bf16" as given (bf16 without native support
    runs, emulated and slow). Raises ValueError for any other name."""
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return name


def channels_last_training(device: torch.device, precision: str = "auto") -> bool:
    """Whether a training step runs faster in channels_last (NHWC) memory than contiguous on ``device``: on a CUDA
    GPU (cuDNN's tensor-core kernels want NHWC) and on a CPU with AMX; not on other CPUs, where the two layouts trained
    at 0.98–1.06× of each other on an AVX512_BF16 CPU (the fused AdamW kernel copies channels_last weights), and
    never with ``precision="fp32"``, which is plain fp32 in the default layout. The trainer's ``channels_last="auto"``
    follows this; sampling, forward only, keeps channels_last on every CPU (`sr3_edu.pipeline.FastNetwork`).
    `benchmarks/bench_layout.py` times both layouts on the machine at hand."""
    if precision == "fp32":
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and (cpu_features() or {}).get("AMX-BF16", False)


# ------------------------------------------------------------------------------------------------ memory

MALLOC_ENV = "SR3_EDU_MALLOC"
"""Set to ``system`` to leave the C allocator as it is (see `reuse_freed_memory`)."""

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers in glibc's malloc.h
MMAP_THRESHOLD = 32 << 20
"""Blocks up to this size come from malloc's heap, not from a fresh mmap each time: glibc's ceiling on 64 bits."""
TRIM_THRESHOLD = 2**31 - 1
"""Free memory at the top of the heap that malloc keeps rather than returning to the system (mallopt takes an int)."""


@functools.cache
def reuse_freed_memory() -> bool:
    """Make glibc's malloc keep the memory torch frees, for the next step to reuse, instead of returning it to the
    system; once per process, for the whole process. Returns whether the setting was made.

    A training step or a refinement step frees its activations at the end and allocates the same sizes again at
    the start of the next one. glibc's defaults give freed memory at the top of its heap back to the system
    (``M_TRIM_THRESHOLD``) and serve large blocks with fresh ``mmap`` calls, so the next step faults every 4 KiB page
    of them in again: on a 2-core CPU, tens of thousands of page faults per step of the 16→128 configuration and up
    to a quarter of its CPU time in the kernel (`benchmarks/bench_step_costs.py` measures it on the machine at hand).
    With ``M_MMAP_THRESHOLD`` at 32 MiB and ``M_TRIM_THRESHOLD`` at 2 GiB the heap keeps those pages. The cost: after
    a peak, the process's resident memory stays near the peak (the memory is reused, not returned).

    Off glibc (macOS, Windows, musl) this does nothing and returns False; likewise with ``SR3_EDU_MALLOC=system``.
    The trainer and the sampler's `sr3_edu.pipeline.FastNetwork` call it when they run on the CPU.
    """
    if os.environ.get(MALLOC_ENV, "").strip().lower() == "system":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # the mmap threshold first: setting either turns glibc's own sliding thresholds off
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
