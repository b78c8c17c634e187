"""Where the time of a training step goes on this machine: ``Trainer.train_step`` of bench_cpu configs under
``torch.profiler``, the self CPU time of its ops summed by kind.

It backs what the README says limits training speed on a CPU. The kinds are read off aten op names
(`KINDS`, first match wins); a row's milliseconds are per step, its share is of the profiled steps' summed self
time. With torch's intra-op threads an op's self time is the calling thread's wall time inside it, so the shares
are shares of the step's wall time, near enough. Profiles of one step vary by ±30 % in the convolutions' time between
runs on a shared 2-core machine: read the shares, not the third digit.

    python benchmarks/profile_step.py                    # ref64 and ref128, the default precision and layout: a minute
    python benchmarks/profile_step.py --quick            # the micro config: checks the machinery, not the speed
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time

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


def profile_step(name: str, threads: int, steps: int, root: str) -> tuple[dict[str, float], float, str]:
    """({kind: ms per step}, the unprofiled step's median seconds, the layout) for config ``name``."""
    trainer, batch = default_trainer(name, threads, root)
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
    return ms, common.median(walls), layout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="ref64,ref128", help=f"training configs, from {', '.join(CONFIGS)}")
    p.add_argument("--steps", type=int, default=5, help="steps timed, then as many profiled")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--quick", action="store_true", help="the micro config, 2 steps")
    args = p.parse_args(argv)
    names = config_names(p, args.configs, args.quick)
    if args.steps < 1:
        p.error("--steps must be at least 1")
    steps = 2 if args.quick else args.steps
    torch.set_num_threads(args.threads)
    precision = resolve_precision("auto", torch.device("cpu"))
    print(common.machine_line(f"{args.threads} thread(s)", f"precision {precision} (default)"))
    common.warn_if_busy(args.threads)
    kinds = [k for k, _ in KINDS] + ["everything else"]
    columns: list[list[str]] = []
    head = ["kind of op"]
    print()
    with tempfile.TemporaryDirectory() as root:
        for name in names:
            ms, wall, layout = profile_step(name, args.threads, steps, root)
            whole = sum(ms.values())
            cfg = CONFIGS[name]
            print(f"{name}: `Trainer.train_step`, batch {cfg.batch}, {layout}, {wall * 1e3:.0f} ms a step unprofiled "
                  f"(median of {steps}), then {steps} steps under torch.profiler")  # fmt: skip
            head += [f"{name} ms per step", f"{name} share"]
            cells = [(f"{ms.get(k, 0.0):.1f}", f"{100 * ms.get(k, 0.0) / whole:.0f} %") for k in kinds]
            columns.append([c for pair in [*cells, (f"{whole:.1f}", "100 %")] for c in pair])
    rows = [[kind, *(col[2 * i + j] for col in columns for j in (0, 1))] for i, kind in enumerate([*kinds, "all ops"])]
    print()
    print(common.markdown_table(head, rows))
    print("\n(ms: self CPU time per step, summed by kind; share: of all ops' self time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
