"""Checkpoints that survive a crash, and the small model files that ship with the package.

Two kinds of file, both plain dicts of tensors and Python primitives, loaded only with
``torch.load(weights_only=True)`` — a file that carries pickled objects (code) is refused, never run:

* a **training checkpoint** (``kind="train"``): model, EMA, optimizer, scheduler, step, config and every RNG state;
  written atomically (temp file → fsync → rename) so a kill at any instant leaves the last good file readable;
* a **model file** (``kind="model"``): the EMA weights (fp16 is fine), the U-Net config, the objective, the scale,
  the default inference options and free-form metadata (command, steps, wall time, hardware).
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from .files import write_atomic
from .unet import SR3UNet

__all__ = [
    "FORMAT",
    "CheckpointError",
    "save_atomic",
    "load_checkpoint",
    "model_file",
    "ModelInfo",
    "load_model",
    "shipped_model_path",
]

FORMAT = "sr3-edu"
VERSION = 1
WEIGHTS_DIR = Path(__file__).parent / "weights"
SHIPPED = {"sr3": "sr3_tiny_x4.pt", "regression": "regression_tiny_x4.pt"}


class CheckpointError(ValueError):
    """A checkpoint or model file that cannot be used, with the reason and what to do."""


def save_atomic(obj: dict[str, Any], path: str | Path) -> Path:
    """torch.save to a temporary file beside ``path``, fsync it, then rename over ``path``.

    rename is atomic on POSIX, so readers (and a process killed mid-write) see either the old file or the new
    one, never a torn one.
    """
    return write_atomic(path, lambda f: torch.save(obj, f), durable=True)


def load_checkpoint(path: str | Path, kind: str | None = None, map_location: str | torch.device = "cpu") -> dict:
    """Load a sr3-edu file safely (``weights_only=True``) and check that it is one.

    ``kind`` ("train" or "model") restricts what is accepted. Every failure is a `CheckpointError` that names the
    file: missing, truncated, pickled payload, foreign format, or the wrong kind.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (or is not a file)")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" not in str(e):  # no refused class: the bytes are not a torch file at all
            raise CheckpointError(
                f"cannot read checkpoint {path}: it is not a torch file, or it is damaged. "
                f"Use an earlier checkpoint, or retrain"
            ) from e
        # torch's message runs over many lines; its "Unsupported global: GLOBAL module.Name" line names the culprit.
        culprit = next((ln.strip() for ln in str(e).splitlines() if "Unsupported global" in ln), "")
        culprit = culprit.split(" was not an allowed")[0].replace("WeightsUnpickler error: ", "")
        raise CheckpointError(
            f"refusing {path}: it carries pickled Python objects, which could run code when loaded"
            f"{f' ({culprit})' if culprit else ''}. sr3-edu files hold only tensors and plain values; "
            f"re-export it from a trusted source"
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, io.UnsupportedOperation) as e:
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated or not a torch file ({str(e).splitlines()[0]}). "
            f"Use an earlier checkpoint, or retrain"
        ) from e
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a sr3-edu checkpoint (no format={FORMAT!r} field); "
            f"only files written by sr3-edu's trainer or `export` can be loaded"
        )
    if obj.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer sr3-edu (version {obj['version']}); upgrade sr3-edu")
    if kind is not None and obj.get("kind") != kind:
        raise CheckpointError(f"{path} is a {obj.get('kind')!r} file, but a {kind!r} file is needed here")
    return obj


def model_file(
    model: torch.nn.Module,
    *,
    objective: str,
    scale: int,
    inference: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    half: bool = True,
) -> dict[str, Any]:
    """The dict of a shippable model file (write it with `save_atomic`). ``half`` stores weights as fp16."""
    state = {
        k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
        for k, v in model.state_dict().items()
    }
    return {
        "format": FORMAT,
        "version": VERSION,
        "kind": "model",
        "objective": objective,
        "scale": int(scale),
        "unet": model.config.to_dict(),
        "weights": state,
        "inference": dict(inference or {}),
        "meta": dict(meta or {}),
    }


def _build(unet_config: dict, state: dict, path: Path, device) -> SR3UNet:
    model = SR3UNet.from_config(unet_config)
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the U-Net config stored with them ({e})") from e
    return model.to(device).eval()


@dataclass(frozen=True)
class ModelInfo:
    """What a model file says about its network, besides the weights: what `load_model` returns beside the model.

    ``inference`` holds the default sampler options (`sr3_edu.inference.SamplerOptions.resolve` reads them) and the
    training schedule's serialised form (``inference["schedule"]``, `NoiseSchedule.to_dict`); ``meta`` how the model
    was made (command, steps, wall time, hardware, data). Fields a caller does not know stay at their defaults.
    """

    objective: str = "sr3"
    """"sr3" (f_θ estimates the noise ε) or "regression" (the network outputs y_0 directly)."""
    parametrisation: str = "eps"
    """How f_θ turns the U-Net's output into ε̂ (`sr3_edu.unet.PARAMETRISATIONS`); "eps" for files from before the
    field existed."""
    scale: int | None = None
    """The upscaling factor the model was trained for (None: unknown, the caller must give it)."""
    inference: Mapping[str, Any] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)
    step: int | None = None
    """The optimizer steps the weights were trained for."""
    path: str | None = None
    """The file the model came from."""

    @classmethod
    def of(cls, info: ModelInfo | Mapping[str, Any] | None) -> ModelInfo:
        """``info`` as a ModelInfo; a mapping (a few fields written by hand, e.g. in a test) is read by its keys."""
        if isinstance(info, ModelInfo):
            return info
        known = {f.name for f in fields(cls)}
        given = dict(info or {})
        unknown = sorted(set(given) - known)
        if unknown:
            raise ValueError(f"unknown model info field(s) {', '.join(unknown)}; the fields are {', '.join(known)}")
        return cls(**given)


def load_model(
    path: str | Path | None = None, device: str | torch.device = "cpu", objective: str = "sr3", *, strict: bool = False
):
    """Rebuild a model for inference from a model file or a training checkpoint (its EMA weights).

    ``path=None`` loads the model shipped with the package for ``objective`` ("sr3" or "regression"); with
    ``strict`` a file trained for another objective is refused (ValueError). Returns ``(model, info)``, info the
    `ModelInfo` of the file (objective, scale, default inference options, metadata).
    """
    path = Path(path) if path is not None else shipped_model_path(objective)
    obj = load_checkpoint(path)
    if obj["kind"] == "model":
        state = obj["weights"]
    elif obj["kind"] == "train":
        state = obj.get("ema") or obj["model"]
    else:
        raise CheckpointError(f"{path}: unknown kind {obj.get('kind')!r}")
    model = _build(obj["unet"], state, path, device)
    info = ModelInfo(
        objective=obj.get("objective", "sr3"),
        parametrisation=model.config.parametrisation,
        scale=int(obj["scale"]),
        inference=dict(obj.get("inference", {})),
        meta=dict(obj.get("meta", {})),
        step=obj.get("step", obj.get("meta", {}).get("steps")),
        path=str(path),
    )
    if strict and info.objective != objective:
        raise ValueError(f"{path} is a {info.objective!r} model, but a {objective!r} one is needed here")
    return model, info


def shipped_model_path(objective: str = "sr3") -> Path:
    """Path of the model shipped inside the package (``sr3_edu/weights``)."""
    if objective not in SHIPPED:
        raise ValueError(f"objective must be one of {', '.join(SHIPPED)}, got {objective!r}")
    path = WEIGHTS_DIR / SHIPPED[objective]
    if not path.is_file():
        raise CheckpointError(
            f"the shipped {objective} model {path} is missing from this installation; "
            f"pass --checkpoint, or train one with `python -m sr3_edu train`"
        )
    return path
