"""Four costs of a CPU step that are not its convolutions, each timed against its alternative on this machine.

1. **The allocator.** A step frees its activations and allocates the same sizes again in the next step; glibc's
   malloc by default gives that memory back to the system and faults it in again, page by page.
   `sr3_edu.devices.reuse_freed_memory` (which the trainer and the sampler call on a CPU) makes it keep it. The
   setting is per process, so the two sides are fresh processes started in turns — kept, system, kept, system, … —
   each building the step, warming up and timing ``--repeats`` steps (``SR3_EDU_MALLOC=system`` for the other side).
   Per side: the median seconds per step, page faults and kernel (sys) seconds per step, and the peak RSS.
2. **Dropout's mask.** `sr3_edu.blocks.Dropout` (`sr3_edu.blocks.keep_mask`: 15 random bits a unit) against
   ``F.dropout`` (``bernoulli_``), in one process, in turns: on one activation of the 16→128 configuration
   (2 × 64 × 128², bf16 where the default precision is bf16), and in the whole ref128 training step (the paper's
   dropout 0.2), in the default layout and in channels_last.
3. **GroupNorm on channels_last maps.** `sr3_edu.blocks.GroupNorm` (small maps of narrow groups in bf16
   normalised in the contiguous layout; in training, the backward in fp32) against ``nn.GroupNorm``'s own forward,
   in one process, in turns: the op on the shapes where the forward rule applies (the 232² tile's 1/8 level, a 64²
   network's 16² and 8² levels), whole sampler calls — the shipped model on the tile `upscale` uses for a 1024²
   output, and the ref64 network on a batch of 8 — on the sampler's default path (`sr3_edu.pipeline.FastNetwork`),
   and the ref64 training step in channels_last. Where the default precision is fp32 neither detour applies.
4. **Casting θ to bf16.** bf16 autocast casts every convolution's and linear layer's weights at every call; a chain
   of Algorithm 2 never changes θ, so `sr3_edu.pipeline.FastNetwork.fixed_weights` (which `sample` enters for its
   chain) casts them once. Sampler calls inside it against calls that autocast casts, in one process, in turns: the
   shipped model on upscale's tile, the ref64 and ref128 networks on bench_cpu's sampling batches; and what the
   one cast on entering costs. Where the default precision is fp32 there is nothing to cast.

Training steps are ``Trainer.train_step`` of bench_cpu's configs at the default precision, in the default layout
unless a row says channels_last.

    python benchmarks/bench_step_costs.py             # ref128, tiny and the 256² tile: about 3 minutes
    python benchmarks/bench_step_costs.py --quick     # seconds: checks the machinery, not the speed
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import common
from bench_cpu import CONFIGS, config_names, default_trainer

common.use_repo_package()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from sr3_edu import blocks  # noqa: E402
from sr3_edu.checkpoint import load_model  # noqa: E402
from sr3_edu.devices import MALLOC_ENV, resolve_precision, reuse_freed_memory  # noqa: E402
from sr3_edu.pipeline import AUTO_OVERLAP, AUTO_TILE, FastNetwork, TiledModel  # noqa: E402
from sr3_edu.unet import SR3UNet, UNetConfig  # noqa: E402

SIDES = {"kept": None, "system": "system"}
"""The allocator's two sides: the value of SR3_EDU_MALLOC (None: unset, the package's setting)."""


def _trainer(name: str, threads: int, root: str, channels_last: bool = False):
    """``Trainer.train_step`` of config ``name`` at the default precision, in the default layout or channels_last."""
    trainer, batch = default_trainer(name, threads, root, channels_last=True if channels_last else "auto")
    return lambda: trainer.train_step(batch)


def _tile_call(side: int):
    model, info = load_model(None)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, side // info.scale, side // info.scale, generator=g) * 2 - 1
    args = (x, torch.randn(1, 3, side, side, generator=g), torch.full((1,), 0.5))
    net = FastNetwork(model, "auto")

    def call():
        with torch.inference_mode():
            net(*args)

    return call


def worker(job: dict) -> dict:
    """One fresh process's measure of one step (the allocator side is this process's environment)."""
    torch.set_num_threads(job["threads"])
    with tempfile.TemporaryDirectory() as root:
        step = _tile_call(job["tile"]) if job["step"] == "tile" else _trainer(job["step"], job["threads"], root)
        for _ in range(job["warmup"]):
            step()
        walls, sys_s, faults = [], 0.0, 0
        for _ in range(job["repeats"]):
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            step()
            walls.append(time.perf_counter() - t0)
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            sys_s, faults = sys_s + r1.ru_stime - r0.ru_stime, faults + r1.ru_minflt - r0.ru_minflt
    n = job["repeats"]
    return {"s": common.median(walls), "sys": sys_s / n, "faults": faults / n, "rss": common.peak_rss_mib()}


def allocator_rows(steps: list[str], args: argparse.Namespace) -> list[list[str]]:
    rows = []
    for step in steps:
        runs: dict[str, list[dict]] = {side: [] for side in SIDES}
        for _ in range(args.rounds):
            for side, value in SIDES.items():
                env = {k: v for k, v in os.environ.items() if k != MALLOC_ENV and not k.startswith("MALLOC_")}
                if value is not None:
                    env[MALLOC_ENV] = value
                job = {"step": step, "tile": args.tile, "threads": args.threads}
                job.update(warmup=args.warmup, repeats=args.repeats)
                cmd = [sys.executable, __file__, "--worker", json.dumps(job)]
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
                runs[side].append(json.loads(out.splitlines()[-1]))
        what = f"shipped model, one call on a {args.tile}² tile" if step == "tile" else f"{step} training step"
        med = {side: {k: common.median([r[k] for r in rs]) for k in rs[0]} for side, rs in runs.items()}
        kept, system = med["kept"], med["system"]
        rows.append(
            [what]
            + [f"{m['s']:.3f} / {m['faults']:,.0f} / {m['sys']:.2f} / {m['rss']:,.0f}" for m in (kept, system)]
            + [f"{system['s'] / kept['s']:.2f}"]
        )
    return rows


def _reference_dropout(self: nn.Dropout, x: torch.Tensor) -> torch.Tensor:
    return F.dropout(x, self.p, self.training)


def dropout_rows(name: str, args: argparse.Namespace, precision: str) -> list[list[str]]:
    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    x = torch.randn(2, 64, 128, 128, dtype=dtype) if not args.quick else torch.randn(2, 8, 16, 16, dtype=dtype)
    ours = blocks.Dropout(0.2)
    fns = {"Dropout": lambda: ours(x), "F.dropout": lambda: F.dropout(x, 0.2, True)}
    t = common.alternate(fns, args.warmup, args.repeats * 4)
    rows = [[f"one dropout, {tuple(x.shape)} {str(dtype)[6:]}", *(common.median(t[k][0]) for k in fns)]]

    dropout = CONFIGS[name].unet.get("dropout", 0.0)
    for channels_last in (False, True):
        with tempfile.TemporaryDirectory() as root:
            step = _trainer(name, args.threads, root, channels_last)
            fns = {
                "Dropout": _with_forward(blocks.Dropout, blocks.Dropout.forward, step),
                "F.dropout": _with_forward(blocks.Dropout, _reference_dropout, step),
            }
            t = common.alternate(fns, 1, args.repeats)
        layout = ", channels_last" if channels_last else ""
        rows.append([f"{name} training step (dropout {dropout:g}{layout})", *(common.median(t[k][0]) for k in fns)])
    return [[what, _ms(a), _ms(b), f"{b / a:.2f}"] for what, a, b in rows]


def _with_forward(cls: type, forward, step):
    """``step`` run with ``cls.forward`` replaced by ``forward``, and put back after."""
    own = cls.forward

    def run():
        cls.forward = forward
        try:
            step()
        finally:
            cls.forward = own

    return run


def _sampler_call(forward, fast: FastNetwork, *args: torch.Tensor):
    """One sampler call of ``fast`` with `sr3_edu.blocks.GroupNorm` running ``forward``."""

    def call():
        with torch.inference_mode():
            fast(*args)

    return _with_forward(blocks.GroupNorm, forward, call)


def sampler_calls(args: argparse.Namespace, names: list[str]) -> dict[str, tuple[nn.Module, Tensor, Tensor]]:
    """What a sampler call is timed on: {row label: (network, x_lr, y_t)} — the shipped model on upscale's tile for a
    1024² output (64² with --quick), then each of ``names``'s networks on its batch (fresh weights: the time depends
    on the shapes only), all in eval mode."""
    g = torch.Generator().manual_seed(0)
    model, info = load_model(None)
    # the tile upscale's automatic tiling refines a 1024² output with (232² for the shipped model)
    side = 64 if args.quick else TiledModel(model, AUTO_TILE, info.scale, overlap=AUTO_OVERLAP).layout(1024)[0]
    x = torch.rand(1, 3, side // info.scale, side // info.scale, generator=g) * 2 - 1
    what = f"shipped model, one call on a {side}² tile" + ("" if args.quick else " (upscale's tile for a 1024² output)")
    calls = {what: (model, x, torch.randn(1, 3, side, side, generator=g))}
    for name in names:
        cfg = CONFIGS[name]
        net = SR3UNet.from_config(UNetConfig(**cfg.unet)).eval().requires_grad_(False)
        x_lr, y0 = cfg.pairs(g)
        calls[f"{name} network, one call on {cfg.batch} × {cfg.size}²"] = (net, x_lr, torch.randn_like(y0))
    return calls


def cast_rows(args: argparse.Namespace) -> list[list[str]]:
    torch.set_num_threads(args.threads)
    rows = []
    names = ["micro"] if args.quick else ["ref64", "ref128"]
    for what, (net, x_lr, y_t) in sampler_calls(args, names).items():
        once, every = FastNetwork(net, "bf16"), FastNetwork(net, "bf16")
        gamma = torch.full((y_t.shape[0],), 0.5)
        with torch.inference_mode(), contextlib.ExitStack() as chain:
            t0 = time.perf_counter()
            chain.enter_context(once.fixed_weights())
            entering = time.perf_counter() - t0  # the first entry: the copy made and cast
            fns = {side: functools.partial(fast, x_lr, y_t, gamma) for side, fast in (("once", once), ("every", every))}
            t = common.alternate(fns, args.warmup, args.repeats * 2)
        a, b = (common.median(t[k][0]) for k in fns)
        rows.append([what, _ms(a), _ms(b), f"{b / a:.2f}", _ms(entering)])
    return rows


def group_norm_rows(args: argparse.Namespace, precision: str) -> list[list[str]]:
    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    g = torch.Generator().manual_seed(0)
    shapes = [(1, 8, 8, 8)] if args.quick else [(1, 128, 29, 29), (8, 128, 16, 16), (8, 256, 8, 8)]
    own, plain = blocks.GroupNorm.forward, nn.GroupNorm.forward
    rows = []
    for shape in shapes:
        norm = blocks.group_norm(shape[1])
        x = torch.randn(shape, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
        fns = {"ours": lambda norm=norm, x=x: own(norm, x), "plain": lambda norm=norm, x=x: plain(norm, x)}
        with torch.inference_mode():
            t = common.alternate(fns, args.warmup, args.repeats * 10)
        what = f"one GroupNorm, {shape} channels_last {str(dtype)[6:]}, {shape[1] // norm.num_groups} ch/group"
        rows.append([what, *(common.median(t[k][0]) for k in fns)])

    name = "micro" if args.quick else "ref64"
    for what, (net, x_lr, y_t) in sampler_calls(args, [name]).items():
        fast, gamma = FastNetwork(net, "auto"), torch.full((y_t.shape[0],), 0.5)
        fns = {
            side: _sampler_call(forward, fast, x_lr, y_t, gamma) for side, forward in (("ours", own), ("plain", plain))
        }
        t = common.alternate(fns, args.warmup, args.repeats * 2)
        rows.append([what, *(common.median(t[k][0]) for k in fns)])
    # training in channels_last, where the backward detour applies on every map
    with tempfile.TemporaryDirectory() as root:
        step = _trainer(name, args.threads, root, channels_last=True)
        fns = {
            side: _with_forward(blocks.GroupNorm, forward, step) for side, forward in (("ours", own), ("plain", plain))
        }
        t = common.alternate(fns, 1, args.repeats)
    rows.append([f"{name} training step in channels_last (`Trainer.train_step`, batch {CONFIGS[name].batch})"])
    rows[-1] += [common.median(t[k][0]) for k in fns]
    return [[what, _ms(a), _ms(b), f"{b / a:.2f}"] for what, a, b in rows]


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.1f}" if ms >= 10 else f"{ms:.3g}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="ref128,tiny", help=f"training configs from {', '.join(CONFIGS)}")
    p.add_argument("--tile", type=int, default=256, help="side of the sampling tile (output pixels)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--rounds", type=int, default=2, help="processes per allocator side, started in turns")
    p.add_argument("--repeats", type=int, default=4, help="timed steps per process (median reported)")
    p.add_argument("--quick", action="store_true", help="the micro config, a 64² tile, 1 round of 2 steps")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    names = config_names(p, args.configs, args.quick)
    args.warmup = 1 if args.quick else 2
    if args.quick:
        args.tile, args.rounds, args.repeats = 64, 1, 2
    precision = resolve_precision("auto", torch.device("cpu"))
    print(common.machine_line(f"{args.threads} thread(s)", f"precision {precision} (default)"))
    common.warn_if_busy(args.threads)

    print(f"\nThe allocator: {args.rounds} fresh processes per side, in turns, median of {args.repeats} steps each\n")
    head = ["step", "kept (the default): s / faults / sys s / peak MiB", "system: s / faults / sys s / peak MiB"]
    print(common.markdown_table([*head, "kept ×"], allocator_rows([*names, "tile"], args)))
    print("\n(s: seconds per step; faults: minor page faults per step; sys s: kernel seconds per step; kept × > 1: the")
    print(f"package's setting is faster. 'system' is {MALLOC_ENV}=system, glibc's own thresholds.)")

    # the in-process tables run as the trainer and the sampler do: glibc keeping freed memory (set before the first
    # timing: a lone op's 4 MB buffers, faulted in afresh at every call, measured up to 2.5× slower without it)
    reuse_freed_memory()
    name = "micro" if args.quick else ("ref128" if "ref128" in names else names[0])
    print("\nDropout's mask, in turns in one process (the allocator setting on in both)\n")
    head = ["step", "ms sr3_edu.blocks.Dropout", "ms F.dropout", "Dropout ×"]
    print(common.markdown_table(head, dropout_rows(name, args, precision)))

    print("\nGroupNorm of channels_last maps, in turns in one process (sampling in inference mode; then training)\n")
    head = ["what", "ms sr3_edu.blocks.GroupNorm", "ms nn.GroupNorm's forward", "GroupNorm ×"]
    print(common.markdown_table(head, group_norm_rows(args, precision)))

    print("\nθ cast to bf16 once a chain or at every call, in turns in one process (sampling in inference mode)\n")
    if precision != "bf16":
        print("(not timed: the default precision here is fp32, where nothing is cast)")
    else:
        head = ["what", "ms cast once (fixed_weights)", "ms autocast every call", "cast once ×"]
        print(common.markdown_table([*head, "ms entering (copy and cast)"], cast_rows(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
