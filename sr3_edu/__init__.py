"""sr3-edu: SR3 (Image Super-Resolution via Iterative Refinement), derived step by step.

Modules, one idea each: `schedule` (β, α, γ), `diffusion` (forward process, loss, sampler),
`unet` (f_θ), `images` (tensors ↔ images, bicubic), `data`, `train`, `checkpoint`, `metrics`,
`evaluate`, `upscale`, `builtin`, `cli`.

Importing the package is cheap: names below load their module (and torch) on first use.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "NoiseSchedule": "schedule",
    "q_sample": "diffusion",
    "predict_y0": "diffusion",
    "loss": "diffusion",
    "sample": "diffusion",
    "SR3UNet": "unet",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'sr3_edu' has no attribute {name!r}")
