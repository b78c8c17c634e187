"""Whether ``torch.compile`` pays on this machine: the compiled sampler step and the compiled U-Net in training
against the eager ones, in one process, in turns.

Two rows, each on the default precision and layout of the machine (bf16 autocast where the CPU multiplies bf16
natively):

- **sampling**: `sr3_edu.upscale.super_resolve` of a 64² input to 256² (one piece, `upscale`'s largest untiled
  size) with the shipped model, ``compile=True`` (`sample(compile=True)`: the U-Net and the update of Algorithm 2
  compiled together, `sr3_edu.compiled`) against the eager loop, both seeded alike, ``--steps`` steps a turn;
- **training**: ``Trainer.train_step`` of a bench_cpu config with ``TrainConfig(compile=True)`` against the eager
  trainer on the same batch.

The first call of each compiled side (compilation included) is timed on its own and reported beside the per-step
figures, which come after it. "max abs difference" says how far the compiled side's result is from the eager one's:
the output images of the first turn (both draw the same noise on a CPU), or the larger of the differences of the first
training step's loss and of its gradient norm. "others' cores" is how many cores other processes kept busy during the
timed turns.

    python benchmarks/bench_compile.py                  # the shipped model and ref64: about 6 minutes, most compiling
    python benchmarks/bench_compile.py --quick          # the micro config: checks the machinery, not the speed
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import common
from bench_cpu import CONFIGS, default_trainer

common.use_repo_package()

import torch  # noqa: E402

from sr3_edu.checkpoint import load_model  # noqa: E402
from sr3_edu.devices import resolve_precision  # noqa: E402
from sr3_edu.upscale import super_resolve  # noqa: E402

SIDES = ("eager", "compiled")


def _first_call(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _turns(fns, warmup: int, repeats: int) -> tuple[common.Timings, float | None]:
    """`common.alternate`, and the cores other processes kept busy meanwhile (measured only here, after the first
    calls: the compiler's worker processes are other processes to the meter)."""
    others = common.OthersMeter()
    timings = common.alternate(fns, warmup, repeats)
    return timings, others.cores()


def sampling_row(side: int, steps: int, warmup: int, repeats: int) -> list:
    """[what, s/step eager, s/step compiled, first compiled call s, the images' max abs difference, others' cores]."""
    model, info = load_model(None)
    x_lr = torch.rand(1, 3, side // info.scale, side // info.scale, generator=torch.Generator().manual_seed(0))
    x_lr = x_lr * 2 - 1

    def run(compile: bool):
        return lambda: super_resolve(model, x_lr, info=info, steps=steps, seed=0, compile=compile)

    fns = {side_: run(side_ == "compiled") for side_ in SIDES}
    first, compiled_out = _first_call(fns["compiled"])
    delta = (compiled_out - fns["eager"]()).abs().max().item()
    timings, others = _turns(fns, warmup, repeats)
    what = f"shipped model, {side // info.scale}² → {side}², one refinement step (`super_resolve`, {steps} a turn)"
    return [what, *(common.median(timings[k][0]) / steps for k in SIDES), first, delta, others]


def training_row(name: str, threads: int, warmup: int, repeats: int, root: str) -> list:
    """[what, s/step eager, s/step compiled, first step s, the first step's difference, others' cores]."""
    cfg = CONFIGS[name]
    fns = {}
    for side in SIDES:
        trainer, batch = default_trainer(name, threads, root, compile=side == "compiled")
        fns[side] = lambda t=trainer, batch=batch: t.train_step(batch)
    first, (compiled_loss, compiled_norm, _) = _first_call(fns["compiled"])
    eager_loss, eager_norm, _ = fns["eager"]()  # the same step number, so the same noise
    delta = max((compiled_loss - eager_loss).abs().item(), (compiled_norm - eager_norm).abs().item())
    timings, others = _turns(fns, warmup, repeats)
    what = f"{name} training step (`Trainer.train_step`, batch {cfg.batch})"
    return [what, *(common.median(timings[k][0]) for k in SIDES), first, delta, others]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="ref64", help=f"training config, from {', '.join(CONFIGS)}")
    p.add_argument("--side", type=int, default=256, help="output side of the sampling row (pixels)")
    p.add_argument("--steps", type=int, default=5, help="refinement steps per timed sampling turn")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--repeats", type=int, default=5, help="timed turns per side (median reported)")
    p.add_argument("--quick", action="store_true", help="the micro config, a 32² output, 1 warm-up and 2 turns")
    args = p.parse_args(argv)
    if args.config not in CONFIGS:
        p.error(f"unknown config {args.config!r}; choose from {', '.join(CONFIGS)}")
    if args.side <= 0 or args.side % 32:
        p.error(
            f"--side must be a positive multiple of 32 (the shipped model's scale 4 × its U-Net's multiple 8, so "
            f"that no padding enters the timing), got {args.side}"
        )
    if args.steps < 1 or args.repeats < 1:
        p.error("--steps and --repeats must be at least 1")
    name, side, steps = ("micro", 32, 2) if args.quick else (args.config, args.side, args.steps)
    warmup, repeats = (1, 2) if args.quick else (1, args.repeats)
    torch.set_num_threads(args.threads)
    precision = resolve_precision("auto", torch.device("cpu"))
    print(
        common.machine_line(
            f"{args.threads} thread(s)", f"precision {precision} (default)", f"medians of {repeats} turns"
        )
    )
    common.warn_if_busy(args.threads)
    rows = [sampling_row(side, steps, warmup, repeats)]
    with tempfile.TemporaryDirectory() as root:
        rows.append(training_row(name, args.threads, warmup, repeats, root))
    table = [
        [
            what,
            f"{eager:.4f}",
            f"{comp:.4f}",
            f"{eager / comp:.2f}",
            f"{first:.1f}",
            f"{delta:.2g}",
            common.fmt(others, 2),
        ]
        for what, eager, comp, first, delta, others in rows
    ]
    print()
    head = [
        "step",
        "s eager",
        "s compiled",
        "compiled ×",
        "first compiled call s",
        "max abs difference",
        "others' cores",
    ]
    print(common.markdown_table(head, table))
    print("\n(per step, after the first call; compiled × > 1: the compiled side is faster. The first call includes")
    print("compiling; a later process compiles again unless torch's on-disk caches still hold the result.)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
