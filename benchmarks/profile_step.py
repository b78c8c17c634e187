"""Where the time of a training step goes on this machine: ``Trainer.train_step`` of bench_cpu configs under
``torch.profiler``, the self CPU time of its ops summed by kind.

It backs what the README says limits training speed on a CPU. The kinds are read off aten op names
(`KINDS`, first match wins); a row's milliseconds are per step, its share is of the profiled steps' summed self
time. With torch's intra-op threads an op's self time is the calling thread's wall time inside it, so the shares
are shares of the step's wall time, near enough. Profiles of one step vary by ±30 % in the convolutions' time between
runs on a shared 2-core machine: read the shares, not the third digit.

A second table looks inside the convolutions, where torch hands them to oneDNN (its CPU kernels): the same steps
run again with oneDNN's verbose log on, and the time it reports for each primitive is summed by what it did —
convolution forward, backward to the data, backward to the weights, and the reorders that change a tensor's memory
layout (torch's NCHW or NHWC to oneDNN's blocked formats and back) — with the kernels it chose listed below. With
``--layouts contiguous,channels_last`` both layouts are profiled, to see what each one pays for.

    python benchmarks/profile_step.py                    # ref64 and ref128, the default precision and layout: a minute
    python benchmarks/profile_step.py --layouts contiguous,channels_last      # both layouts: two minutes
    python benchmarks/profile_step.py --quick            # the micro config: checks the machinery, not the speed
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import re
import sys
import tempfile
import time
from collections import Counter

import common
from bench_cpu import CONFIGS, config_names, default_trainer

common.use_repo_package()

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from sr3_edu.devices import resolve_precision  # noqa: E402

KINDS: list[tuple[str, str]] = [
    ("convolution, backward", r"convolution_backward|mkldnn_convolution_backward|conv.*_backward"),
    ("convolution, forward", r"mkldnn_convolution$|^aten::_convolution$|^aten::convolution$|^aten::conv2d$"),
    ("attention and linear layers", r"attention|addmm|^aten::mm$|^aten::bmm$|^aten::linear$|matmul"),
    ("GroupNorm, forward and backward", r"group_norm"),
    ("SiLU, forward and backward", r"silu"),
    ("AdamW, gradient clipping, EMA", r"adam|_foreach|lerp|norm$|clip"),
    ("layout and dtype copies", r"^aten::copy_$|^aten::_to_copy$|^aten::clone$|contiguous"),
    ("other element-wise ops", r"^aten::(add|mul|sub|div|cat|where|neg|rsub|pow|sqrt|abs|sum|mean|fill|zero|ge)"),
]
"""(kind, regular expression searched in the aten op's name). Ops matching none count as "everything else"."""


def kind_of(name: str) -> str:
    for kind, pattern in KINDS:
        if re.search(pattern, name):
            return kind
    return "everything else"


LAYOUTS: dict[str, str | bool] = {"auto": "auto", "contiguous": False, "channels_last": True}
"""--layouts choices: the trainer's channels_last setting for each."""

ONEDNN_ROWS = [
    "convolution, forward",
    "convolution, backward to the data",
    "convolution, backward to the weights",
    "reorders (layout changes)",
    "matmul",
    "other primitives",
]


def onednn_row(kind: str, prop: str) -> str:
    """The `ONEDNN_ROWS` row of a oneDNN primitive of ``kind`` ("convolution", "reorder", …) and propagation kind.
    A deconvolution (the up blocks' transposed convolution, `sr3_edu.blocks.upsample_conv`) counts as a convolution."""
    if kind in ("convolution", "deconvolution"):
        if prop.startswith("forward"):
            return "convolution, forward"
        return "convolution, backward to the weights" if "weights" in prop else "convolution, backward to the data"
    return {"reorder": "reorders (layout changes)", "matmul": "matmul"}.get(kind, "other primitives")


def parse_onednn_log(lines, steps: int) -> tuple[dict[str, float], dict[str, Counter]]:
    """({row: ms per step}, {row: Counter of kernel names}) from oneDNN verbose lines, e.g.
    ``onednn_verbose,v1,primitive,exec,cpu,convolution,jit_bf16:avx512_core_bf16,forward_training,…,0.75``: the
    fields after "exec" are the engine, the primitive, its kernel and its propagation kind; the last is its ms."""
    ms: dict[str, float] = {}
    kernels: dict[str, Counter] = {}
    for line in lines:
        fields = line.strip().split(",")
        if not fields[0].endswith("_verbose") or "exec" not in fields:
            continue
        i = fields.index("exec")
        try:
            kind, kernel, prop, t = fields[i + 2], fields[i + 3], fields[i + 4], float(fields[-1])
        except (IndexError, ValueError):
            continue
        row = onednn_row(kind, prop)
        ms[row] = ms.get(row, 0.0) + t / steps
        kernels.setdefault(row, Counter())[kernel] += 1
    return ms, kernels


@contextlib.contextmanager
def onednn_verbose(path: str):
    """oneDNN's verbose log on, its lines (printed by C code to file descriptor 1) written to ``path``; a torch
    built without oneDNN writes nothing there."""
    if not torch.backends.mkldnn.is_available():
        open(path, "w").close()
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(path, "w") as log:
            os.dup2(log.fileno(), 1)
            try:
                with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                    yield
            finally:
                with contextlib.suppress(OSError, AttributeError, TypeError):  # no C library to flush: nothing buffered
                    ctypes.CDLL(None).fflush(None)  # C's buffered stdout into the log before the descriptor goes back
                os.dup2(saved, 1)
    finally:
        os.close(saved)


def profile_step(
    name: str, threads: int, steps: int, root: str, channels_last: str | bool = "auto"
) -> tuple[dict[str, float], float, str, tuple[dict[str, float], dict[str, Counter]]]:
    """({kind: ms per step}, the unprofiled step's median seconds, the layout, oneDNN's (ms, kernels) per row) for
    config ``name``."""
    trainer, batch = default_trainer(name, threads, root, channels_last=channels_last)
    for _ in range(2):
        trainer.train_step(batch)
    walls = []
    for _ in range(steps):
        t0 = time.perf_counter()
        trainer.train_step(batch)
        walls.append(time.perf_counter() - t0)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            trainer.train_step(batch)
    ms: dict[str, float] = {}
    for event in prof.key_averages():
        kind = kind_of(event.key)
        ms[kind] = ms.get(kind, 0.0) + event.self_cpu_time_total / 1e3 / steps
    layout = "channels_last" if trainer.memory_format == torch.channels_last else "contiguous"
    log = os.path.join(root, f"onednn-{name}-{layout}.log")
    with onednn_verbose(log):
        for _ in range(steps):
            trainer.train_step(batch)
    with open(log) as f:
        onednn = parse_onednn_log(f, steps)
    return ms, common.median(walls), layout, onednn


def share_column(ms: dict[str, float], rows: list[str], whole: float) -> list[str]:
    """A table column, flattened: (ms, share of ``whole``) for each of ``rows``, then for the sum of all of ``ms``."""
    values = [*(ms.get(r, 0.0) for r in rows), sum(ms.values())]
    return [cell for v in values for cell in (f"{v:.1f}", f"{100 * v / whole:.0f} %")]


def table_rows(names: list[str], columns: list[list[str]]) -> list[list[str]]:
    """Rows of a table whose first cell is ``names[i]``, then each column's (ms, share) pair for that row."""
    return [[n, *(col[2 * i + j] for col in columns for j in (0, 1))] for i, n in enumerate(names)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="ref64,ref128", help=f"training configs, from {', '.join(CONFIGS)}")
    p.add_argument(
        "--layouts",
        default="auto",
        help="memory layouts to profile each config in, from auto (the trainer's choice here), contiguous, "
        "channels_last",
    )
    p.add_argument("--steps", type=int, default=5, help="steps timed, then as many profiled, then as many logged")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--quick", action="store_true", help="the micro config, 2 steps")
    args = p.parse_args(argv)
    names = config_names(p, args.configs, args.quick)
    layouts = common.listed_names(p, args.layouts, LAYOUTS, "layout")
    if args.steps < 1:
        p.error("--steps must be at least 1")
    steps = 2 if args.quick else args.steps
    torch.set_num_threads(args.threads)
    precision = resolve_precision("auto", torch.device("cpu"))
    print(common.machine_line(f"{args.threads} thread(s)", f"precision {precision} (default)"))
    common.warn_if_busy(args.threads)
    kinds = [k for k, _ in KINDS] + ["everything else"]
    columns: list[list[str]] = []
    dnn_columns: list[list[str]] = []
    kernel_lines: list[str] = []
    head, dnn_head = ["kind of op"], ["oneDNN primitive"]
    print()
    with tempfile.TemporaryDirectory() as root:
        for name in names:
            for layout_arg in layouts:
                ms, wall, layout, (dnn_ms, kernels) = profile_step(name, args.threads, steps, root, LAYOUTS[layout_arg])
                label = name if layouts == ["auto"] else f"{name} {layout}"
                whole = sum(ms.values())
                cfg = CONFIGS[name]
                print(f"{label}: `Trainer.train_step`, batch {cfg.batch}, {layout}, {wall * 1e3:.0f} ms a step "
                      f"unprofiled (median of {steps}), then {steps} steps under torch.profiler, then {steps} with "
                      "oneDNN's verbose log")  # fmt: skip
                head += [f"{label} ms per step", f"{label} share"]
                columns.append(share_column(ms, kinds, whole))
                dnn_head += [f"{label} ms per step", f"{label} share of the step"]
                dnn_columns.append(share_column(dnn_ms, ONEDNN_ROWS, whole))
                for row in ONEDNN_ROWS:
                    if kernels.get(row):
                        used = ", ".join(f"{k} ×{n}" for k, n in kernels[row].most_common())
                        kernel_lines.append(f"- {label}, {row}: {used}")
    rows = table_rows([*kinds, "all ops"], columns)
    print()
    print(common.markdown_table(head, rows))
    print("\n(ms: self CPU time per step, summed by kind; share: of all ops' self time)")
    print()
    if not kernel_lines:
        print("oneDNN ran no primitives in these steps (torch took other kernels), so there is no table of them")
        return 0
    dnn_rows = table_rows([*ONEDNN_ROWS, "all oneDNN primitives"], dnn_columns)
    print(common.markdown_table(dnn_head, dnn_rows))
    print("\n(ms: the time oneDNN's verbose log gives each primitive, per step, summed by what it did; share: of the")
    print("step's self CPU time in the first table. The kernels it chose, with how many calls over the logged steps:)")
    print("\n".join(kernel_lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
