"""CPU speed of sr3-edu's U-Net: training throughput, FLOPs, memory and sampling time, beside the reference SR3.

Run from the repository root::

    python benchmarks/bench_cpu.py                       # ref64, ref128, tiny; 2 threads; a markdown table
    python benchmarks/bench_cpu.py --configs tiny --channels-last --json runs/bench_tiny_cl.json
    python benchmarks/bench_cpu.py --quick --configs micro  # seconds: checks the machinery, not the speed

Every config runs in a fresh Python process (so peak RSS is that config's own) with torch's threads pinned.
Each timing is the median of ``--repeats`` timed repeats after warm-up. Other processes share this CPU, so
every row also says how many cores they took while it ran ("others' cores") and what share of the cores it
asked for this process actually got ("CPU share": its CPU seconds / (wall seconds × threads)). Read rows where
others took more than ~0.2 core, or the share is below ~0.9, as lower bounds of the speed. On an oversubscribed
CPU, 2 threads can be far slower than 1 (each operator ends in a barrier that waits for the thread the scheduler
left out), so compare ``--threads 1`` there too.

FLOPs: torch.utils.flop_counter.FlopCounterMode on one forward pass (a multiply-add = 2 FLOPs). A training
step is counted as 3× the forward (forward + backward), as the reference figures are; counting the backward
with FlopCounterMode too gives 3.00× for these U-Nets (2.99× for tiny), so the two conventions agree.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (the helper beside this script)

# Janspiry's SR3 (the unofficial reference implementation) on this project's 2-core CPU, torch 2.13 CPU,
# 2 threads, FLOPs by FlopCounterMode: the figures quoted in the project's "Speed" issue.
REFERENCE = {
    "ref64": {
        "what": "64×64 HR, base 32, mults 1-2-4-8, 1 block, attn at 8×8, batch 8",
        "params": 10.5e6,
        "gflop_fwd_per_img": 4.01,
        "train_img_per_s": 5.3,
        "train_gflop_per_s": 64.0,
        "sample_s_per_step_img": 0.052,
        "s_per_img_at_its_steps": 105.0,
        "its_steps": 2000,
    },
    "ref128": {
        "what": "128×128 HR, base 64, mults 1-2-4-8-8, 2 blocks, attn at 16×16, batch 2",
        "params": 97.8e6,
        "gflop_fwd_per_img": 92.4,
        "train_img_per_s": 0.26,
        "train_gflop_per_s": 71.0,
        "sample_s_per_step_img": 0.95,
        "s_per_img_at_its_steps": 1906.0,
        "its_steps": 2000,
    },
}

TARGET_SPEEDUP = 1.3
"""The issue's target: 1.3× the reference's achieved training GFLOP/s, 1/1.3 of its sampling s/step/img."""

DEFAULT_STEPS = 100
"""The default sampler's step count (the s/img column extrapolates to it)."""


@dataclass(frozen=True)
class BenchConfig:
    """One architecture at one size and batch."""

    unet: dict = field(default_factory=dict)
    """SR3UNet keyword arguments, or empty with ``preset`` set."""
    preset: str | None = None
    size: int = 64
    """Side of the high-resolution image y (square)."""
    scale: int = 4
    """Upscaling factor: x_lr has side size/scale."""
    batch: int = 8
    """Training batch, and the default sampling batch."""
    note: str = ""


CONFIGS: dict[str, BenchConfig] = {
    "ref64": BenchConfig(
        unet=dict(base_channels=32, channel_mults=(1, 2, 4, 8), num_res_blocks=1, attn_levels=(3,)),
        size=64,
        scale=4,
        batch=8,
        note="closest sr3-edu U-Net to the reference's first row (not identical: compare params and FLOPs)",
    ),
    "ref128": BenchConfig(
        unet=dict(base_channels=64, channel_mults=(1, 2, 4, 8, 8), num_res_blocks=2, attn_levels=(3,)),
        size=128,
        scale=8,
        batch=2,
        note="closest sr3-edu U-Net to the reference's second row (16→128)",
    ),
    "tiny": BenchConfig(preset="tiny", size=64, scale=4, batch=8, note="the shipped preset, 16→64"),
    "micro": BenchConfig(
        unet=dict(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attn_levels=(1,)),
        size=16,
        scale=4,
        batch=2,
        note="a toy for the test suite: checks the machinery, its speed means nothing",
    ),
}
DEFAULT_CONFIGS = ("ref64", "ref128", "tiny", "upscale")


# ---------------------------------------------------------------------------------------------- one config
def default_sampler_steps() -> tuple[int, str]:
    """The step count `sr3-edu upscale` uses with the shipped model, and where that number comes from."""
    try:
        from sr3_edu.checkpoint import load_checkpoint, shipped_model_path

        steps = load_checkpoint(shipped_model_path("sr3"), kind="model").get("inference", {}).get("steps")
        if steps:
            return int(steps), "the shipped model file"
    except (ImportError, ValueError, OSError):
        pass
    try:
        from sr3_edu.upscale import DEFAULT_INFERENCE

        return int(DEFAULT_INFERENCE["steps"]), "sr3_edu.upscale.DEFAULT_INFERENCE"
    except (ImportError, KeyError):
        return DEFAULT_STEPS, "the paper's 100-step budget"


def _variant(opts: dict) -> str:
    parts = ["channels_last" if opts["channels_last"] else "contiguous"]
    if opts["compile"]:
        parts.append("compiled sampler")
    if opts["bf16"]:
        parts.append("bf16 sampler")
    return ", ".join(parts)


def _peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _timed(fn, warmup: int, repeats: int) -> tuple[list[float], list[float]]:
    """Wall seconds and this process's CPU seconds (all its threads) of each timed call."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def _share(wall: list[float], cpu: list[float], threads: int) -> float:
    """The fraction of the ``threads`` cores asked for that this process actually got while timed."""
    return sum(cpu) / (sum(wall) * threads)


def measure(name: str, opts: dict) -> dict:
    """Measure one config in this process (the worker side of `main`). Returns one result row as a dict."""
    common.use_repo_package()
    import torch

    from sr3_edu.diffusion import loss, sample
    from sr3_edu.schedule import NoiseSchedule
    from sr3_edu.unet import SR3UNet

    torch.set_num_threads(opts["threads"])
    torch.manual_seed(0)
    meter = common.OthersMeter()
    cfg = CONFIGS[name]
    model = SR3UNet.from_preset(cfg.preset) if cfg.preset else SR3UNet(**cfg.unet)
    layout = torch.channels_last if opts["channels_last"] else torch.contiguous_format
    model = model.to(memory_format=layout)
    B, S, s = cfg.batch, cfg.size, cfg.scale
    gen = torch.Generator().manual_seed(0)
    x_lr = (torch.rand(B, 3, S // s, S // s, generator=gen) * 2 - 1).contiguous(memory_format=layout)
    y0 = (torch.rand(B, 3, S, S, generator=gen) * 2 - 1).contiguous(memory_format=layout)
    row: dict = {"config": name, "variant": _variant(opts), "threads": opts["threads"], "batch": B, "size": S}
    row["params"] = sum(p.numel() for p in model.parameters())
    row["gflop_fwd_per_img"] = common.forward_flops(model, x_lr[:1], y0[:1], torch.rand(1)) / 1e9
    row["rss_baseline_mib"] = _peak_rss_mib()

    # --- training: loss (Algorithm 1) + backward + AdamW, the trainer's inner step
    schedule = NoiseSchedule.linear(2000)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        loss(model, x_lr, y0, schedule, generator=gen).backward()
        opt.step()

    wall, cpu = _timed(train_step, opts["warmup"], opts["repeats"])
    row["train_step_s"] = common.median(wall)
    row["train_img_per_s"] = B / row["train_step_s"]
    # forward + backward = 3 × forward (FlopCounterMode gives 3.00× when it counts the backward too)
    row["train_gflop_per_s"] = 3 * row["gflop_fwd_per_img"] * row["train_img_per_s"]
    row["train_cpu_share"] = _share(wall, cpu, opts["threads"])
    # busy time: this process's CPU seconds ÷ threads, the step time had the cores been ours alone
    row["train_busy_gflop_per_s"] = 3 * row["gflop_fwd_per_img"] * B / (common.median(cpu) / opts["threads"])
    row["peak_rss_train_mib"] = _peak_rss_mib()
    opt.state.clear()  # free AdamW's moments and the gradients before sampling
    model.zero_grad(set_to_none=True)

    # --- sampling: Algorithm 2 on a short respaced schedule, under inference_mode (sample() sets it)
    model.eval()
    steps = opts["sample_steps"]
    short = NoiseSchedule.linear(2000).respace(steps)
    one_step = NoiseSchedule.linear(2000).respace(1)

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=opts["bf16"])

    def s_per_step_img(n: int) -> tuple[float, float, float, float]:
        """(wall s/step/img, first call s, CPU share, busy s/step/img) at sampling batch n."""
        x = torch.rand(n, 3, S // s, S // s, generator=gen) * 2 - 1
        first, first_cpu = time.perf_counter(), time.process_time()
        with autocast():
            # one step first: with --compile this compiles the refinement step (U-Net and update) for batch n
            sample(model, x, one_step, scale=s, generator=gen, compile=opts["compile"])
        first, first_cpu = time.perf_counter() - first, time.process_time() - first_cpu
        if opts["compile"] and "compile_cpu_s" not in row:
            row["compile_cpu_s"] = first_cpu  # the compiler's worker processes are not counted

        def run() -> None:
            with autocast():
                sample(model, x, short, scale=s, generator=gen, compile=opts["compile"])

        wall, cpu = _timed(run, 1, opts["sample_repeats"])
        busy = common.median(cpu) / opts["threads"] / (steps * n)
        return common.median(wall) / (steps * n), first, _share(wall, cpu, opts["threads"]), busy

    sample_batch = opts["sample_batch"] or B
    row["sample_batch"] = sample_batch
    row["sample_steps_timed"] = steps
    row["sample_s_per_step_img"], first_call, row["sample_cpu_share"], row["sample_busy_s_per_step_img"] = (
        s_per_step_img(sample_batch)
    )
    row["s_per_img_at_default_steps"] = row["sample_s_per_step_img"] * DEFAULT_STEPS
    row["compile_s"] = first_call if opts["compile"] else None
    row["sample_batch_sweep"], row["sample_batch_sweep_busy"] = {}, {}
    for n in opts["sample_batches"]:
        wall_n, _, _, busy_n = s_per_step_img(n)
        row["sample_batch_sweep"][str(n)], row["sample_batch_sweep_busy"][str(n)] = wall_n, busy_n
    row["peak_rss_mib"] = _peak_rss_mib()
    if name == "tiny":
        n_steps, source = default_sampler_steps()
        row["default_sampler_steps"], row["default_sampler_steps_from"] = n_steps, source
        row["s_per_img_at_default_sampler_steps"] = row["sample_s_per_step_img"] * n_steps

    ref = REFERENCE.get(name)
    if ref:
        row["train_speedup_vs_ref"] = row["train_gflop_per_s"] / ref["train_gflop_per_s"]
        row["sample_speedup_vs_ref"] = ref["sample_s_per_step_img"] / row["sample_s_per_step_img"]
        row["train_busy_speedup_vs_ref"] = row["train_busy_gflop_per_s"] / ref["train_gflop_per_s"]
        row["sample_busy_speedup_vs_ref"] = ref["sample_s_per_step_img"] / row["sample_busy_s_per_step_img"]
    row["others_cores"] = meter.cores()
    return row


# ---------------------------------------------------------------------------------------------- upscale row
def measure_upscale(opts: dict) -> dict:
    """Wall time of sr3_edu.upscale.super_resolve on a 256×256 image (×4 → 1024×1024) with the tiny U-Net."""
    common.use_repo_package()
    import inspect

    import torch

    torch.set_num_threads(opts["threads"])
    try:
        from sr3_edu.upscale import super_resolve
    except ImportError as e:
        return {"config": "upscale", "skipped": f"sr3_edu.upscale.super_resolve is not importable yet ({e})"}
    from PIL import Image

    from sr3_edu.unet import SR3UNet

    meter = common.OthersMeter()
    rng = torch.Generator().manual_seed(0)
    pixels = (torch.rand(256, 256, 3, generator=rng) * 255).to(torch.uint8).numpy()
    image = Image.fromarray(pixels, "RGB")
    model = SR3UNet.from_preset("tiny").eval()
    steps = opts["upscale_steps"]
    params = inspect.signature(super_resolve).parameters
    wanted = {"steps": steps, "scale": 4, "seed": 0, "tile": opts["upscale_tile"]}
    kwargs = {k: v for k, v in wanted.items() if k in params and v is not None}
    t0 = time.perf_counter()
    out = super_resolve(model, image, **kwargs)
    wall = time.perf_counter() - t0
    size = getattr(out, "size", None) or tuple(getattr(out, "shape", ())[-2:])
    return {
        "config": "upscale",
        "variant": f"tiny, 256×256 → {size}, {steps} steps, tile {opts['upscale_tile'] or 'none (whole image)'}",
        "threads": opts["threads"],
        "upscale_steps": steps,
        "upscale_wall_s": wall,
        "upscale_s_at_default_steps": wall / steps * DEFAULT_STEPS,
        "call": f"super_resolve(model, image, {', '.join(f'{k}={v!r}' for k, v in kwargs.items())})",
        "others_cores": meter.cores(),
        "peak_rss_mib": _peak_rss_mib(),
    }


# ---------------------------------------------------------------------------------------------- the table
def table(rows: list[dict]) -> str:
    f = common.fmt
    headers = [
        "config",
        "variant",
        "params M (ref)",
        "fwd GFLOP/img (ref)",
        "train img/s (ref)",
        "train GFLOP/s (ref)",
        "train ×ref",
        "peak RSS MiB",
        "sample s/step/img (ref)",
        "sample ×ref",
        f"s/img @{DEFAULT_STEPS} steps",
        "others' cores",
        "CPU share train/sample",
    ]
    out = []
    for r in rows:
        if "skipped" in r or r["config"] == "upscale":
            continue
        ref = REFERENCE.get(r["config"], {})

        def both(ours: float, key: str, scale: float = 1.0, ref=ref) -> str:
            return f"{f(ours)} ({f(ref[key] / scale)})" if key in ref else f(ours)

        out.append(
            [
                r["config"],
                r["variant"],
                both(r["params"] / 1e6, "params", 1e6),
                both(r["gflop_fwd_per_img"], "gflop_fwd_per_img"),
                both(r["train_img_per_s"], "train_img_per_s"),
                both(r["train_gflop_per_s"], "train_gflop_per_s"),
                f(r.get("train_speedup_vs_ref"), 2),
                f(r["peak_rss_train_mib"], 4),
                both(r["sample_s_per_step_img"], "sample_s_per_step_img"),
                f(r.get("sample_speedup_vs_ref"), 2),
                f(r["s_per_img_at_default_steps"]),
                f(r["others_cores"], 2),
                f"{r['train_cpu_share']:.2f}/{r['sample_cpu_share']:.2f}",
            ]
        )
    text = common.markdown_table(headers, out)
    measured = [r for r in rows if "train_busy_gflop_per_s" in r]
    if measured:
        text += (
            "\n\nBusy-time estimates (this process's CPU seconds ÷ threads instead of wall seconds: the speed had the "
            "cores been ours alone; exact with 1 thread, a lower bound with more, since waiting threads spin):\n\n"
        )
        text += common.markdown_table(
            ["config", "variant", "train GFLOP/s", "train ×ref", "sample s/step/img", "sample ×ref", "s/img @100"],
            [
                [
                    r["config"],
                    r["variant"],
                    f(r["train_busy_gflop_per_s"]),
                    f(r.get("train_busy_speedup_vs_ref"), 2),
                    f(r["sample_busy_s_per_step_img"]),
                    f(r.get("sample_busy_speedup_vs_ref"), 2),
                    f(r["sample_busy_s_per_step_img"] * DEFAULT_STEPS),
                ]
                for r in measured
            ],
        )
    sweeps = [r for r in rows if r.get("sample_batch_sweep")]
    if sweeps:
        batches = sorted({int(n) for r in sweeps for n in r["sample_batch_sweep"]})

        def cell(r: dict, n: int) -> str:
            key = str(n)
            return f"{f(r['sample_batch_sweep'].get(key))} ({f(r['sample_batch_sweep_busy'].get(key))})"

        text += "\n\nSampling s/step/img by batch size, wall (busy):\n\n" + common.markdown_table(
            ["config", "variant", *[f"batch {n}" for n in batches]],
            [[r["config"], r["variant"], *[cell(r, n) for n in batches]] for r in sweeps],
        )
    for r in rows:
        if "s_per_img_at_default_sampler_steps" in r:
            text += (
                f"\n\n{r['config']} ({r['variant']}): {r['s_per_img_at_default_sampler_steps']:.2f} s/img at the "
                f"default sampler's {r['default_sampler_steps']} steps ({r['default_sampler_steps_from']}), "
                f"batch {r['sample_batch']}; the issue's target is < 2 s"
            )
    compiled = [r for r in rows if r.get("compile_s") is not None]
    if compiled:
        text += "\n\nFirst call of the compiled sampler step (compile + one step): " + ", ".join(
            f"{r['config']} {r['compile_s']:.1f} s" for r in compiled
        )
    for r in rows:
        if r["config"] == "upscale":
            if "skipped" in r:
                text += f"\n\nupscale row skipped: {r['skipped']}"
            else:
                text += (
                    f"\n\nupscale: {r['variant']}: {r['upscale_wall_s']:.1f} s wall "
                    f"(≈ {r['upscale_s_at_default_steps']:.0f} s at {DEFAULT_STEPS} steps), "
                    f"others' cores {f(r['others_cores'], 2)}"
                )
    return text


# ---------------------------------------------------------------------------------------------- driver
def _positive_ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"every value must be ≥ 1, got {text!r}")
    return values


def _positive_int(text: str) -> int:
    values = _positive_ints(text)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"expected one whole number ≥ 1, got {text!r}")
    return values[0]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--configs",
        default=",".join(DEFAULT_CONFIGS),
        help=f"comma-separated configs from {', '.join(CONFIGS)}; add 'upscale' for the whole-image row",
    )
    p.add_argument("--threads", type=_positive_int, default=2, help="torch.set_num_threads")
    p.add_argument("--repeats", type=_positive_int, default=5, help="timed training steps (median reported)")
    p.add_argument("--sample-repeats", type=_positive_int, default=3, help="timed sampling runs (median reported)")
    p.add_argument("--warmup", type=_positive_int, default=2, help="untimed training steps first")
    p.add_argument("--sample-steps", type=_positive_int, default=5, help="steps of the short sampling schedule")
    p.add_argument("--sample-batch", type=_positive_int, default=None, help="sampling batch (default: the config's)")
    p.add_argument(
        "--sample-batches", type=_positive_ints, default=[], help="also time sampling at these batch sizes, e.g. 1,4,16"
    )
    p.add_argument("--upscale-steps", type=_positive_int, default=2, help="steps for the upscale row")
    p.add_argument(
        "--upscale-tile", type=_positive_int, default=None, help="tile size (output pixels) for the upscale row"
    )
    p.add_argument("--channels-last", action="store_true", help="model and inputs in channels_last (NHWC) layout")
    p.add_argument(
        "--compile",
        action="store_true",
        help="sample with the compiled refinement step, sample(compile=True) (training stays eager)",
    )
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for sampling (training stays fp32)")
    p.add_argument("--quick", action="store_true", help="1 warm-up, 2 repeats, 2 sampling steps: seconds, not figures")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONFIGS and c != "upscale"]
    if unknown or not names:
        p.error(f"unknown config(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(CONFIGS)}, upscale")
    args.config_names = names
    if args.quick:
        args.warmup, args.repeats, args.sample_repeats, args.sample_steps = 1, 2, 1, 2
        args.upscale_steps = 1
    return args


def _opts(args: argparse.Namespace) -> dict:
    return {
        "threads": args.threads,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "sample_repeats": args.sample_repeats,
        "sample_steps": args.sample_steps,
        "sample_batch": args.sample_batch,
        "sample_batches": args.sample_batches,
        "upscale_steps": args.upscale_steps,
        "upscale_tile": args.upscale_tile,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "bf16": args.bf16,
    }


def _torch_version() -> str:
    """torch's version without importing it (the parent process only starts workers)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return "unknown"


def _run_worker(name: str, opts: dict) -> dict:
    """Run one config in a fresh interpreter and read its result line."""
    env = dict(os.environ, OMP_NUM_THREADS=str(opts["threads"]), MKL_NUM_THREADS=str(opts["threads"]))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps({"name": name, "opts": opts})]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"config {name!r} failed (exit {proc.returncode}):\n{proc.stderr.strip()[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        job = json.loads(args.worker)
        fn = measure_upscale if job["name"] == "upscale" else measure
        row = fn(job["opts"]) if job["name"] == "upscale" else fn(job["name"], job["opts"])
        print(json.dumps(row))
        return 0

    opts = _opts(args)
    torch_version = _torch_version()
    cores = os.cpu_count() or 1
    load_start = os.getloadavg()
    warning = common.busy_warning(args.threads)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    rows = []
    for name in args.config_names:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        try:
            rows.append(_run_worker(name, opts))
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        busy = rows[-1].get("others_cores")
        if busy is not None and busy > 0.2:
            print(
                f"warning: other processes kept {busy:.2f} core(s) busy while {name} ran; its timings are low",
                file=sys.stderr,
            )
        if "skipped" in rows[-1]:
            print(f"note: upscale row skipped: {rows[-1]['skipped']}", file=sys.stderr)

    header = (
        f"CPU: {common.cpu_name()}, {cores} cores, torch {torch_version}, {args.threads} thread(s); "
        f"load average at start {load_start[0]:.2f} / {load_start[1]:.2f} / {load_start[2]:.2f} (1/5/15 min); "
        f"medians of {args.repeats} training steps and {args.sample_repeats} sampling runs of "
        f"{args.sample_steps} steps{' (--quick)' if args.quick else ''}"
    )
    print(header + "\n")
    print(table(rows))
    if args.json:
        result = {
            "benchmark": "cpu",
            "machine": {"cpu": common.cpu_name(), "cores": cores, "torch": torch_version},
            "options": {**opts, "quick": args.quick, "configs": args.config_names},
            "load_average_start": list(load_start),
            "busy_warning": warning,
            "flops": "FlopCounterMode, one forward; training counted as 3× forward",
            "memory": "peak RSS (resource.getrusage ru_maxrss) of a fresh process per config",
            "reference": REFERENCE,
            "configs": {n: asdict(CONFIGS[n]) for n in args.config_names if n in CONFIGS},
            "results": rows,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
