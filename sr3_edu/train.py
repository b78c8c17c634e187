"""Train SR3 (Algorithm 1) or the regression baseline: a loop that fits on one screen, checkpoints that lose nothing.

Copy-paste training (a fresh script; "builtin" trains on the photos shipped with the package, a path on a folder):

```python
from sr3_edu.data import make_dataset
from sr3_edu.train import TrainConfig, Trainer

config = TrainConfig.preset("tiny")  # every field is documented in TrainConfig
dataset = make_dataset(
    "builtin",  # or the path of a folder of photos
    hr_size=config.hr_size,
    scale=config.scale,
    seed=config.seed,
)
out_dir = "runs/my_sr3"
# Ctrl-C saves a checkpoint; run the script again with resume=True to go on from it.
with Trainer(config, out_dir, dataset=dataset, resume=False) as trainer:
    model = trainer.train()  # the EMA weights; samples/ shows progress
print(f"trained {trainer.step} steps; export with: python -m sr3_edu export --checkpoint {out_dir}/checkpoints/last.pt")
```

From the command line: ``python -m sr3_edu train --preset tiny --data builtin --out runs/tiny`` (``--help`` lists
every option). A run directory holds ``config.json``, ``metrics.jsonl`` (one JSON object per logged step),
``samples/step_XXXXXXX.png`` (a fixed validation batch: bicubic | sample | HR rows) and ``checkpoints/last.pt``.

**Resuming is exact.** Every random number of a step is drawn from generators seeded with (seed, step, rank), and
the data order is an endless stream of per-epoch permutations seeded with (seed, epoch); a checkpoint stores how far
along that stream the run is. So on the CPU a run killed at any instant and resumed with ``--resume`` produces the
same losses, bit for bit, as a run that was never interrupted, given the same number of CPU threads (on a GPU, up
to the non-determinism of its kernels).
This needs data items that are a pure function of (seed, epoch, index), as `sr3_edu.data` makes them.

**Several GPUs**: ``torchrun --nproc_per_node N -m sr3_edu train ...`` (the same options) runs DistributedDataParallel;
``batch_size`` is per process, so the global batch is N · batch_size · grad_accum. Rank 0 alone logs, samples and
saves; a checkpoint saved under torchrun resumes in a single process (the data stream goes on where it stopped).

What the paper specifies and what it does not (§4 "Training Details"): Adam, lr 1e-4 (1e-5 for the regression
baseline), a linear warm-up of 10k steps, batch 256, 1M steps, dropout 0.2 for 16→128 only. It does not mention an
exponential moving average of the weights; DDPM, which SR3 builds on, used one with decay 0.9999. This trainer keeps
one too (0.999 in the tiny preset, whose runs are short); the sample grids and exported models use the EMA weights.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import hashlib
import json
import os
import platform
import random
import shlex
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import diffusion
from .checkpoint import FORMAT, VERSION, CheckpointError, load_checkpoint, save_atomic
from .devices import resolve_device
from .files import write_atomic
from .images import to_image, upscale_bicubic
from .regression import regress, regression_loss
from .schedule import NoiseSchedule
from .unet import PARAMETRISATIONS, SR3UNet, UNetConfig
from .unet import PRESETS as UNET_PRESETS

__all__ = [
    "TrainConfig",
    "PRESETS",
    "Trainer",
    "ConfigError",
    "RunExistsError",
    "add_train_arguments",
    "run_train",
    "format_duration",
]


class ConfigError(ValueError):
    """A training option with a value that cannot work; the message names the option and the fix."""


class RunExistsError(ValueError):
    """The output folder already holds a run, and it was not asked to be resumed."""


# Domain tags for `_mix`, so the seeds of different purposes never coincide.
_INIT, _DATA, _STEP, _NOISE, _VAL = 0, 1, 2, 3, 4


def _mix(*ints: int) -> int:
    """A 63-bit seed from a few non-negative integers (SeedSequence: nearby inputs give unrelated seeds)."""
    return int(np.random.SeedSequence([int(i) for i in ints]).generate_state(1, dtype=np.uint64)[0] >> 1)


# --------------------------------------------------------------------------------------------------- configuration
@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in ``config.json`` and in every checkpoint)."""

    preset_name: str = "tiny"
    """Name of the preset this configuration started from (`PRESETS`); informational."""
    unet: str = "tiny"
    """U-Net preset (`sr3_edu.unet.PRESETS`): "tiny", "small" or "sr3_16_128"."""
    unet_overrides: dict[str, Any] = field(default_factory=dict)
    """Changes to the U-Net preset, e.g. ``{"base_channels": 16, "channel_mults": (1, 2)}`` (see `UNetConfig`)."""
    objective: str = "sr3"
    """"sr3" (predict the noise ε, Algorithm 1) or "regression" (predict y_0 from x directly, the paper's baseline)."""
    loss_p: int = 1
    """The norm of the loss ‖·‖_p^p: 1 (the paper's best models, Table 5) or 2 (DDPM's L_simple)."""
    offset_noise: float = 0.0
    """Not the paper's: add s·N(0, 1) per (image, channel) to the training noise ε ("offset noise", Guttenberg 2023;
    0.1 is the usual value); 0, the default, is Algorithm 1's i.i.d. N(0, I). Ignored by the regression objective."""
    T: int = 2000
    """Steps of the training noise schedule (the paper: T = 2000)."""
    beta_start: float = 1e-6
    """β_1 = 1 − α_1 of the linear training schedule (not in the paper; the reference code's and WaveGrad's value)."""
    beta_end: float = 1e-2
    """β_T = 1 − α_T of the linear training schedule."""
    data: str = "builtin"
    """"builtin" (photos shipped with the package, their "train" split) or a folder of images (`sr3_edu.data`)."""
    hr_size: int = 64
    """Side of the high-resolution training crops y_0."""
    scale: int = 4
    """Upscaling factor; the condition x is hr_size/scale pixels on a side."""
    batch_size: int = 16
    """Images per step *per process* (under torchrun the global batch is world_size · batch_size · grad_accum)."""
    grad_accum: int = 1
    """Micro-batches of ``batch_size`` whose gradients are summed before one optimizer step."""
    lr: float = 1e-4
    """Adam learning rate after warm-up (the paper: 1e-4 for SR3, 1e-5 for the regression baseline), then constant."""
    warmup: int = 200
    """Steps of linear learning-rate warm-up from 0 (the paper: 10,000; short runs need a short one)."""
    weight_decay: float = 0.0
    """Decoupled weight decay (AdamW); 0, the default, is the paper's plain Adam."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 turns clipping off). Not in the paper; it guards against spikes."""
    ema_decay: float = 0.999
    """θ_ema ← d·θ_ema + (1 − d)·θ after every step. The paper does not mention an EMA; DDPM used 0.9999."""
    steps: int = 20_000
    """Optimizer steps to train for (the paper: 1M at batch 256)."""
    seed: int = 0
    """Seeds everything: initial weights, data order and crops, noise levels, noise and dropout."""
    device: str = "auto"
    """"auto" (CUDA, then MPS, then CPU), "cuda", "cuda:N", "mps" or "cpu"."""
    amp: str = "auto"
    """Mixed precision: "auto" (bf16 autocast on a CUDA GPU that supports it, off elsewhere), "bf16" or "off"."""
    channels_last: str | bool = "auto"
    """NHWC memory layout, faster convolutions on GPUs: "auto" (on for CUDA), True or False."""
    compile: bool = False
    """torch.compile the U-Net (faster steps on a GPU after a minute of compiling)."""
    activation_checkpointing: bool = False
    """Recompute each U-Net stage's activations in the backward pass instead of storing them: the same gradients for
    about 30 % more compute and much less memory (a larger batch of the paper-size model on one GPU)."""
    threads: int | None = None
    """CPU threads for torch (None: torch's default, one per core)."""
    num_workers: int | None = None
    """DataLoader worker processes (None: 0 on the CPU, where workers would compete with training, 4 with CUDA)."""
    flips: bool = True
    """Random horizontal and vertical flips of the crops."""
    color_augment: bool = False
    """Random permutation of the R, G, B channels of each crop."""
    skip_bad_images: bool = False
    """Skip unreadable images in the data folder (with a warning) instead of stopping."""
    log_every: int = 50
    """Append a line to metrics.jsonl (and update the progress bar's loss) every this many steps."""
    save_every: int = 500
    """Write checkpoints/last.pt every this many steps (and always at the end, or on Ctrl-C)."""
    keep_every: int = 0
    """Also keep checkpoints/step_XXXXXXX.pt every this many steps (0: keep only last.pt)."""
    sample_every: int = 1000
    """Sample the fixed validation batch into samples/step_XXXXXXX.png every this many steps (0: never)."""
    sample_steps: int = 50
    """Refinement steps of those samples: the training schedule respaced to this many steps."""
    sample_images: int = 4
    """Images in the fixed validation batch."""
    command: str = ""
    """The command line that started the run (filled in by the command line; kept as metadata by `export`)."""

    @classmethod
    def preset(cls, name: str, **overrides) -> TrainConfig:
        """A named configuration (`PRESETS`), with any field replaced by a keyword argument."""
        if name not in PRESETS:
            raise ConfigError(f"unknown training preset {name!r}; choose one of {', '.join(PRESETS)}")
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"TrainConfig has no field {sorted(unknown)[0]!r}; see help(TrainConfig)")
        config = dataclasses.replace(PRESETS[name], **overrides)
        config.unet_overrides = dict(config.unet_overrides)
        return config.validate()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """The inverse of `asdict` (for configs read back from a checkpoint); unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def unet_config(self) -> UNetConfig:
        """The U-Net architecture this configuration asks for."""
        if self.unet not in UNET_PRESETS:
            raise ConfigError(f"unknown U-Net preset {self.unet!r}; choose one of {', '.join(UNET_PRESETS)}")
        d = UNET_PRESETS[self.unet].to_dict()
        unknown = set(self.unet_overrides) - set(d)
        if unknown:
            raise ConfigError(f"unet_overrides has unknown U-Net field {sorted(unknown)[0]!r}; fields: {', '.join(d)}")
        d.update(self.unet_overrides)
        if self.objective == "regression":
            # the baseline's output is ŷ_0 itself, taken as it comes out of the U-Net: no ε̂ to parametrise
            if self.unet_overrides.get("parametrisation", "eps") != "eps":
                raise ConfigError(
                    "the regression objective outputs y_0 directly; leave parametrisation out (it is only for sr3)"
                )
            d["parametrisation"] = "eps"
        try:
            return UNetConfig(**d)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"bad U-Net settings {self.unet_overrides}: {e}") from e

    def schedule(self) -> NoiseSchedule:
        """The training noise schedule: β linear from beta_start to beta_end over T steps."""
        return NoiseSchedule.linear(self.T, self.beta_start, self.beta_end)

    def validate(self) -> TrainConfig:
        """Raise `ConfigError` naming the first option that cannot work; return self."""

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        def integer(name: str, low: int) -> None:
            v = getattr(self, name)
            need(
                isinstance(v, int) and not isinstance(v, bool) and v >= low,
                f"{name} must be an integer ≥ {low}, got {v!r}",
            )

        need(
            self.objective in ("sr3", "regression"), f"objective must be 'sr3' or 'regression', got {self.objective!r}"
        )
        need(self.loss_p in (1, 2), f"loss_p must be 1 (L1) or 2 (L2), got {self.loss_p!r}")
        need(self.offset_noise >= 0, f"offset_noise must be ≥ 0 (0 turns it off), got {self.offset_noise!r}")
        for name in ("T", "hr_size", "scale", "batch_size", "grad_accum", "steps", "log_every", "sample_steps"):
            integer(name, 1)
        for name in ("warmup", "seed", "save_every", "keep_every", "sample_every", "sample_images"):
            integer(name, 0)
        need(self.sample_steps <= self.T, f"sample_steps ({self.sample_steps}) cannot exceed T ({self.T})")
        need(
            0 < self.beta_start <= self.beta_end < 1,
            f"need 0 < beta_start <= beta_end < 1, got {self.beta_start}, {self.beta_end}",
        )
        need(self.lr > 0, f"lr must be positive, got {self.lr!r}")
        need(self.weight_decay >= 0, f"weight_decay must be ≥ 0, got {self.weight_decay!r}")
        need(self.grad_clip >= 0, f"grad_clip must be ≥ 0 (0 turns clipping off), got {self.grad_clip!r}")
        need(0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        need(self.amp in ("auto", "bf16", "off"), f"amp must be 'auto', 'bf16' or 'off', got {self.amp!r}")
        need(
            self.channels_last in ("auto", True, False),
            f"channels_last must be 'auto', True or False, got {self.channels_last!r}",
        )
        dev = str(self.device)
        ok_dev = dev in ("auto", "cpu", "cuda", "mps") or (dev.startswith("cuda:") and dev[5:].isdigit())
        need(ok_dev, f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {self.device!r}")
        need(
            self.num_workers is None or (isinstance(self.num_workers, int) and self.num_workers >= 0),
            f"num_workers must be ≥ 0, got {self.num_workers!r}",
        )
        need(
            self.threads is None or (isinstance(self.threads, int) and self.threads >= 1),
            f"threads must be ≥ 1, got {self.threads!r}",
        )
        need(self.hr_size % self.scale == 0, f"hr_size {self.hr_size} is not divisible by scale {self.scale}")
        multiple = 2 ** (len(self.unet_config().channel_mults) - 1)
        need(
            self.hr_size % multiple == 0,
            f"hr_size {self.hr_size} must be divisible by {multiple} for the {self.unet!r} U-Net (2^(levels−1))",
        )
        return self


PRESETS: dict[str, TrainConfig] = {
    # A 3.7M-parameter U-Net on 64×64 crops from 16×16 (×4) that trains on a CPU: about 14 images/s on one core of
    # an AMD EPYC, so the 20k steps take about 6 hours. The warm-up is 200 steps instead of the paper's 10k, which
    # would be half of a CPU run; EMA 0.999 averages over the last ~1k steps.
    "tiny": TrainConfig(
        preset_name="tiny", unet="tiny", hr_size=64, scale=4, batch_size=16, lr=1e-4, warmup=200, ema_decay=0.999
    ),
    # The paper's 16→128 faces model (Table A.1: 128 channels, {1,2,4,8,8}, 3 blocks, dropout 0.2 from the U-Net
    # preset, 550M parameters), warm-up 10k and lr 1e-4 as in §4. The paper's batch is 256; 24 per process is an
    # estimate for one 80 GB GPU with bf16 autocast, not a measurement: lower --batch-size if memory runs out, and
    # use grad_accum or torchrun to reach a larger batch.
    "sr3_16_128": TrainConfig(
        preset_name="sr3_16_128",
        unet="sr3_16_128",
        hr_size=128,
        scale=8,
        batch_size=24,
        lr=1e-4,
        warmup=10_000,
        ema_decay=0.9999,
        steps=1_000_000,
        amp="auto",
        log_every=100,
        save_every=5000,
        sample_every=10_000,
    ),
}


# ------------------------------------------------------------------------------------------------------ the data
class _Stream:
    """Batches of (epoch, index) keys read from an endless stream of per-epoch permutations.

    Stream position q holds item perm_e[q mod N] of epoch e = q div N, with perm_e = randperm(N) seeded by
    (seed, e). Each micro-batch consumes world · batch positions; rank r takes its own contiguous slice of them.
    Starting at position ``start`` replays exactly the batches an uninterrupted run draws from there on, for any
    world size.
    """

    def __init__(self, n: int, seed: int, start: int, batch: int, rank: int = 0, world: int = 1):
        self.n, self.seed, self.start, self.batch, self.rank, self.world = n, seed, start, batch, rank, world
        self._epoch, self._perm = -1, None

    def permutation(self, epoch: int) -> list[int]:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(_mix(self.seed, _DATA, epoch))
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g).tolist()
        return self._perm

    def key(self, q: int) -> tuple[int, int]:
        epoch, pos = divmod(q, self.n)
        return epoch, self.permutation(epoch)[pos]

    def __iter__(self):
        q = self.start
        while True:
            first = q + self.rank * self.batch
            yield [self.key(p) for p in range(first, first + self.batch)]
            q += self.world * self.batch


class _EpochIndexed(torch.utils.data.Dataset):
    """``dataset[(epoch, index)]``: sets the epoch, then reads the item (works inside DataLoader workers too)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


def _describe_data(config: TrainConfig, dataset, user_supplied: bool) -> dict[str, Any]:
    """Where the training images came from, for the checkpoint and the exported model's metadata."""
    if user_supplied:
        return {"source": f"a {type(dataset).__name__} passed to Trainer", "split": "as given"}
    info: dict[str, Any] = {"source": config.data, "split": "train" if config.data == "builtin" else "whole folder"}
    names = getattr(dataset, "names", None)
    if names is not None:
        info["images"] = [Path(n).name for n in names]
    return info


# ---------------------------------------------------------------------------------------------------- hardware
def hardware(device: torch.device | None = None) -> dict[str, Any]:
    """What the run is on: accelerator or CPU model, torch version, CPU threads."""
    info: dict[str, Any] = {
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    if device is not None and device.type == "cuda":
        info["device"] = torch.cuda.get_device_name(device)
    elif device is not None and device.type == "mps":
        info["device"] = "Apple MPS"
    else:
        info["device"] = _cpu_model()
    return info


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} logical CPUs)"
    return (platform.processor() or platform.machine() or "unknown CPU") + f" ({os.cpu_count()} logical CPUs)"


# ----------------------------------------------------------------------------------------------------- the run
def _rng_state() -> dict[str, Any]:
    """Every global RNG state, as tensors and plain values (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    state = {
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy": {
            "kind": np_state[0],
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _unet_mismatch(have: dict, want: dict) -> list[str]:
    # a field missing from an older file has its default (e.g. parametrisation "eps")
    defaults = UNetConfig().to_dict()

    def norm(d: dict, k: str):
        v = d.get(k, defaults.get(k))
        return list(v) if isinstance(v, (list, tuple)) else v

    return [
        f"{k}: {norm(have, k)} vs {norm(want, k)}"
        for k in sorted(set(have) | set(want))
        if norm(have, k) != norm(want, k)
    ]


def _params_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class Trainer:
    """Trains ``SR3UNet`` on (x_lr, y0) pairs; see the module docstring and `TrainConfig`.

    ``dataset``: any map-style data set of ``(x_lr, y0)`` float tensors in [−1, 1], (3, h, w) and (3, h·s, w·s);
    None builds ``make_dataset(config.data, ...)``. For exact resumes its items must be a pure function of the index
    (and of the epoch given to an optional ``set_epoch``). ``resume=True`` continues from
    ``out_dir/checkpoints/last.pt``; without it, an ``out_dir`` that already holds a run is refused.
    Under torchrun (``WORLD_SIZE`` > 1) it runs DistributedDataParallel. Use it as a context manager, or call
    `close` at the end (it also shuts the process group down cleanly).
    """

    def __init__(
        self,
        config: TrainConfig,
        out_dir: str | os.PathLike,
        dataset=None,
        *,
        resume: bool = False,
        _checkpoint: dict | None = None,
    ):
        self.config = cfg = config.validate()
        self.out = Path(out_dir)
        self.ckpt_dir = self.out / "checkpoints"
        self.rank = int(os.environ.get("RANK", 0))
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.is_main = self.rank == 0
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        try:
            self.device = resolve_device(cfg.device, self.local_rank)
        except ValueError as e:
            raise ConfigError(str(e)) from e

        # Everything that can fail on bad input happens before the first file is written.
        ckpt = _checkpoint if _checkpoint is not None else (self._read_resume_checkpoint() if resume else None)
        if not resume:
            self._refuse_existing_run()
        unet_config = cfg.unet_config()
        if ckpt is not None:
            self._check_compatible(ckpt, unet_config)
        self.user_dataset = dataset is not None
        if dataset is None:
            dataset = self._make_dataset("train")
        if len(dataset) == 0:
            raise ConfigError("the training data set is empty")
        self.dataset = dataset
        self.val_batch = self._validation_batch()

        if self.world > 1:
            import torch.distributed as dist

            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.ddp = self.world > 1

        # The model, its EMA, Adam, and the warm-up: lr_t = lr · min(1, (t + 1) / warmup)
        torch.manual_seed(_mix(cfg.seed, _INIT))
        use_cl = cfg.channels_last is True or (cfg.channels_last == "auto" and self.device.type == "cuda")
        self.memory_format = torch.channels_last if use_cl else torch.contiguous_format
        self.raw = SR3UNet.from_config(unet_config).to(self.device, memory_format=self.memory_format)
        self.ema = copy.deepcopy(self.raw).eval().requires_grad_(False)
        self.raw.activation_checkpointing = bool(cfg.activation_checkpointing)  # the EMA never trains: it stays off
        fused = self.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(
            self.raw.parameters(), lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay, fused=fused
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.schedule = cfg.schedule()
        self.amp = cfg.amp == "bf16" or (
            cfg.amp == "auto" and self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        )
        self.noise_gen = torch.Generator(device=self.device if self.device.type == "cuda" else "cpu")

        self.step, self.samples_seen, self.seconds_before = 0, 0, 0.0
        self.segments: list[dict[str, Any]] = []
        if ckpt is not None:
            self._restore(ckpt)
        self._segment_start = self.seconds_before
        self.segments.append(
            {
                "command": cfg.command,
                "from_step": self.step,
                "to_step": self.step,
                "seconds": 0.0,
                "world_size": self.world,
                "hardware": hardware(self.device),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )

        self.model: torch.nn.Module = self.raw
        if cfg.compile:
            self.model = torch.compile(self.model)
        if self.ddp:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.model = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

        if self.is_main:
            (self.out / "samples").mkdir(parents=True, exist_ok=True)
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.ckpt_dir.glob("*.pt.tmp*"):  # left by a kill during a save; the .pt files are whole
                stale.unlink()
            _write_text_atomic(self.out / "config.json", json.dumps(asdict(cfg), indent=2) + "\n")
            self._truncate_metrics()
        self._seconds_at = None
        self._updating = False

    # ---------------------------------------------------------------------------------------------- the loop
    def train(self) -> SR3UNet:
        """Train until ``config.steps``; return the EMA model. Ctrl-C or SIGTERM (what schedulers send before they stop
        a job) saves ``last.pt`` (single process) first, then stops."""
        cfg = self.config
        batches = self._batches()
        bar = _progress(cfg.steps, self.step, disable=not self.is_main)
        self._seconds_at = time.perf_counter()
        t_log, images, saved_at, loss = time.perf_counter(), 0, self.step, None
        stack = contextlib.ExitStack()
        stack.enter_context(_sigterm_as_interrupt())
        try:
            while self.step < cfg.steps:
                micro = [next(batches) for _ in range(cfg.grad_accum)]  # grad_accum batches of (x_lr, y0)
                x_lr, y0 = (torch.cat(ts) for ts in zip(*micro)) if cfg.grad_accum > 1 else micro[0]
                loss, grad_norm, lr = self.train_step((x_lr, y0))
                images += self.world * x_lr.shape[0]
                bar.update(1)

                last = self.step == cfg.steps
                if self.step % cfg.log_every == 0 or last:
                    now = time.perf_counter()
                    record = self._log(self._mean_over_ranks(loss), lr, float(grad_norm), images / (now - t_log))
                    bar.set_postfix(loss=f"{record['loss']:.4f}", img_s=f"{record['images_per_s']:.1f}", refresh=False)
                    t_log, images = now, 0
                if self.is_main and cfg.sample_every and (self.step % cfg.sample_every == 0 or last):
                    self.sample_grid()
                if _every(self.step, cfg.save_every) or _every(self.step, cfg.keep_every) or last:
                    self._check_finite(loss)
                    self.save()
                    saved_at = self.step
        except KeyboardInterrupt:
            finite = loss is None or bool(torch.isfinite(loss))
            if not (self.ddp or self._updating) and self.step > saved_at and finite:
                self.save()
                print(f"\ninterrupted: saved step {self.step} to {self.ckpt_dir / 'last.pt'}", file=sys.stderr)
            raise
        finally:
            stack.close()
            bar.close()
            self.seconds_before = self.train_seconds()
            self._seconds_at = None
        self._check_replicas()
        return self.ema

    def train_step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, float]:
        """One optimizer step on ``batch`` = (x_lr, y0), ``batch_size · grad_accum`` pairs (split into ``grad_accum``
        micro-batches): Algorithm 1's loss (or the regression's), backward, gradient clipping, the optimizer and the
        warm-up, then the EMA. Returns (the loss, a 0-d tensor; the gradient norm before clipping; the lr used).
        The noise of the step depends on (seed, step, rank) only, so the same batch at the same step gives the same
        update. This is the step `train` runs and the benchmarks time."""
        cfg = self.config
        if batch[0].shape[0] % cfg.grad_accum:
            raise ValueError(
                f"a batch of {batch[0].shape[0]} pairs does not split into grad_accum = {cfg.grad_accum} equal "
                "micro-batches; give batch_size · grad_accum pairs"
            )
        self._seed_step()
        loss_sum = torch.zeros((), device=self.device)
        chunks = zip(*(t.chunk(cfg.grad_accum) for t in batch))
        for micro, (x_lr, y0) in enumerate(chunks):
            x_lr, y0 = (t.to(self.device, non_blocking=True, memory_format=self.memory_format) for t in (x_lr, y0))
            with self._no_sync(micro < cfg.grad_accum - 1), self._autocast():
                loss = self._loss(x_lr, y0) / cfg.grad_accum  # scalar, Algorithm 1 (or the L1 regression loss)
            loss.backward()
            loss_sum += loss.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.raw.parameters(), cfg.grad_clip or float("inf"))
        lr = self.optimizer.param_groups[0]["lr"]
        self._updating = True  # from here to step += 1 the weights are half-updated: no save on Ctrl-C
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._update_ema()
        self.step += 1
        self.samples_seen += self.world * batch[0].shape[0]
        self._updating = False
        return loss_sum, grad_norm, lr

    def _loss(self, x_lr: Tensor, y0: Tensor) -> Tensor:
        cfg = self.config
        if cfg.objective == "regression":
            return regression_loss(self.model, x_lr, y0, p=cfg.loss_p)
        return diffusion.loss(
            self.model, x_lr, y0, self.schedule, p=cfg.loss_p, generator=self.noise_gen, offset_noise=cfg.offset_noise
        )

    @torch.no_grad()
    def _update_ema(self) -> None:
        d = self.config.ema_decay
        for e, p in zip(self.ema.parameters(), self.raw.parameters()):
            # θ_ema ← d·θ_ema + (1 − d)·θ
            e.lerp_(p.detach(), 1 - d)
        for e, b in zip(self.ema.buffers(), self.raw.buffers()):
            e.copy_(b)

    def _lr_factor(self, step: int) -> float:
        # lr_t = lr · min(1, (t + 1) / warmup): linear warm-up, then constant (the paper)
        return min(1.0, (step + 1) / self.config.warmup) if self.config.warmup else 1.0

    def _seed_step(self) -> None:
        """Noise levels, noise and dropout of this step depend on (seed, step, rank) only: resumes are exact."""
        torch.manual_seed(_mix(self.config.seed, _STEP, self.step, self.rank))
        self.noise_gen.manual_seed(_mix(self.config.seed, _NOISE, self.step, self.rank))

    def _no_sync(self, skip: bool):
        # DDP averages gradients across processes on the last micro-batch only.
        return self.model.no_sync() if self.ddp and skip else contextlib.nullcontext()

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def _batches(self):
        cfg = self.config
        workers = cfg.num_workers if cfg.num_workers is not None else (4 if self.device.type == "cuda" else 0)
        stream = _Stream(len(self.dataset), cfg.seed, self.samples_seen, cfg.batch_size, self.rank, self.world)
        loader = torch.utils.data.DataLoader(
            _EpochIndexed(self.dataset),
            batch_sampler=stream,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            # the loader's own seed draw must not touch the global RNG
            generator=torch.Generator().manual_seed(_mix(cfg.seed, _DATA)),
        )
        return iter(loader)

    # ----------------------------------------------------------------------------------------- logging, samples
    def train_seconds(self) -> float:
        """Seconds spent training, summed over every resume of this run."""
        running = time.perf_counter() - self._seconds_at if self._seconds_at is not None else 0.0
        return self.seconds_before + running

    def _mean_over_ranks(self, value: Tensor) -> float:
        if self.ddp:
            import torch.distributed as dist

            value = value.clone()
            dist.all_reduce(value)
            value /= self.world
        return value.item()

    def _log(self, loss: float, lr: float, grad_norm: float, images_per_s: float) -> dict[str, Any]:
        record = {
            "step": self.step,
            "loss": loss,  # json writes repr(float): every bit survives
            "lr": lr,  # the learning rate this step used
            "grad_norm": grad_norm,
            "images_per_s": images_per_s,
            "wall_time": self.train_seconds(),
        }
        if self.is_main:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        return record

    @torch.no_grad()
    def sample_grid(self, path: str | os.PathLike | None = None) -> Path:
        """Super-resolve the fixed validation batch with the EMA weights; save rows bicubic | sample | HR as a PNG."""
        cfg = self.config
        x_lr, y0 = self.val_batch  # (n, 3, h, w), (n, 3, H, W)
        with self._autocast():
            if cfg.objective == "regression":
                y = regress(self.ema, x_lr.to(self.device), scale=cfg.scale)
            else:
                schedule = self.schedule.respace(cfg.sample_steps)
                g = torch.Generator().manual_seed(_mix(cfg.seed, _VAL))
                # ŷ_0 clipped: a young model's unclipped chain from pure noise can leave the image range entirely
                y = diffusion.sample(self.ema, x_lr, schedule, scale=cfg.scale, generator=g, clip_y0=True)
        rows = [upscale_bicubic(x_lr, cfg.scale), y.float().cpu(), y0]
        grid = torch.cat([torch.cat(list(r), dim=-1) for r in rows], dim=-2)  # (3, 3·H, n·W)
        path = Path(path) if path is not None else self.out / "samples" / f"step_{self.step:07d}.png"
        return write_atomic(path, lambda f: to_image(grid).save(f, format="PNG"))

    # ------------------------------------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> dict[str, Any]:
        """The training checkpoint as a plain dict (see `sr3_edu.checkpoint`); every value survives weights_only."""
        cfg = self.config
        n = len(self.dataset)
        epoch, index = divmod(self.samples_seen, n)
        self.segments[-1].update(to_step=self.step, seconds=self.train_seconds() - self._segment_start)
        return {
            "format": FORMAT,
            "version": VERSION,
            "kind": "train",
            "objective": cfg.objective,
            "scale": cfg.scale,
            "unet": self.raw.config.to_dict(),
            "model": {k: v.detach().cpu().clone() for k, v in self.raw.state_dict().items()},
            "ema": {k: v.detach().cpu().clone() for k, v in self.ema.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "samples_seen": self.samples_seen,
            "train_seconds": self.train_seconds(),
            "config": asdict(cfg),
            "data": {
                "samples_seen": self.samples_seen,
                "epoch": epoch,
                "index_in_epoch": index,
                "dataset_len": n,
                "permutation_seed": _mix(cfg.seed, _DATA, epoch),
                "order": "epoch e visits torch.randperm(dataset_len, Generator().manual_seed(permutation_seed))",
                **_describe_data(cfg, self.dataset, self.user_dataset),
            },
            "rng": _rng_state(),
            "meta": {"segments": copy.deepcopy(self.segments), "world_size": self.world},
        }

    def save(self) -> Path | None:
        """Write ``checkpoints/last.pt`` (and a kept ``step_XXXXXXX.pt`` when due). Rank 0 only."""
        if not self.is_main:
            return None
        obj = self.checkpoint()
        path = save_atomic(obj, self.ckpt_dir / "last.pt")
        if _every(self.step, self.config.keep_every):
            save_atomic(obj, self.ckpt_dir / f"step_{self.step:07d}.pt")
        return path

    def _restore(self, ckpt: dict[str, Any]) -> None:
        self.raw.load_state_dict(ckpt["model"])
        self.ema.load_state_dict(ckpt["ema"])
        fresh = [
            {k: g[k] for k in ("fused", "foreach", "capturable", "differentiable") if k in g}
            for g in self.optimizer.param_groups
        ]
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        # This run's options win over the saved ones (a different --lr or --warmup takes effect from here).
        self.scheduler.base_lrs = [self.config.lr for _ in self.optimizer.param_groups]
        for g, keep in zip(self.optimizer.param_groups, fresh):
            g.update(keep)
            g["initial_lr"] = self.config.lr
            g["lr"] = self.config.lr * self._lr_factor(self.scheduler.last_epoch)
            g["weight_decay"] = self.config.weight_decay
        self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]
        self.step = int(ckpt["step"])
        self.samples_seen = int(ckpt["samples_seen"])
        self.seconds_before = float(ckpt["train_seconds"])
        self.segments = list(ckpt.get("meta", {}).get("segments", []))
        _set_rng_state(ckpt["rng"])
        n_then = ckpt.get("data", {}).get("dataset_len")
        if n_then is not None and n_then != len(self.dataset) and self.is_main:
            warnings.warn(
                f"the data set has {len(self.dataset)} items per epoch but had {n_then} when the checkpoint was "
                f"saved: training goes on, in a different data order than an uninterrupted run",
                stacklevel=3,
            )

    def _read_resume_checkpoint(self) -> dict[str, Any]:
        path = self.ckpt_dir / "last.pt"
        if not path.is_file():
            raise CheckpointError(
                f"nothing to resume in {self.out}: {path} does not exist; leave out --resume to start a new run there"
            )
        return load_checkpoint(path, kind="train", map_location="cpu")

    def _refuse_existing_run(self) -> None:
        found = sorted(self.ckpt_dir.glob("*.pt")) if self.ckpt_dir.is_dir() else []
        found += [p for p in (self.out / "metrics.jsonl", self.out / "config.json") if p.is_file()]
        if found:
            raise RunExistsError(
                f"{self.out} already holds a training run ({found[0]} exists); use --resume (resume=True) to go on "
                f"with it, or another --out (out_dir) to start a new one. Nothing was changed"
            )

    def _check_compatible(self, ckpt: dict[str, Any], unet_config: UNetConfig) -> None:
        path = self.ckpt_dir / "last.pt"
        diff = _unet_mismatch(ckpt["unet"], unet_config.to_dict())
        if diff:
            saved = ckpt.get("config", {})
            raise CheckpointError(
                f"{path} holds a U-Net (preset {saved.get('unet', '?')!r}, "
                f"overrides {saved.get('unet_overrides', {})}) "
                f"that differs from the requested one (preset {self.config.unet!r}, overrides "
                f"{self.config.unet_overrides}) in {'; '.join(diff)} (checkpoint vs requested); resume with the "
                f"run's own settings, or start a new run with another --out"
            )
        for name, have, want in (
            ("objective", ckpt.get("objective"), self.config.objective),
            ("scale", ckpt.get("scale"), self.config.scale),
        ):
            if have != want:
                raise CheckpointError(
                    f"{path} was trained with {name} {have!r} but this run asks for {want!r}; "
                    f"resume with {name} {have!r}, or start a new run with another --out"
                )

    def _truncate_metrics(self) -> None:
        """Drop metrics.jsonl lines after the resumed step (written after the last save), so no step appears twice."""
        path = self.out / "metrics.jsonl"
        if not path.is_file():
            path.touch()
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= self.step:
                    kept.append(line + "\n")
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut short by a kill
        _write_text_atomic(path, "".join(kept))

    def _check_finite(self, loss_sum: Tensor) -> None:
        if not bool(torch.isfinite(loss_sum)):
            raise FloatingPointError(
                f"the loss became {loss_sum.item()} at step {self.step}; not saving. The last good checkpoint is "
                f"{self.ckpt_dir / 'last.pt'}: resume from it with a lower --lr or a longer --warmup"
            )

    def _check_replicas(self) -> None:
        """Under torchrun, every process must hold the same weights; rank 0 records their digests."""
        if not self.ddp:
            return
        import torch.distributed as dist

        digests: list[Any] = [None] * self.world
        dist.all_gather_object(
            digests, {"rank": self.rank, "model": _params_digest(self.raw), "ema": _params_digest(self.ema)}
        )
        if self.is_main:
            _write_text_atomic(self.out / "ddp_replicas.json", json.dumps(digests, indent=2) + "\n")
        if len({(d["model"], d["ema"]) for d in digests}) != 1:
            raise RuntimeError(f"the {self.world} processes ended with different weights: {digests}")

    # ----------------------------------------------------------------------------------------------- data set up
    def _make_dataset(self, split: str):
        from .data import make_dataset

        cfg = self.config
        train = split == "train"
        return make_dataset(
            cfg.data,
            hr_size=cfg.hr_size,
            scale=cfg.scale,
            split=split,
            seed=cfg.seed,
            flips=cfg.flips and train,
            color_augment=cfg.color_augment and train,
            skip_bad_images=cfg.skip_bad_images,
        )

    def _validation_batch(self) -> tuple[Tensor, Tensor]:
        """A fixed batch: the built-in "val" photos; for a folder or a given data set, its first items of epoch 0."""
        cfg = self.config
        source = self.dataset
        if cfg.data == "builtin" and not self.user_dataset:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                source = self._make_dataset("val")
        n = min(max(cfg.sample_images, 1), len(source))
        view = _EpochIndexed(source)
        items = [view[(0, i)] for i in range(n)]
        try:
            x_lr, y0 = (torch.stack(t) for t in zip(*items))
        except (TypeError, RuntimeError, ValueError) as e:
            raise ConfigError(f"data set items must be (x_lr, y0) tensor pairs of one size ({e})") from e
        if (
            x_lr.dim() != 4
            or y0.dim() != 4
            or y0.shape[-2:] != (x_lr.shape[-2] * cfg.scale, x_lr.shape[-1] * cfg.scale)
        ):
            raise ConfigError(
                f"data set items are x_lr {tuple(x_lr.shape[1:])} and y0 {tuple(y0.shape[1:])}, "
                f"but scale is {cfg.scale}: "
                f"y0 must be x_lr's size times the scale"
            )
        return x_lr, y0

    # ---------------------------------------------------------------------------------------------------- closing
    def close(self) -> None:
        """Drop the DDP wrapper, wait for every process, then shut the process group down."""
        if self.ddp:
            import torch.distributed as dist

            self.model = self.raw  # the DDP wrapper's communication hooks go before the group does
            if dist.is_initialized():
                dist.barrier()
                dist.destroy_process_group()
            self.ddp = False

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _every(step: int, n: int) -> bool:
    return bool(n) and step % n == 0


def _progress(total: int, initial: int, disable: bool):
    from tqdm.auto import tqdm

    # When stderr is a file (a background run), a few updates a minute are plenty.
    mininterval = 0.1 if sys.stderr.isatty() else 30.0
    return tqdm(total=total, initial=initial, disable=disable, unit="step", dynamic_ncols=True, mininterval=mininterval)


def _write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda f: f.write(text.encode()))


# ------------------------------------------------------------------------------------------------ command line
# (flag, TrainConfig field, type, help); every default comes from the preset, so the help shows the presets' values.
_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--data", "data", str, '"builtin" (the photos shipped with the package) or a folder of images'),
    ("--steps", "steps", int, "optimizer steps to train for (in all, counting those before a --resume)"),
    ("--batch-size", "batch_size", int, "images per step per process (under torchrun: per GPU)"),
    ("--grad-accum", "grad_accum", int, "micro-batches per optimizer step"),
    ("--objective", "objective", str, '"sr3" (noise prediction) or "regression" (the paper\'s baseline)'),
    ("--lr", "lr", float, "learning rate after warm-up (constant)"),
    ("--warmup", "warmup", int, "steps of linear learning-rate warm-up (the paper: 10000)"),
    ("--ema-decay", "ema_decay", float, "decay of the EMA of the weights (not in the paper; DDPM: 0.9999)"),
    ("--hr-size", "hr_size", int, "side of the high-resolution training crops"),
    ("--scale", "scale", int, "upscaling factor"),
    ("--seed", "seed", int, "seed of everything (weights, data order and crops, noise)"),
    ("--device", "device", str, '"auto", "cpu", "cuda", "cuda:N" or "mps"'),
    ("--amp", "amp", str, '"auto" (bf16 autocast on CUDA, off elsewhere), "bf16" or "off"'),
    ("--workers", "num_workers", int, "DataLoader worker processes (auto: 0 on the CPU, 4 with CUDA)"),
    ("--threads", "threads", int, "CPU threads for torch (auto: torch's default, one per core)"),
    ("--log-every", "log_every", int, "steps between lines of metrics.jsonl"),
    ("--save-every", "save_every", int, "steps between writes of checkpoints/last.pt"),
    ("--keep-every", "keep_every", int, "steps between kept checkpoints/step_XXXXXXX.pt (0: none)"),
    ("--sample-every", "sample_every", int, "steps between validation sample grids in samples/ (0: never)"),
    ("--sample-steps", "sample_steps", int, "refinement steps of those samples"),
    ("--loss-p", "loss_p", int, "1 for the L1 loss (the paper), 2 for L2 (DDPM)"),
    ("--offset-noise", "offset_noise", float, "add s·N(0,1) per image and channel to the noise ε (not the paper's)"),
]
_SWITCHES: list[tuple[str, str, str]] = [
    ("--compile", "compile", "torch.compile the U-Net"),
    ("--activation-checkpointing", "activation_checkpointing", "recompute activations in backward: less memory"),
    ("--flips", "flips", "random horizontal and vertical flips"),
    ("--color-augment", "color_augment", "random permutation of the colour channels"),
    ("--skip-bad-images", "skip_bad_images", "skip unreadable images instead of stopping"),
]


def _preset_values(name: str) -> str:
    values = {p: "auto" if getattr(c, name) is None else getattr(c, name) for p, c in PRESETS.items()}
    if len({repr(v) for v in values.values()}) == 1:
        return f"default: {next(iter(values.values()))}"
    return "default: " + ", ".join(f"{v} for {p}" for p, v in values.items())


def _choices(name: str) -> list[str] | None:
    return {"objective": ["sr3", "regression"], "amp": ["auto", "bf16", "off"], "loss_p": [1, 2]}.get(name)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sr3-edu train``; unset ones come from the preset (or, with --resume, from the run)."""
    S = argparse.SUPPRESS
    parser.add_argument(
        "--preset",
        choices=list(PRESETS),
        default=S,
        help="starting configuration: tiny (a CPU-sized U-Net, 64×64 crops from 16×16) or sr3_16_128 (the paper's "
        "16→128 U-Net, one 80 GB GPU); default: tiny, or with --resume the run's own settings",
    )
    parser.add_argument("--out", default=S, help="run folder (default: runs/PRESET)")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from checkpoints/last.pt (default: off)"
    )
    for flag, name, kind, text in _FLAGS:
        parser.add_argument(flag, type=kind, default=S, choices=_choices(name), help=f"{text} ({_preset_values(name)})")
    for flag, name, text in _SWITCHES:
        parser.add_argument(
            flag, action=argparse.BooleanOptionalAction, default=S, help=f"{text} ({_preset_values(name)})"
        )
    parser.add_argument(
        "--parametrisation",
        choices=list(PARAMETRISATIONS),
        default=S,
        help="how the U-Net's output becomes ε̂: eps (ε̂ = F, the paper), v (ε̂ = √γ·F + √(1−γ)·y_t) or mean "
        f"(see sr3_edu.unet) (default: {UNET_PRESETS['tiny'].parametrisation} in every U-Net preset)",
    )
    parser.add_argument(
        "--unet-config",
        default=S,
        metavar="JSON",
        help='changes to the preset\'s U-Net as a JSON object, e.g. \'{"base_channels": 16, "channel_mults": [1, 2]}\' '
        "(default: none)",
    )


def _command_line(given: dict[str, Any]) -> str:
    world = int(os.environ.get("WORLD_SIZE", 1))
    launcher = (
        ["torchrun", "--nproc_per_node", str(world), "-m", "sr3_edu"] if world > 1 else ["python", "-m", "sr3_edu"]
    )
    if sys.argv[1:2] == ["train"]:
        return shlex.join(launcher + sys.argv[1:])
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in given.items()]
    return shlex.join(launcher + ["train", *flags])


def run_train(args: argparse.Namespace) -> int:
    """``sr3-edu train``: build the configuration, refuse what cannot work before touching any file, train."""
    given = {
        name: getattr(args, flag[2:].replace("-", "_"))
        for flag, name, *_ in _FLAGS + _SWITCHES
        if hasattr(args, flag[2:].replace("-", "_"))
    }
    if hasattr(args, "unet_config"):
        try:
            overrides = json.loads(args.unet_config)
        except json.JSONDecodeError as e:
            raise ConfigError(f"--unet-config is not valid JSON ({e}): {args.unet_config!r}") from e
        if not isinstance(overrides, dict):
            raise ConfigError(
                f"--unet-config must be a JSON object like '{{\"base_channels\": 16}}', got {args.unet_config!r}"
            )
        given["unet_overrides"] = overrides
    preset = getattr(args, "preset", None)
    out = Path(getattr(args, "out", None) or Path("runs") / (preset or "tiny"))
    ckpt = None
    if args.resume:
        last = out / "checkpoints" / "last.pt"
        if not last.is_file():
            raise CheckpointError(
                f"nothing to resume in {out}: {last} does not exist; leave out --resume to start a new run there"
            )
        ckpt = load_checkpoint(last, kind="train", map_location="cpu")
        base = TrainConfig.preset(preset) if preset else TrainConfig.from_dict(ckpt["config"])
        if not preset and "parametrisation" not in ckpt["unet"] and "parametrisation" not in base.unet_overrides:
            # a run from before the field: its U-Net was the ε-network, whatever the presets say today
            base.unet_overrides = {**base.unet_overrides, "parametrisation": "eps"}
    else:
        base = TrainConfig.preset(preset or "tiny")
    if hasattr(args, "parametrisation"):  # one U-Net field, on top of whatever else the run changes
        overrides = given.get("unet_overrides", base.unet_overrides)
        given["unet_overrides"] = {**overrides, "parametrisation": args.parametrisation}
    config = dataclasses.replace(base, **given)
    config.command = _command_line(given)
    with Trainer(config, out, resume=args.resume, _checkpoint=ckpt) as trainer:
        trainer.train()
        if trainer.is_main:
            print(
                f"trained to step {trainer.step} in {format_duration(trainer.train_seconds())}; checkpoint "
                f"{trainer.ckpt_dir / 'last.pt'}; samples in {out / 'samples'}\n"
                f"make a model file: python -m sr3_edu export --checkpoint {trainer.ckpt_dir / 'last.pt'} "
                f"--out model.pt",
                file=sys.stderr,
            )
    return 0


def format_duration(seconds: float) -> str:
    """Seconds as "1h 02m 03s" (or "2m 03s"), as model files and the end-of-run line state a training time."""
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """While training, SIGTERM acts as Ctrl-C: the loop saves its last whole step before the process ends.
    Only the main thread can set signal handlers; elsewhere this does nothing."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
