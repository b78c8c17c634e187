"""What defines a training run: `TrainConfig` (every field documented where it is declared), its presets, its checks.

A field's docstring starts with a one-paragraph summary, which is also its ``--help`` text on the command line
(`sr3_edu.commands.train`), and goes on with the details; `field_docs` reads them back from this file.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
from dataclasses import dataclass, field
from typing import Any

from ..devices import PRECISIONS
from ..schedule import NoiseSchedule
from ..unet import PRESETS as UNET_PRESETS
from ..unet import UNetConfig

__all__ = ["TrainConfig", "PRESETS", "ConfigError", "CHOICES", "field_docs", "field_summary"]


class ConfigError(ValueError):
    """A training option with a value that cannot work; the message names the option and the fix."""


# The values a few fields accept: `validate` checks them, the command line offers them as choices.
CHOICES: dict[str, tuple[Any, ...]] = {
    "objective": ("sr3", "regression"),
    "precision": PRECISIONS,
    "loss_p": (1, 2),
}


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
    """"sr3" (noise prediction) or "regression" (the paper's baseline).

    "sr3" predicts the noise ε (Algorithm 1); "regression" predicts y_0 from x directly."""
    loss_p: int = 1
    """1 for the L1 loss (the paper), 2 for L2 (DDPM).

    The p of the loss ‖·‖_p^p: 1 for the paper's best models (Table 5), 2 for DDPM's L_simple."""
    offset_noise: float = 0.0
    """Add s·N(0,1) per image and channel to the noise ε (not the paper's).

    "Offset noise" (Guttenberg 2023; 0.1 is the usual value); 0, the default, is Algorithm 1's i.i.d. N(0, I).
    Ignored by the regression objective."""
    T: int = 2000
    """Steps of the training noise schedule (the paper: T = 2000)."""
    beta_start: float = 1e-6
    """β_1 = 1 − α_1 of the linear training schedule (not in the paper; the reference code's and WaveGrad's value)."""
    beta_end: float = 1e-2
    """β_T = 1 − α_T of the linear training schedule."""
    data: str = "builtin"
    """"builtin" (the photos shipped with the package) or a folder of images.

    Of the built-in photos, the "train" split; a folder is read by `sr3_edu.data`."""
    hr_size: int = 64
    """Side of the high-resolution training crops.

    The crops are the targets y_0 of Algorithm 1."""
    scale: int = 4
    """Upscaling factor.

    The condition x is hr_size/scale pixels on a side."""
    batch_size: int = 16
    """Images per step per process (under torchrun: per GPU).

    Under torchrun the global batch is world_size · batch_size · grad_accum."""
    grad_accum: int = 1
    """Micro-batches per optimizer step.

    The gradients of ``grad_accum`` micro-batches of ``batch_size`` are summed before one optimizer step."""
    lr: float = 1e-4
    """Learning rate after warm-up (constant).

    Adam's; the paper: 1e-4 for SR3, 1e-5 for the regression baseline."""
    warmup: int = 200
    """Steps of linear learning-rate warm-up (the paper: 10000).

    From 0; short runs need a short one."""
    weight_decay: float = 0.0
    """Decoupled weight decay (AdamW); 0, the default, is the paper's plain Adam."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 turns clipping off). Not in the paper; it guards against spikes."""
    ema_decay: float = 0.999
    """Decay of the EMA of the weights (not in the paper; DDPM: 0.9999).

    θ_ema ← d·θ_ema + (1 − d)·θ after every step."""
    steps: int = 20_000
    """Optimizer steps to train for (in all, counting those before a --resume).

    The paper: 1M at batch 256."""
    seed: int = 0
    """Seed of everything (weights, data order and crops, noise).

    That is the initial weights, the data order and crops, the noise levels γ, the noise ε and dropout."""
    device: str = "auto"
    """"auto", "cpu", "cuda", "cuda:N" or "mps".

    "auto" takes CUDA, then MPS, then the CPU."""
    precision: str = "auto"
    """"auto" (bf16 where the hardware has it natively), "fp32" or "bf16": the passes' arithmetic.

    "auto" is the machine's fast path: bf16 autocast where the hardware multiplies bf16 natively (a CUDA GPU that
    supports it; a CPU with AMX or AVX512_BF16), fp32 elsewhere, with channels_last memory where that trains faster
    (see ``channels_last``). "fp32" is plain fp32 in the default layout. The weights, the optimiser and the EMA stay
    in fp32 either way."""
    channels_last: str | bool = "auto"
    """NHWC memory layout: "auto" (on where it trains faster, unless --precision fp32), True or False.

    "auto" is on for a CUDA GPU and a CPU with AMX, off on other CPUs, whose backward convolutions are faster
    contiguous (`sr3_edu.devices.channels_last_training`)."""
    compile: bool = False
    """torch.compile the U-Net.

    Meant for a GPU, after a few minutes of compiling; on a CPU without AMX the compiled training step measured no
    faster than the eager one (``benchmarks/bench_compile.py``)."""
    activation_checkpointing: bool = False
    """Recompute activations in backward: less memory.

    Each U-Net stage's activations are recomputed in the backward pass instead of stored: the same gradients for
    about 30 % more compute and much less memory (a larger batch of the paper-size model on one GPU)."""
    threads: int | None = None
    """CPU threads for torch (auto: torch's default, one per core).

    None is auto."""
    num_workers: int | None = None
    """DataLoader worker processes (auto: 0 on the CPU, 4 with CUDA).

    None is auto; on the CPU, workers would compete with training."""
    flips: bool = True
    """Random horizontal and vertical flips.

    Of the high-resolution crop, before it is downscaled to x (`sr3_edu.data`)."""
    color_augment: bool = False
    """Random permutation of the colour channels.

    Of the R, G, B channels of each high-resolution crop, before it is downscaled to x (`sr3_edu.data`)."""
    skip_bad_images: bool = False
    """Skip unreadable images instead of stopping.

    Each image skipped in the data folder is named in a warning."""
    log_every: int = 50
    """Steps between lines of metrics.jsonl.

    Each line also updates the progress bar's loss."""
    save_every: int = 500
    """Steps between writes of checkpoints/last.pt.

    It is also written at the end, and on Ctrl-C."""
    keep_every: int = 0
    """Steps between kept checkpoints/step_XXXXXXX.pt (0: none).

    With 0 only last.pt is kept."""
    sample_every: int = 1000
    """Steps between validation sample grids in samples/ (0: never).

    Each grid, samples/step_XXXXXXX.png, super-resolves the same fixed validation batch."""
    sample_steps: int = 50
    """Refinement steps of those samples.

    The training schedule respaced to this many steps."""
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
        d = dict(d)
        if "amp" in d and "precision" not in d:  # checkpoints written before --precision said --amp auto|bf16|off
            d["precision"] = {"off": "fp32"}.get(d["amp"], d["amp"])
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

        need(self.objective in CHOICES["objective"], f"objective must be 'sr3' or 'regression', got {self.objective!r}")
        need(self.loss_p in CHOICES["loss_p"], f"loss_p must be 1 (L1) or 2 (L2), got {self.loss_p!r}")
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
        need(self.precision in PRECISIONS, f"precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")
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
        precision="auto",
        log_every=100,
        save_every=5000,
        sample_every=10_000,
    ),
}


@functools.cache
def field_docs() -> dict[str, str]:
    """Each `TrainConfig` field's docstring (the string literal under its declaration), indentation removed.

    Python keeps no such attribute docstrings at run time, so they are read from this file's source.
    """
    body = ast.parse(inspect.getsource(TrainConfig)).body[0].body
    return {
        node.target.id: inspect.cleandoc(nxt.value.value)
        for node, nxt in zip(body, body[1:])
        if isinstance(node, ast.AnnAssign)
        and isinstance(nxt, ast.Expr)
        and isinstance(nxt.value, ast.Constant)
        and isinstance(nxt.value.value, str)
    }


def field_summary(name: str) -> str:
    """The first paragraph of field ``name``'s docstring as one line, in the lower case of a ``--help`` text.

    "Steps between …" becomes "steps between …"; a leading name such as "DataLoader" or "CPU" keeps its capitals.
    """
    summary = " ".join(field_docs()[name].split("\n\n")[0].split()).removesuffix(".")
    first_word = summary.split(" ", 1)[0]
    if first_word[:1].isupper() and first_word[1:].islower():
        summary = summary[0].lower() + summary[1:]
    return summary
