"""Which memory layout is faster on this machine: channels_last (NHWC) against contiguous (NCHW), in one process.

The rule behind ``channels_last="auto"`` (`sr3_edu.devices.channels_last_training` for training, `FastNetwork` for
sampling) comes from this table. For each layout it times, in alternating turns (a, b, a, b, …, so a change of load
falls on both):

- ``Trainer.train_step`` of the bench_cpu configs (the step that trains: loss, backward, clipping, AdamW, EMA), in
  bf16 autocast where the CPU has native bf16 (the default precision), else fp32;
- one network call of the shipped model on a 256² tile, as `upscale` runs it (`sr3_edu.pipeline.FastNetwork`).

    python benchmarks/bench_layout.py                    # ref64, ref128, tiny and the 256² tile: a few minutes
    python benchmarks/bench_layout.py --quick            # seconds: checks the machinery, not the speed
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import common
from bench_cpu import CONFIGS, config_names, default_trainer

common.use_repo_package()

import torch  # noqa: E402

from sr3_edu.checkpoint import load_model  # noqa: E402
from sr3_edu.devices import channels_last_training, resolve_precision  # noqa: E402
from sr3_edu.pipeline import FastNetwork  # noqa: E402

LAYOUTS = {"channels_last": True, "contiguous": False}


def training_rows(names: list[str], precision: str, threads: int, warmup: int, repeats: int, root: str) -> list:
    """[config, s/step channels_last, s/step contiguous] for each bench_cpu config, timed in turns."""
    rows = []
    for name in names:
        fns = {}
        for layout, cl in LAYOUTS.items():
            trainer, batch = default_trainer(name, threads, root, precision, channels_last=cl)
            fns[layout] = lambda t=trainer, batch=batch: t.train_step(batch)
        timings = common.alternate(fns, warmup, repeats)
        rows.append([name, *(common.median(timings[k][0]) for k in LAYOUTS), CONFIGS[name].batch])
    return rows


def sampling_row(side: int, precision: str, warmup: int, repeats: int) -> list:
    """[tile, s/call channels_last, s/call contiguous] for one call of the shipped model on a ``side``² tile."""
    model, info = load_model(None)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, side // info.scale, side // info.scale, generator=g) * 2 - 1
    args = (x, torch.randn(1, 3, side, side, generator=g), torch.full((1,), 0.5))
    fns = {k: (lambda net=FastNetwork(model, precision, cl): net(*args)) for k, cl in LAYOUTS.items()}
    with torch.inference_mode():
        timings = common.alternate(fns, warmup, repeats)
    return [f"shipped model, one call on a {side}² tile", *(common.median(timings[k][0]) for k in LAYOUTS), 1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="ref64,ref128,tiny", help=f"training configs from {', '.join(CONFIGS)}")
    p.add_argument("--tile", type=int, default=256, help="side of the sampling tile (output pixels)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--repeats", type=int, default=5, help="timed turns per layout (median reported)")
    p.add_argument("--quick", action="store_true", help="the micro config, a 64² tile, 1 warm-up and 2 turns")
    args = p.parse_args(argv)
    names = config_names(p, args.configs, args.quick)
    warmup, repeats, tile = (1, 2, 64) if args.quick else (2, args.repeats, args.tile)
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    precision = resolve_precision("auto", cpu)
    print(
        common.machine_line(
            f"{args.threads} thread(s)", f"precision {precision} (default)", f"medians of {repeats} turns"
        )
    )
    others = common.OthersMeter()
    with tempfile.TemporaryDirectory() as root:
        rows = training_rows(names, precision, args.threads, warmup, repeats, root)
    rows.append(sampling_row(tile, precision, warmup, repeats))
    table = [
        [what, f"{cl:.4f}", f"{contig:.4f}", f"{contig / cl:.2f}", f"{batch / cl:.2f}", f"{batch / contig:.2f}"]
        for what, cl, contig, batch in rows
    ]
    print()
    head = ["step", "s channels_last", "s contiguous", "channels_last ×", "img/s channels_last", "img/s contiguous"]
    print(common.markdown_table(head, table))
    print("\n(channels_last × > 1: channels_last is faster; training rows time Trainer.train_step, and the tile")
    print("row's img/s is calls per second)")
    rule = "channels_last" if channels_last_training(cpu, precision) else "contiguous"
    print(f"\nthe trainer's channels_last='auto' here: {rule}; the sampler's: channels_last")
    if line := common.others_line(others.cores()):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
