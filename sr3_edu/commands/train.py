"""``sr3-edu train``: the options, built from `TrainConfig` itself, and the command that runs them.

Each flag of a config field takes its help text from the first paragraph of the field's docstring and its type and
choices from the field, so an option is described in one place. Every default comes from the presets, so ``--help``
shows each preset's value.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import shlex
import sys
import typing
from pathlib import Path
from typing import Any

from ..train.config import CHOICES, PRESETS, ConfigError, TrainConfig, field_summary
from ..train.distributed import process_ranks
from ..train.provenance import format_duration
from ..train.state import load_resume_checkpoint
from ..train.trainer import Trainer
from ..unet import PARAMETRISATIONS
from ..unet import PRESETS as UNET_PRESETS

__all__ = ["add_arguments", "run", "FLAG_FIELDS", "flag_of"]

# The TrainConfig fields that have a flag, in the order --help lists them (switches, the bool fields, last).
FLAG_FIELDS: tuple[str, ...] = (
    "data", "steps", "batch_size", "grad_accum", "objective", "lr", "warmup", "ema_decay", "hr_size", "scale",
    "seed", "device", "precision", "num_workers", "threads", "log_every", "save_every", "keep_every", "sample_every",
    "sample_steps", "loss_p", "offset_noise",
    "compile", "activation_checkpointing", "flips", "color_augment", "skip_bad_images",
)  # fmt: skip
# Flags not spelled --field-name.
_FLAG_NAMES = {"num_workers": "--workers"}


def flag_of(name: str) -> str:
    """The command-line flag of TrainConfig field ``name``: ``--batch-size`` for ``batch_size``."""
    return _FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


@functools.cache
def _field_types() -> dict[str, Any]:
    """Each field's type, None taken out of an optional one (``int | None`` → int: "auto" is leaving it unset)."""
    hints = typing.get_type_hints(TrainConfig)
    return {
        name: next(t for t in typing.get_args(hint) or (hint,) if t is not type(None)) for name, hint in hints.items()
    }


def _preset_values(name: str) -> str:
    values = {p: "auto" if getattr(c, name) is None else getattr(c, name) for p, c in PRESETS.items()}
    if len({repr(v) for v in values.values()}) == 1:
        return f"default: {next(iter(values.values()))}"
    return "default: " + ", ".join(f"{v} for {p}" for p, v in values.items())


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
    for name in FLAG_FIELDS:
        kind = _field_types()[name]
        # argparse expands %-formats in help texts: a literal % must be doubled
        text = f"{field_summary(name)} ({_preset_values(name)})".replace("%", "%%")
        if kind is bool:
            parser.add_argument(flag_of(name), action=argparse.BooleanOptionalAction, default=S, help=text)
        else:
            choices = list(CHOICES[name]) if name in CHOICES else None
            parser.add_argument(flag_of(name), type=kind, default=S, choices=choices, help=text)
    # --precision's name until it replaced --amp {auto,bf16,off}: the commands recorded in older model files still run
    parser.add_argument(
        "--amp", dest="precision", type=_amp_as_precision, choices=CHOICES["precision"], default=S, help=S
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


def _amp_as_precision(value: str) -> str:
    return {"off": "fp32"}.get(value, value)


def _given_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields set on the command line (flags left out are absent from ``args``)."""
    given = {}
    for name in FLAG_FIELDS:
        dest = flag_of(name)[2:].replace("-", "_")
        if hasattr(args, dest):
            given[name] = getattr(args, dest)
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
    return given


def _command_line(given: dict[str, Any]) -> str:
    _, world, _ = process_ranks()
    launcher = (
        ["torchrun", "--nproc_per_node", str(world), "-m", "sr3_edu"] if world > 1 else ["python", "-m", "sr3_edu"]
    )
    if sys.argv[1:2] == ["train"]:
        return shlex.join(launcher + sys.argv[1:])
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in given.items()]
    return shlex.join(launcher + ["train", *flags])


def run(args: argparse.Namespace) -> int:
    """``sr3-edu train``: build the configuration, refuse what cannot work before touching any file, train."""
    given = _given_fields(args)
    preset = getattr(args, "preset", None)
    out = Path(getattr(args, "out", None) or Path("runs") / (preset or "tiny"))
    ckpt = None
    if args.resume:
        ckpt, _ = load_resume_checkpoint(out)
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
    trainer = Trainer.resume(config, out, checkpoint=ckpt) if ckpt is not None else Trainer(config, out)
    with trainer:
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
