"""CPU speed of sr3-edu's training step and sampler, side by side with the reference SR3 in the same process.

Run from the repository root::

    python benchmarks/bench_cpu.py --reference-dir ../shared/reference/janspiry   # ref64, ref128, tiny, upscale
    python benchmarks/bench_cpu.py --configs ref64 --precision bf16 --channels-last --json runs/bench_ref64.json
    python benchmarks/bench_cpu.py --no-reference --configs tiny                   # sr3-edu only
    python benchmarks/bench_cpu.py --quick --configs micro   # seconds: checks the machinery, not the speed

**The reference** is Janspiry/Image-Super-Resolution-via-Iterative-Refinement (the unofficial SR3 most people use).
``--reference-dir DIR`` names a clone of it (default: ``$JANSPIRY_DIR``, else ``../shared/reference/janspiry``
beside this checkout if it exists); its code is imported from there through the developers' ``adapter.py``
(``--reference-adapter FILE``; default: the one in DIR, else the one in the default folder), never copied here.
``adapter.JanspiryAdapter`` drives the reference's U-Net and ``GaussianDiffusion`` as its own model code does.
Without a reference the script measures sr3-edu alone and says that no comparison was made: it prints no ratios,
because a ratio to figures from another run, let alone another machine, says nothing (the same two codes' ratio
moves with the CPU: AVX2 only, AVX-512, AMX-BF16).

**Side by side.** ``ref64`` has the shapes of the adapter's ``tiny16_64`` (64×64 from 16×16, base 32, mults
1-2-4-8, 1 block, attention at 8×8, batch 8) and ``ref128`` those of its ``sr3_16_128`` (128×128 from 16×16, base
64, mults 1-2-4-8-8, 2 blocks, attention at 16×16, dropout 0.2, batch 2); ``micro`` is a toy of both sides for the
tests. The script checks that the adapter's config has the same shapes before it measures. For each of these one
process builds both implementations on the same data, with the same threads, and times them in turns — sr3-edu,
reference, sr3-edu, reference, … — so that a change of load falls on both and leaves their ratio alone:

- training: sr3-edu's ``Trainer.train_step`` (the step ``Trainer.train`` runs: loss, backward, gradient clipping,
  AdamW with the warm-up schedule, EMA) built from a ``TrainConfig`` of those shapes; the reference's step as its
  ``model/model.py`` runs it (loss, sum/(b·c·h·w), backward, Adam, ``.item()``). sr3-edu enlarges x inside its
  U-Net, in the step; the reference's data loader does that, so its enlarged x is made once, outside the timing.
- sampling: ``sr3_edu.diffusion.sample`` (Algorithm 2) on the training schedule respaced to ``--sample-steps``,
  with the trainer's EMA weights; the reference's ``p_sample`` as many times (eval mode, t from T/2 down). Both are
  reported per step per image.

``tiny`` (the shipped preset) has no twin in the reference and runs sr3-edu alone; ``upscale`` times
``sr3_edu.upscale.super_resolve`` on a 256×256 image (→ 1024×1024); ``benchmarks/bench_upscale.py`` times the
whole ``upscale`` command, its memory and its tile seams.

**Variants.** By default sr3-edu runs as the trainer and the sampler do by default on this machine
(``precision="auto"``: bf16 autocast where the CPU has AVX512_BF16 or AMX, see ``sr3_edu.devices.native_bf16``;
sampling in channels_last, training in channels_last only where ``sr3_edu.devices.channels_last_training`` says it is
faster); ``--precision bf16`` or ``fp32`` forces the arithmetic (fp32 is then contiguous unless ``--channels-last``),
``--channels-last`` forces NHWC for both, ``--compile`` the compiled sampler. The reference always runs as its own
code does (fp32, contiguous): a ratio of a variant is that variant of sr3-edu against the reference as it is.
Each worker process first makes glibc's malloc keep freed memory, as sr3-edu's trainer and sampler do on a CPU
(``sr3_edu.devices.reuse_freed_memory``); the setting is per process, so the reference, timed in the same process,
runs with it too, and the ratios compare the two codes, not two allocators (``bench_step_costs.py`` times the
setting itself).

**Reading the table.** Each timing is the median of ``--repeats`` (training) or ``--sample-repeats`` (sampling)
timed turns after warm-up. FLOPs are counted by torch.utils.flop_counter.FlopCounterMode on one forward pass of
each implementation's own U-Net (a multiply-add = 2 FLOPs), and a training step is counted as 3× the forward
(FlopCounterMode gives 3.00× for these U-Nets when it counts the backward too). So "train GFLOP/s" is FLOP-normalised:
the two U-Nets are not the same size (sr3-edu's BigGAN blocks resample inside the block), and img/s alone would favour
the smaller. In the side-by-side table every ratio is a speed ratio, sr3-edu's speed ÷ the reference's (> 1: sr3-edu
is faster); for sampling that is the reference's s/step/img ÷ sr3-edu's. Peak RSS is that of a fresh process that
builds one implementation alone and runs two training steps (sr3-edu's includes its EMA copy and AdamW's moments).

**Load columns.** Other processes share this CPU, so each row says how many cores *they* took while the row was
timed ("others' cores", training/sampling; one figure for both sides, which were timed in turns) and what share of
the cores asked for each implementation actually got ("CPU share": its CPU seconds / (wall seconds × threads)).
Read rows where others took more than ~0.2 core, or the share is below ~0.9, as lower bounds of the speed; the
ratios suffer less, since both sides saw the same load. The busy-time table divides by CPU seconds instead of wall
seconds (the speed had the cores been ours alone; exact with 1 thread). On an oversubscribed CPU, 2 threads can be
far slower than 1 (each operator ends in a barrier that waits for the thread the scheduler left out), so compare
``--threads 1`` there too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (the helper beside this script)

DEFAULT_STEPS = 100
"""The default sampler's step count (the s/img column extrapolates to it)."""

NAMES = {"ours": "sr3-edu", "ref": "Janspiry"}
"""Table labels of the two implementations."""


@dataclass(frozen=True)
class BenchConfig:
    """One architecture at one size and batch, and the reference's config of the same shapes."""

    unet: dict = field(default_factory=dict)
    """UNetConfig fields that replace the preset's (TrainConfig.unet_overrides)."""
    preset: str = "tiny"
    """The U-Net preset they start from (TrainConfig.unet); its parametrisation, "v", is what sr3-edu trains."""
    size: int = 64
    """Side of the high-resolution image y (square)."""
    scale: int = 4
    """Upscaling factor: x_lr has side size/scale."""
    batch: int = 8
    """Training batch, and the default sampling batch."""
    reference: str | None = None
    """The adapter's config (adapter.CONFIGS) of the same shapes; None: no twin, sr3-edu alone."""
    reference_changes: dict = field(default_factory=dict)
    """Changes to that adapter config (``micro`` shrinks tiny16_64 to its own toy shapes)."""
    note: str = ""

    def pairs(self, generator):
        """A training batch drawn from ``generator``: (x_lr, y0), ``batch`` pairs uniform in [−1, 1], of sides
        size/scale and size (the timings depend on the shapes only; every script draws the same numbers)."""
        import torch

        h = self.size // self.scale
        x_lr = torch.rand(self.batch, 3, h, h, generator=generator) * 2 - 1
        return x_lr, torch.rand(self.batch, 3, self.size, self.size, generator=generator) * 2 - 1


CONFIGS: dict[str, BenchConfig] = {
    "ref64": BenchConfig(
        unet=dict(base_channels=32, channel_mults=(1, 2, 4, 8), num_res_blocks=1, attn_levels=(3,), dropout=0.0),
        size=64,
        scale=4,
        batch=8,
        reference="tiny16_64",
        note="the shapes of the adapter's tiny16_64",
    ),
    "ref128": BenchConfig(
        unet=dict(base_channels=64, channel_mults=(1, 2, 4, 8, 8), num_res_blocks=2, attn_levels=(3,), dropout=0.2),
        size=128,
        scale=8,
        batch=2,
        reference="sr3_16_128",
        note="the shapes of the adapter's sr3_16_128 (the reference's 16→128 config)",
    ),
    "tiny": BenchConfig(size=64, scale=4, batch=8, note="the shipped preset, 16→64; the reference has no twin"),
    "micro": BenchConfig(
        unet=dict(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attn_levels=(1,), dropout=0.0),
        size=16,
        scale=4,
        batch=2,
        reference="tiny16_64",
        # GroupNorm needs channels divisible by the groups: 8 fits the toy's 8, 16 and 24 channels
        reference_changes=dict(
            image_size=16, inner_channel=8, channel_mults=[1, 2], attn_res=[8], res_blocks=1, norm_groups=8, batch=2
        ),
        note="a toy for the test suite: checks the machinery, its speed means nothing",
    ),
}
DEFAULT_CONFIGS = ("ref64", "ref128", "tiny", "upscale")


# ---------------------------------------------------------------------------------------------- the two sides
def config_names(p, text: str, quick: bool = False) -> list[str]:
    """The configs ``text`` names (comma-separated), or ["micro"] with ``quick``; none or an unknown one is a usage
    error of the parser ``p`` (exit 2)."""
    return ["micro"] if quick else common.listed_names(p, text, CONFIGS, "config")


def default_trainer(name: str, threads: int, root: str, precision: str | None = None, **changes):
    """(sr3-edu's `Trainer` for config ``name``, its batch): the trainer's defaults (``precision`` None: "auto"), with
    the TrainConfig ``changes`` (channels_last=True, compile=True, …), on the config's pairs drawn from seed 0; its
    run folder new under ``root``. The step the benchmarks time is ``trainer.train_step(batch)``."""
    import dataclasses

    import torch

    cfg = CONFIGS[name]
    batch = cfg.pairs(torch.Generator().manual_seed(0))
    config = train_config(cfg, {"precision": precision, "channels_last": False, "threads": threads})
    return common.make_trainer(dataclasses.replace(config, **changes), *batch, root), batch


def train_config(cfg: BenchConfig, opts: dict):
    """sr3-edu's TrainConfig for ``cfg``: the trainer's defaults but for the shapes and the chosen variant."""
    common.use_repo_package()
    from sr3_edu.train import TrainConfig

    return TrainConfig(
        unet=cfg.preset,
        unet_overrides=dict(cfg.unet),
        hr_size=cfg.size,
        scale=cfg.scale,
        batch_size=cfg.batch,
        precision=opts["precision"] or "auto",
        channels_last=True if opts["channels_last"] else "auto",
        device="cpu",
        threads=opts["threads"],
        # nothing but the step itself: no sample grids, no metrics lines, no saves
        sample_every=0,
        log_every=10**9,
        save_every=0,
        sample_images=1,
    )


def _layout_name(memory_format) -> str:
    import torch

    return "channels_last" if memory_format == torch.channels_last else "contiguous"


class OurSide:
    """sr3-edu: a `Trainer` on the shared pairs; its `train_step`, and `sample` with its EMA weights."""

    def __init__(self, cfg: BenchConfig, opts: dict, x_lr, y0, root: str) -> None:
        import torch

        self.cfg, self.opts = cfg, opts
        self.trainer = common.make_trainer(train_config(cfg, opts), x_lr, y0, root)
        self.batch = (x_lr, y0)
        self.layout = self.trainer.memory_format
        self.params = sum(p.numel() for p in self.trainer.raw.parameters())
        self.gflop_fwd_per_img = common.forward_flops(self.trainer.raw, x_lr[:1], y0[:1], torch.rand(1)) / 1e9
        self.generator = torch.Generator().manual_seed(0)
        from sr3_edu.pipeline import FastNetwork

        # the EMA network on the sampler's own fast path, as super_resolve runs it (its layout rule is not the
        # trainer's: see sr3_edu.devices.channels_last_training)
        self.sampler_net = FastNetwork(self.trainer.ema, opts["precision"] or "auto", opts["channels_last"] or None)
        layouts = [_layout_name(self.layout), _layout_name(self.sampler_net.memory_format)]
        self.precisions = ("bf16" if self.trainer.amp else "fp32", self.sampler_net.precision)  # train, sample
        self.variant = f"{self.precisions[0]}, {layouts[0]}"
        if layouts[1] != layouts[0]:
            self.variant += f", sampling {layouts[1]}"
        if opts["precision"] is None and not opts["channels_last"]:
            self.variant += " (trainer and sampler defaults)"
        if opts["compile"]:
            self.variant += ", compiled sampler"

    def train_mode(self) -> None:
        pass  # the trainer's model stays in training mode and samples with its EMA copy, which stays in eval mode

    def train_step(self) -> None:
        self.trainer.train_step(self.batch)

    def prepare_sampling(self, x_lr, steps: int) -> None:
        self.x_lr = x_lr.contiguous(memory_format=self.sampler_net.memory_format)
        self.schedule = self.trainer.schedule.respace(steps)

    def sample_run(self, schedule=None) -> None:
        from sr3_edu.diffusion import sample

        sample(
            self.sampler_net,
            self.x_lr,
            self.schedule if schedule is None else schedule,
            scale=self.cfg.scale,
            generator=self.generator,
            compile=self.opts["compile"],
        )


class RefSide:
    """The reference through ``adapter.JanspiryAdapter``: its training step, and its ``p_sample`` step."""

    variant = "fp32, contiguous (as its own code runs)"
    precisions = ("fp32", "fp32")  # train, sample

    def __init__(self, module, reference: common.Reference, ref_cfg: dict, x_lr, y0, scale: int) -> None:
        from sr3_edu.images import upscale_bicubic

        self.adapter = module.JanspiryAdapter(reference.dir)
        self.adapter.build(ref_cfg)
        self.scale = scale
        # its data loader hands the step the enlarged x ("SR") with the target ("HR")
        self.x_hr, self.x_up = y0, upscale_bicubic(x_lr, scale)
        self.params = sum(p.numel() for p in self.adapter.unet.parameters())
        self.gflop_fwd_per_img = common.forward_flops(self.adapter.unet, *self.adapter.unet_inputs(1)) / 1e9

    def train_mode(self) -> None:
        self.adapter.set_mode(train=True)

    def train_step(self) -> None:
        self.adapter.train_step(self.x_hr, self.x_up)

    def prepare_sampling(self, x_lr, steps: int) -> None:
        import torch

        from sr3_edu.images import upscale_bicubic

        self.adapter.set_mode(train=False)
        self.condition = upscale_bicubic(x_lr, self.scale)
        self.y_start = torch.randn_like(self.condition)
        self.steps = steps

    def sample_run(self) -> None:
        # consecutive steps from the middle of its 2000-step chain, as the adapter's own benchmark takes them
        t, y = self.adapter.num_timesteps // 2, self.y_start
        for i in range(self.steps):
            y = self.adapter.sample_step(y, self.condition, t - i)


def _check_twin(name: str, cfg: BenchConfig, opts: dict, ref_cfg: dict) -> None:
    """Refuse to compare when the adapter's config is not of sr3-edu's shapes (the adapter may change)."""
    unet = train_config(cfg, opts).unet_config()
    ours = {
        "image_size": cfg.size,
        "inner_channel": unet.base_channels,
        "channel_mults": list(unet.channel_mults),
        "res_blocks": unet.num_res_blocks,
        "attn_res": [cfg.size >> level for level in unet.attn_levels],
        "dropout": unet.dropout,
        "batch": cfg.batch,
    }
    for key, value in ours.items():
        theirs = ref_cfg.get(key)
        if (list(theirs) if isinstance(theirs, (list, tuple)) else theirs) != value:
            raise RuntimeError(
                f"config {name}: sr3-edu's {key} is {value} but the adapter's {cfg.reference!r} has {theirs!r}; "
                "the two sides would not have the same shapes"
            )


def build_sides(name: str, opts: dict, root: str, only: str | None = None) -> tuple[dict[str, Any], Any]:
    """The implementations of config ``name`` on the same pairs, and a sampling input of the sampling batch.

    ``only``: "ours" or "ref" builds that one alone (the memory probes)."""
    import torch

    cfg = CONFIGS[name]
    gen = torch.Generator().manual_seed(0)
    h = cfg.size // cfg.scale
    x_lr, y0 = cfg.pairs(gen)
    n = opts["sample_batch"] or cfg.batch
    x_sample = torch.rand(n, 3, h, h, generator=gen) * 2 - 1
    sides: dict[str, Any] = {}
    if only in (None, "ours"):
        sides["ours"] = OurSide(cfg, opts, x_lr, y0, root)
    if only in (None, "ref") and opts["reference"] and cfg.reference:
        reference = common.Reference(**{k: Path(v) if k != "source" else v for k, v in opts["reference"].items()})
        module = common.load_adapter(reference)
        if cfg.reference not in getattr(module, "CONFIGS", {}):
            raise RuntimeError(f"{reference.adapter} has no config {cfg.reference!r} (config {name} needs it)")
        ref_cfg = {**module.CONFIGS[cfg.reference], **cfg.reference_changes}
        _check_twin(name, cfg, opts, ref_cfg)
        sides["ref"] = RefSide(module, reference, ref_cfg, x_lr, y0, cfg.scale)
    return sides, x_sample


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
        from sr3_edu.inference import DEFAULT_INFERENCE

        return int(DEFAULT_INFERENCE["steps"]), "sr3_edu.inference.DEFAULT_INFERENCE"
    except (ImportError, KeyError):
        return DEFAULT_STEPS, "the paper's 100-step budget"


def _seed_all() -> None:
    import numpy as np
    import torch

    torch.manual_seed(0)
    np.random.seed(0)  # the reference draws its training noise levels with numpy


def measure(name: str, opts: dict) -> dict:
    """Time config ``name``'s implementations in this process, in turns (the worker side of `main`)."""
    common.use_repo_package()
    import torch

    torch.set_num_threads(opts["threads"])
    _seed_all()
    total = common.OthersMeter()
    cfg = CONFIGS[name]
    threads = opts["threads"]
    with tempfile.TemporaryDirectory(prefix="bench_cpu-") as root:
        sides, x_sample = build_sides(name, opts, root)
        row: dict = {"config": name, "threads": threads, "batch": cfg.batch, "size": cfg.size, "impls": list(sides)}
        row["variant"] = sides["ours"].variant
        for key, side in sides.items():
            row[key] = {
                "impl": NAMES[key],
                "variant": side.variant,
                "params": side.params,
                "gflop_fwd_per_img": side.gflop_fwd_per_img,
                "train_precision": side.precisions[0],
                "sample_precision": side.precisions[1],
            }

        # --- training, in turns
        for side in sides.values():
            side.train_mode()
        meter = common.OthersMeter()
        timings = common.alternate({k: s.train_step for k, s in sides.items()}, opts["warmup"], opts["repeats"])
        row["others_cores_train"] = meter.cores()
        for key, (wall, cpu) in timings.items():
            r, flop_per_img = row[key], 3 * row[key]["gflop_fwd_per_img"]  # forward + backward = 3 × forward
            r["train_step_s"] = common.median(wall)
            r["train_img_per_s"] = cfg.batch / r["train_step_s"]
            r["train_gflop_per_s"] = flop_per_img * r["train_img_per_s"]
            r["train_cpu_share"] = common.cpu_share(wall, cpu, threads)
            # busy time: CPU seconds ÷ threads, the step time had the cores been ours alone
            r["train_busy_gflop_per_s"] = flop_per_img * cfg.batch / (common.median(cpu) / threads)

        # --- sampling, in turns
        steps = opts["sample_steps"]
        n = x_sample.shape[0]
        for side in sides.values():
            side.prepare_sampling(x_sample, steps)
        ours = sides["ours"]
        first, first_cpu = time.perf_counter(), time.process_time()
        # one step first: with --compile this compiles the refinement step (U-Net and update) for batch n
        ours.sample_run(ours.trainer.schedule.respace(1))
        row["compile_s"] = time.perf_counter() - first if opts["compile"] else None
        if opts["compile"]:
            row["compile_cpu_s"] = time.process_time() - first_cpu  # the compiler's worker processes are not counted
        meter = common.OthersMeter()
        timings = common.alternate({k: s.sample_run for k, s in sides.items()}, 1, opts["sample_repeats"])
        row["others_cores_sample"] = meter.cores()
        row["sample_batch"], row["sample_steps_timed"] = n, steps
        for key, (wall, cpu) in timings.items():
            r = row[key]
            r["sample_s_per_step_img"] = common.median(wall) / (steps * n)
            r["sample_cpu_share"] = common.cpu_share(wall, cpu, threads)
            r["sample_busy_s_per_step_img"] = common.median(cpu) / threads / (steps * n)
            r["s_per_img_at_default_steps"] = r["sample_s_per_step_img"] * DEFAULT_STEPS
            r["sample_gflop_per_s"] = r["gflop_fwd_per_img"] / r["sample_s_per_step_img"]

        # --- sr3-edu alone: sampling at other batch sizes
        row["sample_batch_sweep"], row["sample_batch_sweep_busy"] = {}, {}
        for m in opts["sample_batches"]:
            x = torch.rand(m, 3, cfg.size // cfg.scale, cfg.size // cfg.scale) * 2 - 1
            ours.prepare_sampling(x, 1)
            ours.sample_run()  # compiles for batch m when --compile
            ours.prepare_sampling(x, steps)
            (wall, cpu) = common.alternate({"ours": ours.sample_run}, 0, opts["sample_repeats"])["ours"]
            row["sample_batch_sweep"][str(m)] = common.median(wall) / (steps * m)
            row["sample_batch_sweep_busy"][str(m)] = common.median(cpu) / threads / (steps * m)

    # --- the machine's own ceiling, in this process after the timings: matrix products in each precision used
    used = sorted({row[k][f"{phase}_precision"] for k in sides for phase in ("train", "sample")})
    rates = {p: common.matmul_gflop_per_s(p) for p in used}
    row["matmul_gflop_per_s"] = {p: rate for p, (rate, _) in rates.items()}
    row["matmul_side"] = {p: side for p, (_, side) in rates.items()}
    for key in sides:
        r = row[key]
        for phase in ("train", "sample"):
            r[f"{phase}_matmul_share"] = r[f"{phase}_gflop_per_s"] / row["matmul_gflop_per_s"][r[f"{phase}_precision"]]

    if name == "tiny":
        n_steps, source = default_sampler_steps()
        row["default_sampler_steps"], row["default_sampler_steps_from"] = n_steps, source
        row["s_per_img_at_default_sampler_steps"] = row["ours"]["sample_s_per_step_img"] * n_steps
    if "ref" in sides:
        o, r = row["ours"], row["ref"]
        row["reference_config"] = {"name": cfg.reference, "changes": cfg.reference_changes}
        # all from this run: speeds as sr3-edu ÷ reference (> 1: sr3-edu faster), sizes as sr3-edu ÷ reference
        row["ratio"] = {
            "params": o["params"] / r["params"],
            "gflop_fwd_per_img": o["gflop_fwd_per_img"] / r["gflop_fwd_per_img"],
            "train_img_per_s": o["train_img_per_s"] / r["train_img_per_s"],
            "train_gflop_per_s": o["train_gflop_per_s"] / r["train_gflop_per_s"],
            "sample_speed": r["sample_s_per_step_img"] / o["sample_s_per_step_img"],
            "sample_gflop_per_s": o["sample_gflop_per_s"] / r["sample_gflop_per_s"],
            "train_busy_gflop_per_s": o["train_busy_gflop_per_s"] / r["train_busy_gflop_per_s"],
            "sample_busy_speed": r["sample_busy_s_per_step_img"] / o["sample_busy_s_per_step_img"],
        }
    else:
        row["no_comparison"] = (
            "the reference has no config of these shapes" if opts["reference"] else "no reference implementation"
        )
    row["peak_rss_both_mib"] = common.peak_rss_mib()
    row["others_cores"] = total.cores()
    return row


def measure_memory(name: str, impl: str, opts: dict) -> dict:
    """Peak RSS of one implementation alone in this fresh process: two training steps, then one sampling step."""
    common.use_repo_package()
    import torch

    torch.set_num_threads(opts["threads"])
    _seed_all()
    baseline = common.peak_rss_mib()
    with tempfile.TemporaryDirectory(prefix="bench_cpu-") as root:
        sides, x_sample = build_sides(name, opts, root, only=impl)
        side = sides[impl]
        side.train_mode()
        for _ in range(2):  # the first step creates the optimizer's moments; the second runs with them
            side.train_step()
        train = common.peak_rss_mib()
        side.prepare_sampling(x_sample, 1)
        side.sample_run()
    return {"rss_baseline_mib": baseline, "peak_rss_train_mib": train, "peak_rss_mib": common.peak_rss_mib()}


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
        "variant": f"tiny, 256×256 → {size}, {steps} steps, tile {opts['upscale_tile'] or 'auto (the default)'}",
        "threads": opts["threads"],
        "upscale_steps": steps,
        "upscale_wall_s": wall,
        "upscale_s_at_default_steps": wall / steps * DEFAULT_STEPS,
        "call": f"super_resolve(model, image, {', '.join(f'{k}={v!r}' for k, v in kwargs.items())})",
        "others_cores": meter.cores(),
        "peak_rss_mib": common.peak_rss_mib(),
    }


# ---------------------------------------------------------------------------------------------- the tables
TABLE_COLUMNS = [
    "config",
    "implementation",
    "variant",
    "params M",
    "fwd GFLOP/img",
    "train img/s",
    "train GFLOP/s",
    "peak RSS MiB",
    "sample s/step/img",
    "sample GFLOP/s",
    "train/sample % of matmul",
    f"s/img @{DEFAULT_STEPS} steps",
    "others' cores train/sample",
    "CPU share train/sample",
]
RATIO_COLUMNS = [
    "config",
    "variant (sr3-edu)",
    "train img/s ×ref",
    "train GFLOP/s ×ref",
    "sample speed ×ref",
    "sample GFLOP/s ×ref",
    "busy train GFLOP/s ×ref",
    "busy sample speed ×ref",
    "params ours/ref",
    "fwd GFLOP/img ours/ref",
]


def _measured(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["config"] != "upscale" and "skipped" not in r]


def _cores(value: float | None) -> str:
    # two decimals always: the ~0.2-core threshold the docstring gives must be readable in every row
    return "–" if value is None else f"{value:.2f}"


def table(rows: list[dict]) -> str:
    f = common.fmt
    out = []
    for r in _measured(rows):
        load = f"{_cores(r['others_cores_train'])}/{_cores(r['others_cores_sample'])}"
        for key in r["impls"]:
            s = r[key]
            out.append(
                [
                    r["config"],
                    s["impl"],
                    s["variant"],
                    f(s["params"] / 1e6),
                    f(s["gflop_fwd_per_img"]),
                    f(s["train_img_per_s"]),
                    f(s["train_gflop_per_s"]),
                    f(s.get("peak_rss_train_mib"), 4),
                    f(s["sample_s_per_step_img"]),
                    f(s["sample_gflop_per_s"]),
                    f"{s['train_matmul_share']:.0%}/{s['sample_matmul_share']:.0%}",
                    f(s["s_per_img_at_default_steps"]),
                    load,
                    f"{s['train_cpu_share']:.2f}/{s['sample_cpu_share']:.2f}",
                ]
            )
    text = common.markdown_table(TABLE_COLUMNS, out)
    rates = [
        f"{r['config']} "
        + ", ".join(f"{p} {v:.3g} ({r['matmul_side'][p]}²)" for p, v in r["matmul_gflop_per_s"].items())
        for r in _measured(rows)
        if r.get("matmul_gflop_per_s")
    ]
    if rates:
        text += (
            "\n\n% of matmul: GFLOP/s ÷ this CPU's rate for the product of two square matrices in the precision that "
            "side computes in, timed in the same process after each config's turns, GFLOP/s (side): "
            + "; ".join(rates)
            + ". A convolution is a matrix product underneath: this is about the most its FLOPs can run at here."
        )

    compared = [r for r in _measured(rows) if "ratio" in r]
    if compared:
        text += (
            "\n\nSide by side, from this run only (same process, turns, threads, shapes and data): sr3-edu's speed ÷ "
            "the reference's (> 1: sr3-edu faster); GFLOP/s is FLOP-normalised, each U-Net's own FLOPs; sampling "
            "is the reference's s/step/img ÷ sr3-edu's, and its GFLOP/s FLOP-normalised the same way:\n\n"
        )
        text += common.markdown_table(
            RATIO_COLUMNS,
            [
                [
                    r["config"],
                    r["variant"],
                    *(
                        f"{r['ratio'][k]:.2f}"
                        for k in (
                            "train_img_per_s",
                            "train_gflop_per_s",
                            "sample_speed",
                            "sample_gflop_per_s",
                            "train_busy_gflop_per_s",
                            "sample_busy_speed",
                            "params",
                            "gflop_fwd_per_img",
                        )
                    ),
                ]
                for r in compared
            ],
        )
    alone = [r for r in _measured(rows) if "ratio" not in r]
    if compared and alone:
        text += "\n\nsr3-edu alone (no twin in the reference): " + ", ".join(r["config"] for r in alone)

    measured = _measured(rows)
    if measured:
        text += (
            "\n\nBusy-time estimates (this process's CPU seconds ÷ threads instead of wall seconds: the speed had the "
            "cores been ours alone; exact with 1 thread, a lower bound with more, since waiting threads spin):\n\n"
        )
        text += common.markdown_table(
            ["config", "implementation", "train GFLOP/s", "sample s/step/img", f"s/img @{DEFAULT_STEPS}"],
            [
                [
                    r["config"],
                    r[k]["impl"],
                    f(r[k]["train_busy_gflop_per_s"]),
                    f(r[k]["sample_busy_s_per_step_img"]),
                    f(r[k]["sample_busy_s_per_step_img"] * DEFAULT_STEPS),
                ]
                for r in measured
                for k in r["impls"]
            ],
        )
    sweeps = [r for r in measured if r.get("sample_batch_sweep")]
    if sweeps:
        batches = sorted({int(n) for r in sweeps for n in r["sample_batch_sweep"]})

        def cell(r: dict, n: int) -> str:
            key = str(n)
            return f"{f(r['sample_batch_sweep'].get(key))} ({f(r['sample_batch_sweep_busy'].get(key))})"

        text += "\n\nSampling s/step/img by batch size, sr3-edu, wall (busy):\n\n" + common.markdown_table(
            ["config", "variant", *[f"batch {n}" for n in batches]],
            [[r["config"], r["variant"], *[cell(r, n) for n in batches]] for r in sweeps],
        )
    for r in measured:
        if "s_per_img_at_default_sampler_steps" in r:
            text += (
                f"\n\n{r['config']} ({r['variant']}): {r['s_per_img_at_default_sampler_steps']:.2f} s/img at the "
                f"default sampler's {r['default_sampler_steps']} steps ({r['default_sampler_steps_from']}), "
                f"batch {r['sample_batch']}; the issue's target is < 2 s"
            )
    compiled = [r for r in measured if r.get("compile_s") is not None]
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
    p.add_argument(
        "--reference-dir",
        default=None,
        help=f"a clone of {common.REFERENCE_REPO} to time side by side (default: ${common.REFERENCE_ENV}, else "
        f"{common.DEFAULT_REFERENCE_DIR} if it exists, else sr3-edu alone)",
    )
    p.add_argument(
        "--reference-adapter",
        default=None,
        help=f"the adapter.py that drives the reference (default: {common.ADAPTER_FILE} in the reference folder, "
        f"else in {common.DEFAULT_REFERENCE_DIR})",
    )
    p.add_argument("--no-reference", action="store_true", help="measure sr3-edu alone, even if a reference is there")
    p.add_argument("--threads", type=_positive_int, default=2, help="torch.set_num_threads")
    p.add_argument("--repeats", type=_positive_int, default=5, help="timed training steps (median reported)")
    p.add_argument("--sample-repeats", type=_positive_int, default=3, help="timed sampling runs (median reported)")
    p.add_argument("--warmup", type=_positive_int, default=2, help="untimed training steps first")
    p.add_argument("--sample-steps", type=_positive_int, default=5, help="steps of the short sampling schedule")
    p.add_argument("--sample-batch", type=_positive_int, default=None, help="sampling batch (default: the config's)")
    p.add_argument(
        "--sample-batches",
        type=_positive_ints,
        default=[],
        help="also time sr3-edu's sampling at these batch sizes, e.g. 1,4,16",
    )
    p.add_argument("--upscale-steps", type=_positive_int, default=2, help="steps for the upscale row")
    p.add_argument(
        "--upscale-tile", type=_positive_int, default=None, help="tile size (output pixels) for the upscale row"
    )
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default=None,
        help="sr3-edu's precision: bf16 forces bf16 autocast in training and sampling, fp32 plain fp32 (default: "
        "precision='auto', the trainer's and the sampler's default: bf16 where the CPU has AVX512_BF16 or AMX)",
    )
    p.add_argument(
        "--channels-last",
        action="store_true",
        help="sr3-edu in channels_last (NHWC) for training and sampling, the trainer's channels_last=True (default: "
        "the trainer's 'auto' and the sampler's own layout)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="sample with sr3-edu's compiled refinement step, sample(compile=True) (training stays eager)",
    )
    p.add_argument("--quick", action="store_true", help="1 warm-up, 2 repeats, 2 sampling steps: seconds, not figures")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONFIGS and c != "upscale"]
    if unknown or not names:
        p.error(f"unknown config(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(CONFIGS)}, upscale")
    if args.no_reference and (args.reference_dir or args.reference_adapter):
        p.error("--no-reference measures sr3-edu alone; leave out --reference-dir and --reference-adapter with it")
    args.config_names = names
    if args.quick:
        args.warmup, args.repeats, args.sample_repeats, args.sample_steps = 1, 2, 1, 2
        args.upscale_steps = 1
    return args


def _opts(args: argparse.Namespace, reference: common.Reference | None) -> dict:
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
        "precision": args.precision,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "reference": None
        if reference is None
        else {"dir": str(reference.dir), "adapter": str(reference.adapter), "source": reference.source},
    }


def _torch_version() -> str:
    """torch's version without importing it (the parent process only starts workers)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return "unknown"


def _run_worker(job: dict, threads: int) -> dict:
    """Run one job (a config's timings, one side's memory probe, the upscale row) in a fresh interpreter."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        what = " ".join(str(job[k]) for k in ("kind", "name", "impl") if k in job)
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{proc.stderr.strip()[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _worker(job: dict) -> dict:
    common.use_repo_package()
    from sr3_edu.devices import reuse_freed_memory

    # as sr3-edu's trainer and sampler set it, before either side is built: per process, so both sides run with it
    allocator = "freed memory kept" if reuse_freed_memory() else "the system's defaults"
    if job["kind"] == "upscale":
        out = measure_upscale(job["opts"])
    elif job["kind"] == "memory":
        return measure_memory(job["name"], job["impl"], job["opts"])
    else:
        out = measure(job["name"], job["opts"])
    return {**out, "allocator": allocator}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return 0

    if args.no_reference:
        reference, where = None, "--no-reference was given"
    else:
        try:
            reference, where = common.resolve_reference(args.reference_dir, args.reference_adapter)
        except common.ReferenceDirError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    opts = _opts(args, reference)
    torch_version = _torch_version()
    cores = os.cpu_count() or 1
    load_start = os.getloadavg()
    warning = common.warn_if_busy(args.threads)
    if reference is None:
        print(f"note: no comparison with the reference: {where}", file=sys.stderr)
    rows = []
    for name in args.config_names:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        try:
            if name == "upscale":
                rows.append(_run_worker({"kind": "upscale", "opts": opts}, args.threads))
            else:
                row = _run_worker({"kind": "time", "name": name, "opts": opts}, args.threads)
                for impl in row["impls"]:
                    print(f"peak memory of {name}, {NAMES[impl]} alone ...", file=sys.stderr, flush=True)
                    job = {"kind": "memory", "name": name, "impl": impl, "opts": opts}
                    row[impl].update(_run_worker(job, args.threads))
                rows.append(row)
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        busy = [rows[-1].get(k) for k in ("others_cores_train", "others_cores_sample", "others_cores")]
        busy = [b for b in busy if b is not None]
        if busy and max(busy) > 0.2:
            print(
                f"warning: other processes kept up to {max(busy):.2f} core(s) busy while {name} ran; its timings are "
                "low (its ratios less so: both sides ran in turns)",
                file=sys.stderr,
            )
        if "skipped" in rows[-1]:
            print(f"note: upscale row skipped: {rows[-1]['skipped']}", file=sys.stderr)

    commit = reference.commit() if reference else None
    print(
        f"CPU: {common.cpu_name()}; {common.cpu_flags()}; {cores} cores; torch {torch_version}; "
        f"{args.threads} thread(s)"
    )
    print(
        f"load average at start {load_start[0]:.2f} / {load_start[1]:.2f} / {load_start[2]:.2f} (1/5/15 min); "
        f"medians of {args.repeats} training steps and {args.sample_repeats} sampling runs of "
        f"{args.sample_steps} steps{' (--quick)' if args.quick else ''}"
    )
    allocators = sorted({r["allocator"] for r in rows if "allocator" in r})
    if allocators:
        print(
            f"C allocator: {', '.join(allocators)} (sr3_edu.devices.reuse_freed_memory, as sr3-edu's trainer and "
            "sampler set it; per process, so the reference timed in the same process runs with it too)"
        )
    if reference is None:
        print(f"No comparison with the reference was made: {where}. Only sr3-edu was measured; no ratios are printed.")
    else:
        print(
            f"Reference: {common.REFERENCE_REPO} at commit {commit or 'unknown'}, from {where}; timed side by side "
            "with sr3-edu in one process, in turns"
        )
    print()
    print(table(rows))
    if args.json:
        result = {
            "benchmark": "cpu",
            "machine": {
                "cpu": common.cpu_name(),
                "cpu_features": common.cpu_features(),
                "cores": cores,
                "torch": torch_version,
            },
            "options": {**opts, "quick": args.quick, "configs": args.config_names},
            "load_average_start": list(load_start),
            "busy_warning": warning,
            "reference": (
                {"dir": str(reference.dir), "adapter": str(reference.adapter), "commit": commit, "from": where}
                if reference
                else {"none": where}
            ),
            "comparison": "same process, alternating turns, same threads, shapes and data" if reference else None,
            "flops": "FlopCounterMode, one forward of each implementation's U-Net; training counted as 3× forward",
            "memory": "peak RSS (ru_maxrss) of a fresh process per config and implementation: 2 training steps",
            "configs": {n: asdict(CONFIGS[n]) for n in args.config_names if n in CONFIGS},
            "results": rows,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
