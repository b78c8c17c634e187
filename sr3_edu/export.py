"""Export: a training checkpoint's EMA weights as a small model file (`sr3_edu.checkpoint.model_file`), with the
default sampler settings `upscale`, `evaluate` and `demo` use and a record of how the model was trained."""

from __future__ import annotations

import os
from pathlib import Path

from .checkpoint import CheckpointError, load_checkpoint, model_file, save_atomic
from .train import ConfigError, TrainConfig, format_duration
from .unet import SR3UNet

__all__ = ["export"]


def export(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    half: bool = True,
    steps: int = 100,
    variance: str = "paper",
    start: str = "noise",
    gamma_start: float = 0.2,
    clip_y0: bool = False,
    betas: tuple[float, float] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a model file (`sr3_edu.checkpoint.model_file`) from a training checkpoint's EMA weights.

    ``steps``, ``variance``, ``start``, ``gamma_start`` and ``clip_y0`` are the default inference settings stored
    with it (see `sr3_edu.upscale.super_resolve`): the training schedule respaced to ``steps`` (the paper's budget
    is at most 100), the sampler's σ_t² ("paper": 1 − α_t), where the chain starts ("noise": the paper's
    Algorithm 2; "bicubic": part-way at γ_start) and whether ŷ_0 is clipped inside each step. ``betas`` = (β_1, β_n)
    stores a linear β schedule of ``steps`` steps in place of the training schedule respaced (from noise only).
    ``sr3-edu search`` prints the flags of the best schedule on the validation photos.
    The metadata records the training command(s), steps, training time, hardware and data.
    """
    checkpoint, out = Path(checkpoint), Path(out)
    _check_sampler(variance, start, gamma_start, betas)
    ckpt = load_checkpoint(checkpoint, kind="train", map_location="cpu")
    config = TrainConfig.from_dict(ckpt.get("config", {}))
    if steps < 1 or (betas is None and steps > config.T):
        raise ConfigError(f"--steps must be between 1 and the training schedule's T = {config.T}, got {steps}")
    if out.exists() and out.resolve() == checkpoint.resolve():
        raise ConfigError(f"--out {out} is the checkpoint itself; choose another file name")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already exists; pass --force to replace it, or choose another --out")
    model = SR3UNet.from_config(ckpt["unet"])
    try:
        model.load_state_dict(ckpt["ema"])
    except RuntimeError as e:
        raise CheckpointError(
            f"{checkpoint}: the EMA weights do not fit the U-Net config stored with them ({e})"
        ) from e
    meta = _meta(ckpt, config, checkpoint)
    inference = {
        "steps": int(steps),
        "variance": variance,
        "start": start,
        "gamma_start": float(gamma_start),
        "clip_y0": bool(clip_y0),
        "betas": None if betas is None else [float(b) for b in betas],
        "schedule": config.schedule().to_dict(),
    }
    obj = model_file(model, objective=ckpt["objective"], scale=ckpt["scale"], inference=inference, meta=meta, half=half)
    return save_atomic(obj, out)


def _check_sampler(variance: str, start: str, gamma_start: float, betas) -> None:
    """Refuse default sampler settings that `super_resolve` would refuse later, when the file is used."""
    if variance not in ("paper", "posterior"):
        raise ConfigError(f"variance must be 'paper' or 'posterior', got {variance!r}")
    if start not in ("noise", "bicubic"):
        raise ConfigError(f"start must be 'noise' or 'bicubic', got {start!r}")
    if not 0 < gamma_start < 1:
        raise ConfigError(f"gamma_start is a noise level γ in (0, 1), got {gamma_start}")
    if betas is not None:
        if len(betas) != 2 or not 0 < betas[0] <= betas[1] < 1:
            raise ConfigError(f"--betas are β_1 and β_n of a linear schedule, 0 < β_1 ≤ β_n < 1; got {list(betas)}")
        if start != "noise":
            raise ConfigError("--betas (a linear β schedule) runs from pure noise; it needs --start noise")


def _meta(ckpt: dict, config: TrainConfig, checkpoint: Path) -> dict:
    """How the model was made, from the checkpoint: the training command(s), steps, time, hardware, data."""
    segments = ckpt.get("meta", {}).get("segments", [])
    return {
        "command": segments[0]["command"] if segments else config.command,
        "commands": [s["command"] for s in segments],
        "steps": int(ckpt["step"]),
        "images_seen": int(ckpt.get("samples_seen", 0)),
        "train_seconds": float(ckpt["train_seconds"]),
        "wall_time": format_duration(float(ckpt["train_seconds"])),
        "hardware": [
            dict(s["hardware"], world_size=s.get("world_size", 1), steps=[s["from_step"], s["to_step"]])
            for s in segments
        ],
        "data": {k: v for k, v in ckpt.get("data", {}).items() if k in ("source", "split", "images")},
        "seed": config.seed,
        "preset": config.preset_name,
        "config": ckpt.get("config", {}),
        "exported_from": str(checkpoint),
    }
