"""Honest evaluation on held-out photos: bicubic, the regression baseline, SR3 samples and the mean of SR3 samples.

For every high-resolution photo y: crop it to a multiple of the scale, make x = `downscale_pil(y)` exactly as
training does (SR3 §4: bicubic with anti-aliasing, saved as 8 bits), run every method, and score the outputs
with `sr3_edu.metrics`. Four methods, because the comparison only teaches something side by side:

* ``bicubic`` — the enlargement the U-Net itself starts from;
* ``regression`` — the same U-Net trained to output y_0 with L1 (the paper's Regression baseline);
* ``sr3`` — K independent samples per photo, each scored, the K scores averaged: what one run of SR3 gives;
* ``sr3_mean`` — the pixel-wise mean of those K samples, scored once. Averaging samples estimates the
  conditional mean, so it climbs towards the regression's PSNR and loses the detail (its detail ratio drops):
  the paper's observation that PSNR rewards the mean, seen in one table.

``seconds_per_image`` is the wall time of one output: one sample for ``sr3``, all K samples for ``sr3_mean``.

The schedule search that picks a model's default sampler is `sr3_edu.search`.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from . import metrics
from .checkpoint import CheckpointError, load_model, shipped_model_path
from .devices import resolve_device, resolve_precision
from .diffusion import model_device_dtype
from .files import write_json
from .flags import HelpFormatter, add_sampler_arguments, add_tile_argument, sampler_options
from .folders import load_images
from .images import downscale_pil, to_tensor, upscale_bicubic
from .inference import SamplerOptions
from .report import METHODS, format_table
from .schedule import NoiseSchedule
from .upscale import super_resolve

__all__ = [
    "METHODS",
    "METRICS",
    "prepare_pair",
    "tensor_pairs",
    "score",
    "evaluate",
    "size_groups",
    "timed_scored_samples",
    "check_scale",
    "add_common_arguments",
    "add_evaluate_arguments",
    "run_evaluate",
]

METRICS = ("psnr", "psnr_y", "ssim", "consistency", "color_error", "detail_ratio", "seconds_per_image")


def prepare_pair(img: Image.Image, scale: int, crop: int | None = None) -> tuple[Image.Image, Image.Image]:
    """(y, x): the photo center-cropped to at most ``crop``×``crop``, trimmed to a multiple of ``scale`` on the
    right and bottom, and its low-resolution version made as in training (`downscale_pil`)."""
    img = img.convert("RGB")
    W, H = img.size
    if crop is not None:
        cw, ch = min(crop, W), min(crop, H)
        left, top = (W - cw) // 2, (H - ch) // 2
        img = img.crop((left, top, left + cw, top + ch))
        W, H = img.size
    W, H = W - W % scale, H - H % scale
    if W < scale or H < scale:
        raise ValueError(f"an image of {img.width}×{img.height} is smaller than the scale {scale}")
    hr = img.crop((0, 0, W, H))
    return hr, downscale_pil(hr, scale)


def tensor_pairs(
    images: dict[str, Image.Image], scale: int, crop: int | None = None
) -> dict[str, tuple[Tensor, Tensor]]:
    """name → (y, x) as (1, C, H, W) and (1, C, H/s, W/s) tensors in [−1, 1], each made by `prepare_pair`."""
    pairs = {}
    for name, img in images.items():
        hr, lr = prepare_pair(img, scale, crop)
        pairs[name] = (to_tensor(hr)[None], to_tensor(lr)[None])
    return pairs


def score(out: Tensor, hr: Tensor, lr: Tensor, scale: int) -> dict[str, Tensor]:
    """Every metric of `sr3_edu.metrics` for a batch of outputs, per image: name → (B,) tensor."""
    return {
        "psnr": metrics.psnr(out, hr),
        "psnr_y": metrics.psnr_y(out, hr, border=scale),
        "ssim": metrics.ssim(out, hr),
        "consistency": metrics.consistency(out, lr, scale),
        "color_error": metrics.color_error(out, hr),
        # the band above the input's own Nyquist frequency: the detail that must be invented
        "detail_ratio": metrics.detail_ratio(out, hr, cutoff=1 / scale),
    }


def size_groups(pairs: dict[str, tuple[Tensor, Tensor]]) -> list[list[str]]:
    """Names grouped by image size, so photos of one size are refined in one batch."""
    by_size: dict[tuple[int, ...], list[str]] = {}
    for name, (hr, _) in pairs.items():
        by_size.setdefault(tuple(hr.shape), []).append(name)
    return list(by_size.values())


def _sync(model) -> None:
    p = next(model.parameters(), None) if hasattr(model, "parameters") else None
    if p is not None and p.device.type == "cuda":
        torch.cuda.synchronize(p.device)


def _sr3_samples(
    model,
    lr: Tensor,
    samples: int,
    opts: SamplerOptions,
    *,
    scale: int,
    generator,
    batch_size,
    progress,
    train_schedule,
    info,
    tile=None,
    precision: str = "auto",
    trajectory: int = 0,
    compile: bool = False,
):
    """K samples for each of n inputs: (n, K, C, H, W), plus the trajectory when asked."""
    n = lr.shape[0]
    # each input repeated K times in a row: one batch draws all K samples of every photo
    x = lr.repeat_interleave(samples, dim=0)
    out = super_resolve(
        model,
        x,
        info=info,
        scale=scale,
        objective="sr3",
        options=opts,
        generator=generator,
        batch_size=batch_size,
        progress=progress,
        train_schedule=train_schedule,
        tile=tile,
        precision=precision,
        compile=compile,
        return_trajectory=trajectory or False,
    )
    out, steps = out if trajectory else (out, None)
    return out.reshape(n, samples, *out.shape[1:]), steps


def timed_scored_samples(model, lr: Tensor, hr: Tensor, samples: int, opts: SamplerOptions, *, scale: int, **kw):
    """`_sr3_samples` timed (device synchronised), and every sample scored against its photo: returns
    (samples (n, K, C, H, W), trajectory or None, seconds, {metric: (n·K,) scores})."""
    _sync(model)
    t0 = time.perf_counter()
    ys, steps_kept = _sr3_samples(model, lr, samples, opts, scale=scale, **kw)
    _sync(model)
    elapsed = time.perf_counter() - t0
    per_sample = score(ys.flatten(0, 1), hr.repeat_interleave(samples, 0), lr.repeat_interleave(samples, 0), scale)
    return ys, steps_kept, elapsed, per_sample


def _means(records: list[dict[str, dict[str, float]]], method: str) -> dict[str, float]:
    rows = [r[method] for r in records if method in r]
    return {k: sum(r[k] for r in rows) / len(rows) for k in METRICS} if rows else {}


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
    sr3_info: dict | None = None,
    regression_info: dict | None = None,
    train_schedule: NoiseSchedule | None = None,
    tile: int | str | None = "auto",
    precision: str = "auto",
    keep_images: bool = False,
    trajectory: int = 0,
    compile: bool = False,
) -> dict[str, Any]:
    """Score bicubic, regression (if given), SR3 (K = ``samples`` samples) and the mean of the samples on ``images``.

    ``images`` maps names to high-resolution photos of any size; ``crop`` center-crops each one first (to keep CPU
    runs short). Sampler options left at None come from ``sr3_info["inference"]`` (see `super_resolve`).
    Returns ``{"config": …, "methods": {method: {metric: mean over images}}, "images": [{"name", "size",
    "methods": {method: {metric: value}}}, …]}``. With ``keep_images`` the tensors (lr, hr and every output,
    in [−1, 1]) are added under ``"tensors"`` (not JSON), and with ``trajectory=k`` also every k-th step of the
    first sample's chain, for figures. ``compile`` compiles each refinement step (see `sr3_edu.diffusion.sample`); the
    first call's compilation then counts in SR3's seconds per image.
    """
    if not images:
        raise ValueError("no images to evaluate")
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    scale = int(scale or (sr3_info or {}).get("scale") or 0)
    if scale < 1:
        raise ValueError("give the scale (or sr3_info from load_model, which stores it)")
    if regression_info and regression_info.get("scale") not in (None, scale):
        raise ValueError(f"the regression model is ×{regression_info['scale']} but SR3 is ×{scale}")
    opts = SamplerOptions.resolve(
        sr3_info,
        steps=steps,
        variance=variance,
        start=start,
        gamma_start=gamma_start,
        clip_y0=clip_y0,
        betas=betas,
        sampler=sampler,
        eta=eta,
    )
    generator = torch.Generator().manual_seed(int(seed))

    pairs = tensor_pairs(images, scale, crop)

    records: dict[str, dict[str, dict[str, float]]] = {name: {} for name in pairs}
    tensors: dict[str, dict[str, Any]] = {name: {} for name in pairs}
    groups = size_groups(pairs)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(pairs), desc="evaluating", unit="image")

    def put(names: list[str], method: str, scores: dict[str, Tensor], seconds: float) -> None:
        for i, name in enumerate(names):
            records[name][method] = {k: float(v[i]) for k, v in scores.items()}
            records[name][method]["seconds_per_image"] = seconds

    for names in groups:
        hr = torch.cat([pairs[n][0] for n in names])  # (n, C, H, W)
        lr = torch.cat([pairs[n][1] for n in names])  # (n, C, h, w)
        n = len(names)

        t0 = time.perf_counter()
        bic = upscale_bicubic(lr, scale).clamp(-1, 1)
        put(names, "bicubic", score(bic, hr, lr, scale), (time.perf_counter() - t0) / n)
        outputs = {"bicubic": bic}

        if regression_model is not None:
            _sync(regression_model)
            t0 = time.perf_counter()
            reg = super_resolve(
                regression_model,
                lr,
                info=regression_info,
                scale=scale,
                objective="regression",
                batch_size=batch_size,
                precision=precision,
            )
            _sync(regression_model)
            put(names, "regression", score(reg, hr, lr, scale), (time.perf_counter() - t0) / n)
            outputs["regression"] = reg

        ys, steps_kept, elapsed, per_sample = timed_scored_samples(
            sr3_model,
            lr,
            hr,
            samples,
            opts,
            scale=scale,
            generator=generator,
            batch_size=batch_size,
            progress=progress,
            train_schedule=train_schedule,
            info=sr3_info,
            tile=tile,
            precision=precision,
            trajectory=trajectory,
            compile=compile,
        )
        K = samples
        # SR3: the score of each sample, averaged over the K samples
        put(names, "sr3", {k: v.reshape(n, K).mean(1) for k, v in per_sample.items()}, elapsed / (n * K))
        for i, name in enumerate(names):
            records[name]["sr3"]["psnr_std"] = float(per_sample["psnr"].reshape(n, K)[i].std()) if K > 1 else 0.0
        # SR3 mean: the score of the pixel-wise mean of the K samples
        mean = ys.mean(dim=1)
        put(names, "sr3_mean", score(mean, hr, lr, scale), elapsed / n)
        outputs.update(sr3=ys, sr3_mean=mean)

        if keep_images:
            for i, name in enumerate(names):
                tensors[name] = {"hr": hr[i], "lr": lr[i], **{k: v[i] for k, v in outputs.items()}}
                if steps_kept is not None:
                    # the first sample of this photo sits at row i·K of the repeated batch
                    tensors[name]["trajectory"] = [
                        (s.t, s.gamma, s.y_t[i * K], None if s.y0_hat is None else s.y0_hat[i * K]) for s in steps_kept
                    ]
        if bar is not None:
            bar.update(n)
    if bar is not None:
        bar.close()

    per_image = [
        {
            "name": name,
            "size": [int(pairs[name][0].shape[-1]), int(pairs[name][0].shape[-2])],
            "methods": records[name],
        }
        for name in pairs
    ]
    methods = {m: _means(list(records.values()), m) for m in METHODS}
    result: dict[str, Any] = {
        "config": {
            "scale": scale,
            "samples": samples,
            "seed": seed,
            "crop": crop,
            **opts.as_dict(),
            "precision": resolve_precision(precision, model_device_dtype(sr3_model)[0]),
            "sr3_checkpoint": (sr3_info or {}).get("path"),
            "regression_checkpoint": (regression_info or {}).get("path") if regression_model is not None else None,
        },
        "methods": {m: v for m, v in methods.items() if v},
        "images": per_image,
    }
    if keep_images:
        result["tensors"] = tensors
    return result


# ------------------------------------------------------------------------------------------------------ CLI


def _load_regression(arg: str | None, device, scale: int):
    """``--regression``: a path, ``none``, or (default) the shipped model when it is there."""
    if arg == "none":
        return None, None
    if arg is None:
        try:
            shipped_model_path("regression")
        except CheckpointError as e:
            print(f"note: no regression baseline ({e})", file=sys.stderr)
            return None, None
    model, info = load_model(arg, device=device, objective="regression", strict=True)
    if info["scale"] != scale:
        raise ValueError(f"--regression {info['path']} is ×{info['scale']}, but the SR3 model is ×{scale}")
    return model, info


def add_common_arguments(p: argparse.ArgumentParser, crop_default: int | None) -> None:
    """The options evaluate and search share: the model, the photos, the scale, the crop, --json, --no-progress."""
    p.formatter_class = HelpFormatter
    p.add_argument(
        "--checkpoint", default=None, help="SR3 model file or training checkpoint (default: the shipped one)"
    )
    p.add_argument(
        "--data",
        default="builtin",
        help="a folder of high-resolution images, or 'builtin' for the built-in validation photos",
    )
    p.add_argument("--scale", type=int, default=None, help="upscaling factor (default: the model's)")
    p.add_argument(
        "--crop",
        type=int,
        default=crop_default,
        help="center-crop each photo to at most N×N first, to keep CPU runs short (default: no crop = full size)"
        if crop_default is None
        else "center-crop each photo to at most N×N first",
    )
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p, crop_default=None)
    p.add_argument(
        "--regression",
        default=None,
        help="regression-baseline model file, or 'none' (default: the shipped one when installed)",
    )
    p.add_argument("--samples", type=int, default=4, help="K: SR3 samples per photo (scored each, and their mean)")
    add_sampler_arguments(p)
    add_tile_argument(p)
    p.add_argument("--per-image", action="store_true", help="also print one table per photo")


def check_scale(arg: int | None, info: dict) -> int:
    """The model's scale; a --scale that disagrees with it is an error."""
    if arg is not None and arg != info["scale"]:
        raise ValueError(f"--scale {arg} does not match the model, which is ×{info['scale']}")
    return info["scale"]


def run_evaluate(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    images = load_images(args.data)
    model, info = load_model(args.checkpoint, device=device, strict=True)
    scale = check_scale(args.scale, info)
    reg, reg_info = _load_regression(args.regression, device, scale)
    result = evaluate(
        model,
        images,
        scale=scale,
        samples=args.samples,
        regression_model=reg,
        seed=args.seed,
        **sampler_options(args),
        crop=args.crop,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        sr3_info=info,
        regression_info=reg_info,
        tile=args.tile,
        precision=args.precision,
        compile=args.compile,
    )
    print(format_table(result, per_image=args.per_image))
    if args.json:
        print(f"wrote {write_json(result, args.json)}", file=sys.stderr)
    return 0
