"""The up block's convolution: one transposed convolution of h against the two steps it replaces, on this machine.

`sr3_edu.blocks.ResBlock` with ``resample="up"`` computes conv3×3(nearest×2(h)) as `sr3_edu.blocks.upsample_conv`:
a transposed convolution of h with a 4×4 kernel summed from the 3×3 one, 2×2 taps of h for each output pixel
instead of 3×3 taps of the enlarged map (4/9 of the multiplies), and the enlarged map never made. The numbers are the
same up to the order of the sums (tests/test_unet.py). This script times both forms in one process, in turns — the
package's, then the two-step form put in its place, and so on — at the default precision:

- the op alone, forward (inference mode) and forward + backward, on the inputs of every up block of the shipped
  model on upscale's tile for a 1024² output (232²) and of the ref64 network on its batch (8 × 64²), in the
  sampler's layout (channels_last) and the trainer's (contiguous, off AMX CPUs);
- whole steps: one sampler call of each of those two (`sr3_edu.pipeline.FastNetwork`), and ``Trainer.train_step``
  of ref64, ref128 and tiny.

    python benchmarks/bench_upsample_conv.py            # about 5 minutes on a 2-core CPU
    python benchmarks/bench_upsample_conv.py --quick    # seconds: checks the machinery, not the speed
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile

import common
from bench_cpu import CONFIGS, config_names, default_trainer
from bench_step_costs import sampler_calls

common.use_repo_package()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from sr3_edu import blocks  # noqa: E402
from sr3_edu.devices import resolve_precision  # noqa: E402
from sr3_edu.pipeline import FastNetwork  # noqa: E402

FORMS = ("transposed", "two-step")
"""The package's form, and the one it replaces."""
LAYOUTS = ((torch.channels_last, "channels_last"), (torch.contiguous_format, "contiguous"))


def two_step(h, weight, bias):
    """The form `sr3_edu.blocks.upsample_conv` replaces: nearest-neighbour ×2, then the 3×3 convolution."""
    return F.conv2d(F.interpolate(h, scale_factor=2.0, mode="nearest"), weight, bias, padding=1)


@contextlib.contextmanager
def form(name: str):
    """Inside, every up block computes its convolution in the form ``name``."""
    own = blocks.upsample_conv
    blocks.upsample_conv = own if name == "transposed" else two_step
    try:
        yield
    finally:
        blocks.upsample_conv = own


def in_turns(step, args, grad: bool = True) -> dict[str, float]:
    """Median seconds of ``step`` under each form, timed in alternating turns."""
    fns = {}
    for name in FORMS:

        def run(name=name):
            with form(name):
                step()

        fns[name] = run
    with contextlib.nullcontext() if grad else torch.inference_mode():
        timings = common.alternate(fns, args.warmup, args.repeats)
    return {k: common.median(timings[k][0]) for k in FORMS}


def up_block_inputs(net, *inputs) -> list[tuple[int, ...]]:
    """The shape of h at every up block's convolution (C in = C out) of ``net`` on ``inputs``, in order."""
    shapes = []
    hooks = [
        block.register_forward_pre_hook(lambda block, args: shapes.append(tuple(args[0].shape)))
        for block in net.modules()
        if isinstance(block, blocks.ResBlock) and block.resample == "up"
    ]
    with torch.no_grad():
        net(*inputs)
    for hook in hooks:
        hook.remove()
    return shapes


def op_rows(args, dtype: torch.dtype, calls) -> list[list]:
    """The op alone on the up blocks' inputs of each sampler call, in both layouts, forward and forward + backward."""
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == torch.bfloat16 else contextlib.nullcontext()
    rows = []
    for label, net, x_lr, y_t in calls:
        for shape in up_block_inputs(net, x_lr, y_t, torch.full((x_lr.shape[0],), 0.5)):
            for layout, layout_name in LAYOUTS:
                h = torch.randn(shape).contiguous(memory_format=layout).requires_grad_()
                conv = torch.nn.Conv2d(shape[1], shape[1], 3, padding=1).to(memory_format=layout)

                def forward(h=h, conv=conv):
                    with autocast:
                        return blocks.upsample_conv(h, conv.weight, conv.bias)

                def train(forward=forward):
                    forward().float().square().mean().backward()

                what = f"{label.split(',')[0]}: {shape} {layout_name}"
                rows.append([f"{what}, forward", in_turns(forward, args, grad=False)])
                rows.append([f"{what}, forward + backward", in_turns(train, args)])
    return rows


def step_rows(args, names: list[str], calls) -> list[list]:
    """Whole sampler calls on the default fast path, then ``Trainer.train_step`` of each config."""
    rows = []
    for label, net, x_lr, y_t in calls:
        fast, gamma = FastNetwork(net), torch.full((x_lr.shape[0],), 0.5)

        def call(fast=fast, x_lr=x_lr, y_t=y_t, gamma=gamma):
            fast(x_lr, y_t, gamma)

        rows.append([f"{label}, sampler call", in_turns(call, args, grad=False)])
    with tempfile.TemporaryDirectory() as root:
        for name in names:
            trainer, batch = default_trainer(name, args.threads, root)

            def step(trainer=trainer, batch=batch):
                trainer.train_step(batch)

            rows.append(
                [f"{name} training step (`Trainer.train_step`, batch {CONFIGS[name].batch})", in_turns(step, args)]
            )
    return rows


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.1f}" if ms >= 10 else f"{ms:.3g}"


def table(rows: list[list]) -> str:
    cells = [[what, *(_ms(t[k]) for k in FORMS), f"{t['two-step'] / t['transposed']:.2f}"] for what, t in rows]
    return common.markdown_table(["what", "ms transposed (the package)", "ms two-step", "transposed ×"], cells)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="ref64,ref128,tiny", help=f"training configs from {', '.join(CONFIGS)}")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--repeats", type=int, default=5, help="timed turns per form (median reported)")
    p.add_argument("--quick", action="store_true", help="the micro config, a 64² tile, 1 warm-up and 2 turns")
    args = p.parse_args(argv)
    names = config_names(p, args.configs, args.quick)
    args.warmup, args.repeats = (1, 2) if args.quick else (2, args.repeats)
    torch.set_num_threads(args.threads)
    precision = resolve_precision("auto", torch.device("cpu"))
    print(common.machine_line(f"{args.threads} thread(s)", f"precision {precision} (default)"))
    common.warn_if_busy(args.threads)
    others = common.OthersMeter()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    # the shipped model on upscale's tile for a 1024² output, and the first config's network on its batch
    calls = [(label, *call) for label, call in sampler_calls(args, names[:1]).items()]
    print(f"\nThe op alone ({str(dtype)[6:]}), in turns in one process; medians of {args.repeats}\n")
    print(table(op_rows(args, dtype, calls)))
    print("\nWhole steps at the defaults, in turns in one process\n")
    print(table(step_rows(args, names, calls)))
    print("\n(transposed × > 1: the package's form is faster)")
    if line := common.others_line(others.cores()):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
