"""GPU speed of the paper's 16→128 U-Net: training throughput and MFU, eager fp32 against the fast path, sampling.

Run on a machine with an NVIDIA GPU (``benchmarks/gpu_check.sh`` runs it after the unit tests)::

    python benchmarks/bench_gpu.py --json runs/bench_gpu.json

Phases, each written to the JSON as soon as it ends (so a timeout keeps what was measured):

Every training phase times sr3-edu's own step, ``Trainer.train_step`` (Algorithm 1's loss, backward, gradient
clipping, AdamW, fused on CUDA, with the warm-up schedule, then the EMA), of a ``Trainer`` built from a
``TrainConfig`` of the preset and sizes, on a batch already on the device:

1. **fit** — the largest batch from ``--batches`` whose fast-path training step runs without running out of memory
   (eager bf16, channels_last; a compiled step needs no more memory than this);
2. **fast** — the trainer with ``compile=True``, ``precision="bf16"``, ``channels_last=True`` at that batch: img/s,
   achieved TFLOP/s and MFU = achieved / the GPU's dense bf16 peak (H100 SXM and H200: 989 TFLOP/s);
3. **eager_fp32** — the trainer with ``precision="fp32"`` (contiguous, eager), same card and batch (halved until it
   fits): the speed-up of phase 2;
4. **sample** — Algorithm 2 for ``--sample-steps`` (100) steps on ``--sample-batch`` (64) 16×16 inputs → 128×128,
   bf16 autocast, channels_last: the eager loop (timed on 10 steps) against ``sample(compile=True)``, whose step
   is one compiled graph replayed as a CUDA graph with no host synchronisation (when the time budget allows).

FLOPs: FlopCounterMode on one forward (multiply-add = 2), a training step = 3× forward (FlopCounterMode gives
3.00× for this U-Net when it counts the backward too). ``--device cpu`` runs the same code on the CPU with a
small ``--preset`` to check the script on a machine without a GPU; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (the helper beside this script)

NO_CUDA_EXIT = 3
"""Exit status when no CUDA device is there (distinct from a failure of the benchmark itself)."""

# Dense bf16 tensor-core peaks (no sparsity), by a substring of torch.cuda.get_device_name(); first match wins.
BF16_PEAK_TFLOPS = [
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM ("NVIDIA H100 80GB HBM3")
    ("H200", 989.0),
    ("GH200", 989.0),
    ("A100", 312.0),
]


def bf16_peak_tflops(name: str) -> float | None:
    for key, peak in BF16_PEAK_TFLOPS:
        if key in name:
            return peak
    return None


class Budget:
    """Wall-clock budget: optional phases are skipped rather than cut off by the caller's timeout."""

    def __init__(self, seconds: float):
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()


def _is_oom(e: BaseException) -> bool:
    import torch

    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


def _free(device) -> None:
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def make_trainer(
    preset: str, device, batch: int, *, fast: bool, compile_model: bool, size: int, scale: int, root: str
) -> Callable[[], object]:
    """sr3-edu's own training step, `Trainer.train_step`, on random data of ``batch`` images.

    The trainer's step rather than one rebuilt here: what is timed is what trains (Algorithm 1's loss, backward,
    gradient clipping, AdamW (fused on CUDA) with the warm-up schedule, the EMA). ``fast``: bf16 autocast and
    channels_last (``precision="bf16"``, ``channels_last=True``); else fp32 and contiguous. The batch is already on the
    device, so the host-to-device copy of the loader's batches (overlapped in training) is not timed.
    """
    import torch

    from sr3_edu.train import TrainConfig

    config = TrainConfig(
        unet=preset,
        hr_size=size,
        scale=scale,
        batch_size=batch,
        device=str(device),
        precision="bf16" if fast else "fp32",
        channels_last=fast,
        compile=compile_model,
        # nothing but the step itself: no sample grids, no metrics lines, no saves
        sample_every=0,
        log_every=10**9,
        save_every=0,
        sample_images=1,
    )
    gen = torch.Generator().manual_seed(0)
    x_lr = torch.rand(batch, 3, size // scale, size // scale, generator=gen) * 2 - 1
    y0 = torch.rand(batch, 3, size, size, generator=gen) * 2 - 1
    trainer = common.make_trainer(config, x_lr, y0, root)
    on_device = (x_lr.to(trainer.device), y0.to(trainer.device))

    def step() -> object:
        return trainer.train_step(on_device)

    return step


def time_steps(step, device, warmup: int, steps: int) -> tuple[float, float]:
    """(seconds of the first warm-up step, median seconds per timed step)."""
    t0 = time.perf_counter()
    step()
    _sync(device)
    first = time.perf_counter() - t0
    for _ in range(warmup - 1):
        step()
    _sync(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return first, common.median(times)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--device", default="cuda", help="cuda, or cpu to check the script itself with a small preset")
    p.add_argument("--preset", default="sr3_16_128", help="SR3UNet preset to measure")
    p.add_argument("--size", type=int, default=128, help="side of the high-resolution image")
    p.add_argument("--scale", type=int, default=8, help="upscaling factor (16→128 is 8)")
    p.add_argument("--batches", default="128,96,64,48,32,16,8", help="training batches to try, largest first")
    p.add_argument("--train-steps", type=int, default=10, help="timed training steps per path (median reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (the first one compiles)")
    p.add_argument("--sample-batch", type=int, default=64)
    p.add_argument("--sample-steps", type=int, default=100)
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (fast path = eager bf16)")
    p.add_argument("--budget", type=float, default=300.0, help="seconds; later phases are skipped past it")
    p.add_argument("--json", type=Path, default=None, help="write the results here (after every phase)")
    args = p.parse_args(argv)
    try:
        args.batch_list = sorted({int(b) for b in args.batches.split(",") if b.strip()}, reverse=True)
    except ValueError:
        p.error(f"--batches must be comma-separated whole numbers, got {args.batches!r}")
    if not args.batch_list or min(args.batch_list) < 1:
        p.error(f"--batches needs at least one batch ≥ 1, got {args.batches!r}")
    if args.size % args.scale:
        p.error(f"--size {args.size} must be divisible by --scale {args.scale}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            f"bench_gpu: no CUDA device: torch.cuda.is_available() is False (torch {torch.__version__}, "
            f"built for CUDA {torch.version.cuda or 'none: a CPU-only build'}). This benchmark needs an NVIDIA "
            f"GPU; on a CPU use benchmarks/bench_cpu.py, or pass --device cpu to check this script itself.",
            file=sys.stderr,
        )
        return NO_CUDA_EXIT
    # each Trainer writes a run folder (config.json, empty checkpoints/ and samples/) when it starts
    with tempfile.TemporaryDirectory(prefix="bench_gpu-") as root:
        return run(args, root)


def run(args: argparse.Namespace, root: str) -> int:
    """The four phases (see the module docstring), the trainers' run folders under ``root``."""
    import torch

    common.use_repo_package()
    from sr3_edu.diffusion import sample
    from sr3_edu.schedule import NoiseSchedule
    from sr3_edu.unet import SR3UNet

    budget = Budget(args.budget)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else common.cpu_name()
    peak = bf16_peak_tflops(name) if device.type == "cuda" else None
    torch.backends.cuda.matmul.allow_tf32 = False  # "fp32" means fp32 for matmuls; cuDNN convs keep torch's default
    result: dict = {
        "benchmark": "gpu",
        "device": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "bf16_peak_tflops": peak,
        "preset": args.preset,
        "size": args.size,
        "scale": args.scale,
        "fp32_note": "eager fp32: TF32 off for matmuls, cuDNN's default (TF32 allowed) for convolutions",
        "phases": {},
    }

    def save() -> None:
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2) + "\n")

    def say(text: str) -> None:
        print(f"[{args.budget - budget.left():6.1f} s] {text}", flush=True)

    torch.manual_seed(0)
    probe = SR3UNet.from_preset(args.preset).to(device)
    x1 = torch.rand(1, 3, args.size // args.scale, args.size // args.scale, device=device)
    y1 = torch.rand(1, 3, args.size, args.size, device=device)
    gflop = common.forward_flops(probe, x1, y1, torch.rand(1, device=device)) / 1e9
    result["params"] = sum(p.numel() for p in probe.parameters())
    result["gflop_fwd_per_img"] = gflop
    del probe, x1, y1
    _free(device)
    say(f"{name}: {args.preset}, {result['params'] / 1e6:.1f}M params, {gflop:.1f} GFLOP/img forward")
    save()

    def model_fn():
        torch.manual_seed(0)
        return SR3UNet.from_preset(args.preset)

    def throughput(batch: int, seconds: float, first: float) -> dict:
        img_s = batch / seconds
        tflops = 3 * gflop * img_s / 1e3
        return {
            "batch": batch,
            "step_s": seconds,
            "first_step_s": first,
            "img_per_s": img_s,
            "train_tflop_per_s": tflops,
            "mfu": tflops / peak if peak else None,
        }

    # 1. fit: the largest batch whose eager bf16 channels_last step fits
    fit: dict = {"tried": {}}
    best = None
    for b in args.batch_list:
        try:
            step = make_trainer(
                args.preset, device, b, fast=True, compile_model=False, size=args.size, scale=args.scale, root=root
            )
            step()
            step()
            _sync(device)
            fit["tried"][str(b)] = "fits"
            peak_mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
            fit["peak_gib"] = peak_mem
            best = b
        except Exception as e:  # noqa: BLE001  (only out-of-memory is expected; anything else is re-raised)
            if not _is_oom(e):
                raise
            fit["tried"][str(b)] = "out of memory"
        finally:
            step = None
            _free(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
        if best is not None:
            break
    if best is None:
        say(f"no batch in {args.batch_list} fits in memory")
        result["phases"]["fit"] = fit
        save()
        return 1
    fit["batch"] = best
    result["phases"]["fit"] = fit
    say(f"fit: batch {best} ({fit['tried']})")
    save()

    # 2. fast path: the trainer compiled, bf16, channels_last
    # compiling forward + backward of the big U-Net takes a minute or two; without that much time left, stay eager
    compile_train = not args.no_compile and budget.left() > 150
    step = make_trainer(
        args.preset, device, best, fast=True, compile_model=compile_train, size=args.size, scale=args.scale, root=root
    )
    first, sec = time_steps(step, device, args.warmup, args.train_steps)
    fast = throughput(best, sec, first)
    fast["path"] = (
        "Trainer.train_step: bf16 autocast, channels_last, AdamW"
        + (" (fused)" if device.type == "cuda" else "")
        + (", torch.compile" if compile_train else ", eager")
    )
    result["phases"]["fast"] = fast
    step = None
    _free(device)
    say(
        f"fast: {fast['img_per_s']:.1f} img/s, {fast['train_tflop_per_s']:.1f} TFLOP/s, "
        f"MFU {common.fmt(fast['mfu'], 3)} (first step {first:.1f} s)"
    )
    save()

    # 3. eager fp32 at the same batch, halved until it fits
    if budget.left() > 30:
        b = best
        while b >= 1:
            try:
                step = make_trainer(
                    args.preset, device, b, fast=False, compile_model=False, size=args.size, scale=args.scale, root=root
                )
                first, sec = time_steps(step, device, 2, max(1, args.train_steps // 2))
                break
            except Exception as e:  # noqa: BLE001
                if not _is_oom(e):
                    raise
                b //= 2
            finally:
                step = None
                _free(device)
        if b >= 1:
            eager = throughput(b, sec, first)
            eager["path"] = (
                "Trainer.train_step: fp32, contiguous, AdamW"
                + (" (fused)" if device.type == "cuda" else "")
                + ", eager"
            )
            eager["fast_speedup_per_img"] = fast["img_per_s"] / eager["img_per_s"]
            result["phases"]["eager_fp32"] = eager
            say(
                f"eager fp32: batch {b}, {eager['img_per_s']:.1f} img/s, {eager['train_tflop_per_s']:.1f} TFLOP/s; "
                f"fast path ×{eager['fast_speedup_per_img']:.2f}"
            )
        else:
            result["phases"]["eager_fp32"] = {"skipped": "even batch 1 runs out of memory in fp32"}
    else:
        result["phases"]["eager_fp32"] = {"skipped": "time budget spent"}
        say("eager fp32 skipped: time budget spent")
    save()

    # 4. sampling: 100 steps of a batch of 16×16 → 128×128, the eager loop against the compiled one
    if budget.left() > 20:
        model = model_fn().to(device=device, memory_format=torch.channels_last).eval()
        n, steps = args.sample_batch, args.sample_steps
        schedule = NoiseSchedule.linear(2000).respace(steps)
        x = torch.rand(n, 3, args.size // args.scale, args.size // args.scale, device=device) * 2 - 1

        def run_sampler(sched, compile_loop: bool) -> tuple[float, torch.Tensor]:
            gen = torch.Generator(device=device).manual_seed(0)
            _sync(device)
            t0 = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16):
                out = sample(model, x, sched, scale=args.scale, generator=gen, compile=compile_loop)
            _sync(device)
            return time.perf_counter() - t0, out

        # eager: a short chain after one warm-up step, per step (the loop does the same work every step)
        eager_steps = min(steps, 10)
        run_sampler(NoiseSchedule.linear(2000).respace(1), False)
        eager_wall, out = run_sampler(NoiseSchedule.linear(2000).respace(eager_steps), False)
        eager_s_per_step = eager_wall / eager_steps
        samp = {
            "batch": n,
            "steps": steps,
            "eager": {
                "path": "bf16 autocast, channels_last, eager loop",
                "timed_steps": eager_steps,
                "s_per_step": eager_s_per_step,
                "s_per_img_at_steps": eager_s_per_step * steps / n,
                "fwd_tflop_per_s": gflop * n / eager_s_per_step / 1e3,
            },
        }
        say(f"sample eager: {eager_s_per_step * 1e3:.1f} ms/step for {n} images")
        wall = eager_s_per_step * steps
        compile_sample = not args.no_compile and budget.left() > 120
        if compile_sample:
            # the first call compiles the step and records its CUDA graph; the table of step numbers is an input,
            # so the 100-step chain reuses the graph a 2-step chain made
            first, _ = run_sampler(NoiseSchedule.linear(2000).respace(2), True)
            wall, out = run_sampler(schedule, True)
            samp["compiled"] = {
                "path": "bf16 autocast, channels_last, torch.compile'd step"
                + (" replayed as a CUDA graph" if device.type == "cuda" else ""),
                "first_call_s": first,
                "s_per_step": wall / steps,
                "s_per_img_at_steps": wall / n,
                "fwd_tflop_per_s": gflop * n * steps / wall / 1e3,
                "speedup_over_eager": eager_s_per_step * steps / wall,
            }
            say(
                f"sample compiled: {wall / steps * 1e3:.1f} ms/step, ×{samp['compiled']['speedup_over_eager']:.2f} "
                f"over eager (first call {first:.1f} s)"
            )
        else:
            samp["compiled"] = {"skipped": "--no-compile" if args.no_compile else "time budget spent"}
        finite = bool(torch.isfinite(out).all())
        samp.update(
            path=samp["compiled"].get("path", samp["eager"]["path"]),
            wall_s=wall,
            s_per_img=wall / n,
            s_per_step=wall / steps,
            fwd_tflop_per_s=gflop * n * steps / wall / 1e3,
            output_finite=finite,
        )
        result["phases"]["sample"] = samp
        say(
            f"sample: {n} images × {steps} steps in {wall:.1f} s ({samp['s_per_img']:.3f} s/img, "
            f"{samp['fwd_tflop_per_s']:.1f} TFLOP/s, {samp['path']})"
        )
        if not finite:
            say("sample: the output holds NaN or inf")
            save()
            return 1
    else:
        result["phases"]["sample"] = {"skipped": "time budget spent"}
        say("sampling skipped: time budget spent")
    save()

    rows = [
        ["fast", result["phases"]["fast"]],
        ["eager fp32", result["phases"].get("eager_fp32", {})],
    ]
    print(
        "\n"
        + common.markdown_table(
            ["path", "batch", "img/s", "train TFLOP/s", "MFU", "first step s"],
            [
                [
                    label,
                    str(r.get("batch", "–")),
                    common.fmt(r.get("img_per_s")),
                    common.fmt(r.get("train_tflop_per_s")),
                    common.fmt(r.get("mfu")),
                    common.fmt(r.get("first_step_s")),
                ]
                for label, r in rows
            ],
        )
    )
    if args.json:
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
