"""Honest evaluation on held-out photos: bicubic, the regression baseline, SR3 samples and the mean of SR3 samples.

For every high-resolution photo y_0: make the pair (x, y_0) of `sr3_edu.protocol` exactly as training does (SR3 §4:
bicubic with anti-aliasing, saved as 8 bits), run every method, and score the outputs with `sr3_edu.metrics`.
Four methods, because the comparison only teaches something side by side:

* ``bicubic`` — the enlargement the U-Net itself starts from;
* ``regression`` — the same U-Net trained to output y_0 with L1 (the paper's Regression baseline);
* ``sr3`` — K independent samples per photo, each scored, the K scores averaged: what one run of SR3 gives;
* ``sr3_mean`` — the pixel-wise mean of those K samples, scored once. Averaging samples estimates the
  conditional mean, so it climbs towards the regression's PSNR and loses the detail (its detail ratio drops):
  the paper's observation that PSNR rewards the mean, seen in one table.

``seconds_per_image`` is the wall time of one output: one sample for ``sr3``, all K samples for ``sr3_mean``.

The schedule search that picks a model's default sampler is `sr3_edu.search`; the text tables are
`sr3_edu.report`'s and the command, ``sr3-edu evaluate``, is `sr3_edu.commands.evaluate`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from . import metrics
from .checkpoint import ModelInfo
from .devices import resolve_precision
from .diffusion import model_device_dtype
from .images import upscale_bicubic
from .inference import SamplerOptions
from .protocol import size_groups, tensor_pairs
from .report import METHODS
from .schedule import NoiseSchedule
from .upscale import super_resolve

__all__ = ["METHODS", "METRICS", "score", "evaluate", "timed_scored_samples"]

METRICS = ("psnr", "psnr_y", "ssim", "consistency", "color_error", "detail_ratio", "seconds_per_image")

Records = dict[str, dict[str, dict[str, float]]]
"""photo name → method → metric → value."""


def score(out: Tensor, y0: Tensor, x: Tensor, scale: int) -> dict[str, Tensor]:
    """Every metric of `sr3_edu.metrics` for a batch of outputs ŷ against y_0 (and x), per image: name → (B,)."""
    return {
        "psnr": metrics.psnr(out, y0),
        "psnr_y": metrics.psnr_y(out, y0, border=scale),
        "ssim": metrics.ssim(out, y0),
        "consistency": metrics.consistency(out, x, scale),
        "color_error": metrics.color_error(out, y0),
        # the band above the input's own Nyquist frequency: the detail that must be invented
        "detail_ratio": metrics.detail_ratio(out, y0, cutoff=1 / scale),
    }


def _sync(model) -> None:
    p = next(model.parameters(), None) if hasattr(model, "parameters") else None
    if p is not None and p.device.type == "cuda":
        torch.cuda.synchronize(p.device)


def _sr3_samples(model, x: Tensor, samples: int, opts: SamplerOptions, *, trajectory: int = 0, **kw):
    """K samples for each of n inputs: (n, K, C, H, W), plus the trajectory when asked (``kw`` go to
    `super_resolve`)."""
    n = x.shape[0]
    # each input repeated K times in a row: one batch draws all K samples of every photo
    out = super_resolve(
        model,
        x.repeat_interleave(samples, dim=0),
        objective="sr3",
        options=opts,
        return_trajectory=trajectory or False,
        **kw,
    )
    out, steps = out if trajectory else (out, None)
    return out.reshape(n, samples, *out.shape[1:]), steps


def timed_scored_samples(model, x: Tensor, y0: Tensor, samples: int, opts: SamplerOptions, *, scale: int, **kw):
    """`_sr3_samples` timed (device synchronised), and every sample scored against its photo: returns
    (samples (n, K, C, H, W), trajectory or None, seconds, {metric: (n·K,) scores})."""
    _sync(model)
    t0 = time.perf_counter()
    ys, steps_kept = _sr3_samples(model, x, samples, opts, scale=scale, **kw)
    _sync(model)
    elapsed = time.perf_counter() - t0
    per_sample = score(ys.flatten(0, 1), y0.repeat_interleave(samples, 0), x.repeat_interleave(samples, 0), scale)
    return ys, steps_kept, elapsed, per_sample


def _put(records: Records, names: list[str], method: str, scores: dict[str, Tensor], seconds: float) -> None:
    for i, name in enumerate(names):
        records[name][method] = {k: float(v[i]) for k, v in scores.items()}
        records[name][method]["seconds_per_image"] = seconds


def _means(records: list[dict[str, dict[str, float]]], method: str) -> dict[str, float]:
    rows = [r[method] for r in records if method in r]
    return {k: sum(r[k] for r in rows) / len(rows) for k in METRICS} if rows else {}


def _baselines(records: Records, names, x, y0, scale, regression_model, regression_info, **kw) -> dict[str, Tensor]:
    """Bicubic and (if given) the regression baseline on one group of photos, scored into ``records``."""
    n = len(names)
    t0 = time.perf_counter()
    bic = upscale_bicubic(x, scale).clamp(-1, 1)
    _put(records, names, "bicubic", score(bic, y0, x, scale), (time.perf_counter() - t0) / n)
    if regression_model is None:
        return {"bicubic": bic}
    _sync(regression_model)
    t0 = time.perf_counter()
    reg = super_resolve(regression_model, x, info=regression_info, scale=scale, objective="regression", **kw)
    _sync(regression_model)
    _put(records, names, "regression", score(reg, y0, x, scale), (time.perf_counter() - t0) / n)
    return {"bicubic": bic, "regression": reg}


def _sr3_scores(records: Records, names, ys: Tensor, per_sample, elapsed: float, x, y0, scale) -> Tensor:
    """SR3's rows for one group: each sample scored and the K scores averaged ("sr3"), and the pixel-wise mean of
    the K samples scored once ("sr3_mean"); returns that mean."""
    n, K = ys.shape[:2]
    _put(records, names, "sr3", {k: v.reshape(n, K).mean(1) for k, v in per_sample.items()}, elapsed / (n * K))
    for i, name in enumerate(names):
        records[name]["sr3"]["psnr_std"] = float(per_sample["psnr"].reshape(n, K)[i].std()) if K > 1 else 0.0
    mean = ys.mean(dim=1)
    _put(records, names, "sr3_mean", score(mean, y0, x, scale), elapsed / n)
    return mean


def _kept(names, x, y0, outputs: dict[str, Tensor], steps_kept, K: int) -> dict[str, dict[str, Any]]:
    """The tensors of ``keep_images`` for one group: x, y_0, every output and the first sample's trajectory."""
    kept = {}
    for i, name in enumerate(names):
        kept[name] = {"lr": x[i], "hr": y0[i], **{k: v[i] for k, v in outputs.items()}}
        if steps_kept is not None:
            # the first sample of this photo sits at row i·K of the repeated batch
            kept[name]["trajectory"] = [
                (s.t, s.gamma, s.y_t[i * K], None if s.y0_hat is None else s.y0_hat[i * K]) for s in steps_kept
            ]
    return kept


def _check(images, samples: int, scale: int | None, sr3_info, regression_info) -> int:
    """The scale to evaluate at, after refusing what cannot be evaluated."""
    if not images:
        raise ValueError("no images to evaluate")
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    scale = int(scale or sr3_info.scale or 0)
    if scale < 1:
        raise ValueError("give the scale (or sr3_info from load_model, which stores it)")
    if regression_info.scale not in (None, scale):
        raise ValueError(f"the regression model is ×{regression_info.scale} but SR3 is ×{scale}")
    return scale


def _config(scale, samples, seed, crop, opts, precision, sr3_model, sr3_info, regression_model, regression_info):
    """The "config" of the result: what was run, as JSON."""
    config = {"scale": scale, "samples": samples, "seed": seed, "crop": crop, **opts.as_dict()}
    config["precision"] = resolve_precision(precision, model_device_dtype(sr3_model)[0])
    config["sr3_checkpoint"] = sr3_info.path
    config["regression_checkpoint"] = regression_info.path if regression_model is not None else None
    return config


@torch.inference_mode()
def evaluate(
    sr3_model,
    images: dict[str, Image.Image],
    *,
    scale: int | None = None,
    steps: int | None = None,
    samples: int = 4,
    regression_model=None,
    seed: int = 0,
    variance: str | None = None,
    start: str | None = None,
    gamma_start: float | None = None,
    clip_y0: bool | None = None,
    betas: tuple[float, float] | str | None = None,
    sampler: str | None = None,
    eta: float | None = None,
    crop: int | None = None,
    batch_size: int = 4,
    progress: bool = True,
    sr3_info: ModelInfo | Mapping[str, Any] | None = None,
    regression_info: ModelInfo | Mapping[str, Any] | None = None,
    train_schedule: NoiseSchedule | None = None,
    tile: int | str | None = "auto",
    precision: str = "auto",
    keep_images: bool = False,
    trajectory: int = 0,
    compile: bool = False,
) -> dict[str, Any]:
    """Score bicubic, regression (if given), SR3 (K = ``samples`` samples) and the mean of the samples on ``images``.

    ``images`` maps names to high-resolution photos of any size; ``crop`` center-crops each one first (to keep CPU
    runs short). Sampler options left at None come from ``sr3_info.inference`` (see `super_resolve`).
    Returns ``{"config": …, "methods": {method: {metric: mean over images}}, "images": [{"name", "size",
    "methods": {method: {metric: value}}}, …]}``. With ``keep_images`` the tensors (lr, hr and every output,
    in [−1, 1]) are added under ``"tensors"`` (not JSON), and with ``trajectory=k`` also every k-th step of the
    first sample's chain, for figures. ``compile`` compiles each refinement step (see `sr3_edu.diffusion.sample`); the
    first call's compilation then counts in SR3's seconds per image.
    """
    from tqdm.auto import tqdm

    sr3_info, regression_info = ModelInfo.of(sr3_info), ModelInfo.of(regression_info)
    scale = _check(images, samples, scale, sr3_info, regression_info)
    given = {"steps": steps, "variance": variance, "start": start, "gamma_start": gamma_start, "clip_y0": clip_y0}
    opts = SamplerOptions.resolve(sr3_info, **given, betas=betas, sampler=sampler, eta=eta)
    generator = torch.Generator().manual_seed(int(seed))
    pairs = tensor_pairs(images, scale, crop)
    records: Records = {name: {} for name in pairs}
    tensors: dict[str, dict[str, Any]] = {}
    with tqdm(total=len(pairs), desc="evaluating", unit="image", disable=not progress) as bar:
        for names in size_groups(pairs):
            x = torch.cat([pairs[n][0] for n in names])  # (n, C, h, w)
            y0 = torch.cat([pairs[n][1] for n in names])  # (n, C, H, W)
            reg = {"batch_size": batch_size, "precision": precision}
            outputs = _baselines(records, names, x, y0, scale, regression_model, regression_info, **reg)
            ys, steps_kept, elapsed, per_sample = timed_scored_samples(
                sr3_model,
                x,
                y0,
                samples,
                opts,
                scale=scale,
                info=sr3_info,
                generator=generator,
                batch_size=batch_size,
                progress=progress,
                train_schedule=train_schedule,
                tile=tile,
                precision=precision,
                trajectory=trajectory,
                compile=compile,
            )
            outputs.update(sr3=ys, sr3_mean=_sr3_scores(records, names, ys, per_sample, elapsed, x, y0, scale))
            if keep_images:
                tensors.update(_kept(names, x, y0, outputs, steps_kept, samples))
            bar.update(len(names))

    config = _config(
        scale, samples, seed, crop, opts, precision, sr3_model, sr3_info, regression_model, regression_info
    )
    methods = {m: _means(list(records.values()), m) for m in METHODS}
    result: dict[str, Any] = {
        "config": config,
        "methods": {m: v for m, v in methods.items() if v},
        "images": [
            {"name": name, "size": [int(y0.shape[-1]), int(y0.shape[-2])], "methods": records[name]}
            for name, (_, y0) in pairs.items()
        ],
    }
    if keep_images:
        result["tensors"] = {name: tensors[name] for name in pairs}
    return result
