"""Helpers shared by the benchmark scripts: import path, machine load, FLOP counting, markdown tables."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def use_repo_package() -> None:
    """Make ``import sr3_edu`` find this checkout when the script runs as ``python benchmarks/x.py``."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> str:
    """The vector and matrix extensions that decide which kernels run (AVX2, AVX-512, its BF16, AMX)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                keep = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in have]
                return " ".join(keep) or "no AVX2/AVX-512/AMX"
    except OSError:
        pass
    return "unknown"


def _busy_seconds() -> float | None:
    """CPU seconds spent busy by the whole machine since boot (all cores), from /proc/stat; None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class OthersMeter:
    """How many cores *other* processes kept busy while we measured: machine busy time minus our own CPU time.

    The load average cannot tell us this once our own threads run (they count in it too), so the benchmark
    reports this figure beside every timing: 0.0 means the machine was ours, 1.0 means one core went elsewhere.
    """

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.busy = _busy_seconds()
        self.own = time.process_time()

    def cores(self) -> float | None:
        busy = _busy_seconds()
        if busy is None or self.busy is None:
            return None
        wall = time.perf_counter() - self.wall
        own = time.process_time() - self.own
        return max(0.0, (busy - self.busy - own) / max(wall, 1e-9))


def busy_warning(threads: int) -> str | None:
    """A warning when the 1-minute load average leaves fewer idle cores than the benchmark's threads."""
    cores = os.cpu_count() or 1
    load1 = os.getloadavg()[0]
    if load1 + threads > cores + 0.5:
        return (
            f"the machine is busy: 1-min load average {load1:.2f} on {cores} cores leaves less than the "
            f"{threads} thread(s) this benchmark uses; timings will be slow and noisy (medians help, a quiet "
            f"machine helps more)"
        )
    return None


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def forward_flops(model, *inputs) -> int:
    """FLOPs of one forward pass counted by torch.utils.flop_counter.FlopCounterMode (multiply-add = 2)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(*inputs)
    return int(counter.get_total_flops())


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def fmt(value: float | None, digits: int = 3) -> str:
    """A number with ``digits`` significant digits, or "–" when there is none."""
    if value is None:
        return "–"
    if value == 0:
        return "0"
    return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"
