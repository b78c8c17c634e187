"""Helpers shared by the benchmark scripts: import path, machine and load, FLOP counting, the trainer's step, the
reference implementation's location, markdown tables."""

from __future__ import annotations

import importlib.util
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]

REFERENCE_REPO = "Janspiry/Image-Super-Resolution-via-Iterative-Refinement"
REFERENCE_ENV = "JANSPIRY_DIR"
DEFAULT_REFERENCE_DIR = REPO.parent / "shared" / "reference" / "janspiry"
"""The developers' copy of the reference's two files and its adapter, beside the checkout; CI has none."""
REFERENCE_FILES = ("model/sr3_modules/unet.py", "model/sr3_modules/diffusion.py")
ADAPTER_FILE = "adapter.py"


def use_repo_package() -> None:
    """Make ``import sr3_edu`` find this checkout when the script runs as ``python benchmarks/x.py``."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


# ---------------------------------------------------------------------------------------------- the machine
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_features() -> dict[str, bool] | None:
    """`sr3_edu.devices.cpu_features`: which of AVX2, AVX-512, AVX512_BF16 and AMX-BF16 this CPU has."""
    use_repo_package()
    from sr3_edu.devices import cpu_features as features

    return features()


def cpu_flags() -> str:
    """`cpu_features` as one line, absent ones named too: "AVX2 yes, AVX-512 no, AVX512_BF16 no, AMX-BF16 no"."""
    features = cpu_features()
    if features is None:
        return "CPU flags unknown"
    return ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in features.items())


def machine_line(*more: str) -> str:
    """The line a benchmark prints above its tables: "CPU: <model>; <`cpu_flags`>; <n> cores; torch <version>",
    then ``more`` (threads, precision, …), "; "-joined. Figures move with the CPU, so each table names its own."""
    import torch

    return "; ".join(
        [f"CPU: {cpu_name()}", cpu_flags(), f"{os.cpu_count()} cores", f"torch {torch.__version__}", *more]
    )


def warn_if_busy(threads: int) -> str | None:
    """`busy_warning`, printed to stderr when there is one; returns it (or None) for a JSON record."""
    warning = busy_warning(threads)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return warning


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


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


def others_line(cores: float | None) -> str | None:
    """The line a benchmark prints under its tables: how many cores others kept busy (`OthersMeter.cores`)."""
    return None if cores is None else f"other processes kept {cores:.2f} cores busy on average while this ran"


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


# ---------------------------------------------------------------------------------------------- timing
Timings = dict[str, tuple[list[float], list[float]]]
"""Per name: (wall seconds, this process's CPU seconds) of each timed call."""


def alternate(fns: Mapping[str, Callable[[], Any]], warmup: int, repeats: int) -> Timings:
    """Time several implementations of one step in turns: a, b, a, b, … (after ``warmup`` untimed turns).

    Turns rather than one implementation's repeats after the other's, so that a change of load on a shared machine
    (another job starting, a core taken away) falls on both and leaves their ratio alone.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    out: Timings = {name: ([], []) for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            out[name][0].append(time.perf_counter() - t0)
            out[name][1].append(time.process_time() - c0)
    return out


def cpu_share(wall: list[float], cpu: list[float], threads: int) -> float:
    """The fraction of the ``threads`` cores asked for that this process actually got while timed."""
    return sum(cpu) / (sum(wall) * threads)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def forward_flops(model, *inputs) -> int:
    """FLOPs of one forward pass counted by torch.utils.flop_counter.FlopCounterMode (multiply-add = 2)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(*inputs)
    return int(counter.get_total_flops())


MATMUL_SIDE = 2048
"""The largest side of the square matrices `matmul_gflop_per_s` multiplies: large enough for the BLAS to reach its
rate."""


def matmul_gflop_per_s(dtype: str = "fp32", repeats: int = 5, enough_s: float = 0.1) -> tuple[float, int]:
    """This CPU's matrix-multiply rate in ``dtype`` ("fp32" or "bf16"), GFLOP/s, at torch's current thread count, and
    the side it was measured at: the median of ``repeats`` products of two side × side matrices (2·side³ FLOPs
    each). The side doubles from 256 until one product takes ``enough_s`` or the side reaches `MATMUL_SIDE`, so bf16
    emulated on a CPU without native bf16 (under 1 GFLOP/s) is measured in seconds, not minutes. Convolutions are
    matrix products underneath, so this is about the fastest a U-Net's FLOPs could run here."""
    import torch

    kind = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    g = torch.Generator().manual_seed(0)

    def product_seconds(a, b) -> float:
        t0 = time.perf_counter()
        a @ b
        return time.perf_counter() - t0

    side = 128
    while True:
        side *= 2
        a, b = (torch.randn(side, side, generator=g).to(kind) for _ in range(2))
        a @ b  # untimed: the first call of a size sets up the kernel
        if side >= MATMUL_SIDE or product_seconds(a, b) >= enough_s:
            break
    return 2 * side**3 / median([product_seconds(a, b) for _ in range(repeats)]) / 1e9, side


# ---------------------------------------------------------------------------------------------- our trainer
def make_trainer(config, x_lr, y0, root: str | os.PathLike):
    """A `sr3_edu.train.Trainer` for ``config`` on the in-memory pairs (x_lr, y0), its run folder new under ``root``.

    The benchmarks time its `Trainer.train_step`, the step that trains (clipping, warm-up, EMA included), rather
    than a step rebuilt beside it that could drift from it. The trainer writes config.json and empty folders into its
    run folder when it starts; ``root`` should be a temporary directory the caller removes.
    """
    use_repo_package()
    import torch

    from sr3_edu.train import Trainer

    # one folder per trainer: a Trainer refuses a folder that already holds a run
    out_dir = tempfile.mkdtemp(prefix="trainer-", dir=root)
    dataset = torch.utils.data.TensorDataset(x_lr.detach().cpu(), y0.detach().cpu())
    return Trainer(config, out_dir, dataset=dataset)


# ---------------------------------------------------------------------------------------------- the reference
class ReferenceDirError(ValueError):
    """The reference folder named (by option, environment or default) cannot be used; the message says why."""


@dataclass(frozen=True)
class Reference:
    """Where the reference implementation's files are, and how that folder was chosen."""

    dir: Path
    adapter: Path
    source: str
    """"--reference-dir", "$JANSPIRY_DIR" or "the default folder"."""

    def commit(self) -> str | None:
        """The reference's commit: its COMMIT file (the developers' copy), else the clone's git HEAD."""
        stamp = self.dir / "COMMIT"
        if stamp.is_file():
            return stamp.read_text().split()[0] or None
        head = self.dir / ".git" / "HEAD"
        try:
            text = head.read_text().strip()
            if text.startswith("ref: "):
                return (self.dir / ".git" / text[5:]).read_text().strip() or None
            return text or None
        except OSError:
            return None


def resolve_reference(
    given: str | os.PathLike | None,
    adapter: str | os.PathLike | None = None,
    *,
    env: Mapping[str, str] | None = None,
    default: Path = DEFAULT_REFERENCE_DIR,
) -> tuple[Reference | None, str]:
    """The reference to compare with, and a sentence saying where it came from or why there is none.

    ``given`` (the option) wins, then ``$JANSPIRY_DIR``, then ``default`` if that folder exists. A folder that was
    asked for but cannot be used raises `ReferenceDirError` naming it, rather than quietly measuring one side only.
    The adapter (the developers' driver of the reference, not part of the reference's repository) is ``adapter``,
    else ``adapter.py`` in the folder, else the one in ``default``.
    """
    env = os.environ if env is None else env
    if given is not None:
        folder, source = Path(given), "--reference-dir"
    elif env.get(REFERENCE_ENV):
        folder, source = Path(env[REFERENCE_ENV]), f"${REFERENCE_ENV}"
    elif default.is_dir():
        folder, source = default, "the default folder"
    else:
        return None, (
            f"no reference folder: no --reference-dir, no ${REFERENCE_ENV}, and no {default}; pass "
            f"--reference-dir DIR (a clone of {REFERENCE_REPO})"
        )
    folder = folder.expanduser().resolve()
    what = f"{source} {folder}"
    if not folder.is_dir():
        raise ReferenceDirError(f"{what}: no such folder; expected a clone of {REFERENCE_REPO}")
    missing = [f for f in REFERENCE_FILES if not (folder / f).is_file()]
    if missing:
        raise ReferenceDirError(
            f"{what} does not hold {' and '.join(missing)}: expected a clone of {REFERENCE_REPO}, whose U-Net and "
            "GaussianDiffusion are read from those files"
        )
    if adapter is not None:
        adapter_path = Path(adapter).expanduser().resolve()
        if not adapter_path.is_file():
            raise ReferenceDirError(f"--reference-adapter {adapter_path}: no such file")
    else:
        candidates = [folder / ADAPTER_FILE, default / ADAPTER_FILE]
        found = [c for c in candidates if c.is_file()]
        if not found:
            raise ReferenceDirError(
                f"no {ADAPTER_FILE} to drive the reference in {folder} or {default}; pass --reference-adapter FILE "
                f"(the developers' adapter.py, which defines JanspiryAdapter)"
            )
        adapter_path = found[0].resolve()
    return Reference(folder, adapter_path, source), f"{what} (adapter {adapter_path})"


def load_adapter(reference: Reference) -> ModuleType:
    """Import the adapter module from the reference folder (never copied into this tree)."""
    spec = importlib.util.spec_from_file_location("janspiry_adapter", reference.adapter)
    if spec is None or spec.loader is None:
        raise ReferenceDirError(f"cannot import {reference.adapter}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def listed_names(p, text: str, choices, noun: str) -> list[str]:
    """The names in ``text`` (comma-separated), each one of ``choices``; none or an unknown one is a usage error of
    the parser ``p`` (exit 2) that names the ``noun`` and the choices."""
    names = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in names if c not in choices]
    if unknown or not names:
        what = f"unknown {noun} {unknown[0]!r}" if unknown else f"no {noun} given"
        p.error(f"{what}; choose from {', '.join(choices)}")
    return names


# ---------------------------------------------------------------------------------------------- output
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
