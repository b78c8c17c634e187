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

`search_schedules` grid-searches the inference schedule on validation photos (SR3 §4: "hyper-parameter search
over the inference noise schedule … we only need to train the model once").
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from . import metrics
from .checkpoint import CheckpointError, load_model, shipped_model_path
from .devices import resolve_device
from .files import write_atomic
from .images import IMAGE_SUFFIXES, downscale_pil, load_rgb, to_tensor, upscale_bicubic
from .schedule import NoiseSchedule
from .upscale import (
    HelpFormatter,
    add_sampler_arguments,
    describe,
    inference_options,
    sampler_options,
    super_resolve,
    training_schedule,
)

__all__ = [
    "METHODS",
    "METRICS",
    "prepare_pair",
    "tensor_pairs",
    "score",
    "evaluate",
    "format_table",
    "default_candidates",
    "search_schedules",
    "rank_schedules",
    "format_search",
    "load_images",
    "add_evaluate_arguments",
    "run_evaluate",
    "add_search_arguments",
    "run_search",
]

METHODS = ("bicubic", "regression", "sr3", "sr3_mean")
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


def _groups(pairs: dict[str, tuple[Tensor, Tensor]]) -> list[list[str]]:
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
    opts: dict,
    *,
    scale: int,
    generator,
    batch_size,
    progress,
    train_schedule,
    info,
    tile=None,
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
        steps=opts["steps"],
        variance=opts["variance"],
        start=opts["start"],
        gamma_start=opts["gamma_start"],
        clip_y0=opts["clip_y0"],
        betas=opts["betas"],
        generator=generator,
        batch_size=batch_size,
        progress=progress,
        train_schedule=train_schedule,
        tile=tile,
        compile=compile,
        return_trajectory=trajectory or False,
    )
    out, steps = out if trajectory else (out, None)
    return out.reshape(n, samples, *out.shape[1:]), steps


def _timed_scored_samples(model, lr: Tensor, hr: Tensor, samples: int, opts: dict, *, scale: int, **kw):
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
    betas: tuple[float, float] | None = None,
    crop: int | None = None,
    batch_size: int = 4,
    progress: bool = True,
    sr3_info: dict | None = None,
    regression_info: dict | None = None,
    train_schedule: NoiseSchedule | None = None,
    tile: int | None = None,
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
    opts = inference_options(
        sr3_info, steps=steps, variance=variance, start=start, gamma_start=gamma_start, clip_y0=clip_y0, betas=betas
    )
    generator = torch.Generator().manual_seed(int(seed))

    pairs = tensor_pairs(images, scale, crop)

    records: dict[str, dict[str, dict[str, float]]] = {name: {} for name in pairs}
    tensors: dict[str, dict[str, Any]] = {name: {} for name in pairs}
    groups = _groups(pairs)
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
                regression_model, lr, info=regression_info, scale=scale, objective="regression", batch_size=batch_size
            )
            _sync(regression_model)
            put(names, "regression", score(reg, hr, lr, scale), (time.perf_counter() - t0) / n)
            outputs["regression"] = reg

        ys, steps_kept, elapsed, per_sample = _timed_scored_samples(
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
            **opts,
            "sr3_checkpoint": (sr3_info or {}).get("path"),
            "regression_checkpoint": (regression_info or {}).get("path") if regression_model is not None else None,
        },
        "methods": {m: v for m, v in methods.items() if v},
        "images": per_image,
    }
    if keep_images:
        result["tensors"] = tensors
    return result


_COLUMNS = [
    ("psnr", "PSNR ↑", "{:.2f}"),
    ("psnr_y", "PSNR-Y ↑", "{:.2f}"),
    ("ssim", "SSIM ↑", "{:.3f}"),
    ("consistency", "Consist. ↓", "{:.2f}"),
    ("color_error", "Colour ↓", "{:.4f}"),
    ("detail_ratio", "Detail →1", "{:.2f}"),
    ("seconds_per_image", "s/image", "{:.2f}"),
]


def _fmt(fmt: str, v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


def format_table(result: dict[str, Any], per_image: bool = False) -> str:
    """The methods as rows, the metrics as columns (means over images); ``per_image`` adds one block per photo."""
    labels = {"bicubic": "bicubic", "regression": "regression", "sr3": "SR3 (a sample)", "sr3_mean": "SR3 mean of K"}

    def block(methods: dict[str, dict[str, float]]) -> list[str]:
        head = f"{'method':<16}" + "".join(f"{h:>12}" for _, h, _ in _COLUMNS)
        lines = [head, "-" * len(head)]
        for m in METHODS:
            if m in methods:
                lines.append(f"{labels[m]:<16}" + "".join(f"{_fmt(f, methods[m].get(k)):>12}" for k, _, f in _COLUMNS))
        return lines

    cfg = result.get("config", {})
    title = f"×{cfg.get('scale')}, {len(result['images'])} image(s), K={cfg.get('samples')} samples, {describe(cfg)}"
    lines = [title, *block(result["methods"])]
    if per_image:
        for rec in result["images"]:
            lines += ["", f"{rec['name']} ({rec['size'][0]}×{rec['size'][1]})", *block(rec["methods"])]
    lines.append(
        "Consistency: MSE(downscale(output), input) ×1e5 on [0, 1]. Colour: mean |per-channel mean − HR's| on [0, 1]. "
        "Detail: high-frequency energy / HR's."
    )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ schedule search


def default_candidates(
    steps: Iterable[int] = (25, 50, 100),
    variances: Iterable[str] = ("paper", "posterior"),
    starts: Iterable[str | float] = ("noise", 0.05, 0.2, 0.5),
    clips: Iterable[bool] = (False,),
    linear_gammas: Iterable[float] = (),
) -> list[dict[str, Any]]:
    """The grid: steps × variance × (start ∪ linear) × clip_y0, where a float in ``starts`` is a bicubic start at
    that γ_start and ``clips`` says whether ŷ_0 is clipped inside each step (the reference code's variant).
    Each γ in ``linear_gammas`` adds a chain from pure noise on a linear β schedule of that many steps, β_1 = 10⁻⁶
    (the training schedule's), β_n chosen so the chain's noisiest level is γ (`NoiseSchedule.linear_to`)."""
    grid = []
    for n in steps:
        for v in variances:
            for s in [*starts, *(("linear", float(g)) for g in linear_gammas)]:
                for c in clips:
                    cand: dict[str, Any] = {"steps": int(n), "variance": v, "start": "noise", "clip_y0": bool(c)}
                    if isinstance(s, tuple):
                        betas = NoiseSchedule.linear_to(int(n), s[1]).betas
                        cand.update(betas=(betas[0].item(), betas[-1].item()))
                    elif s != "noise":
                        cand.update(start="bicubic", gamma_start=float(s))
                    grid.append(cand)
    return grid


@torch.inference_mode()
def search_schedules(
    model,
    images: dict[str, Image.Image],
    candidates: list[dict[str, Any]] | None = None,
    *,
    scale: int | None = None,
    info: dict | None = None,
    samples: int = 1,
    seed: int = 0,
    crop: int | None = 128,
    batch_size: int = 4,
    progress: bool = True,
    train_schedule: NoiseSchedule | None = None,
    detail_band: tuple[float, float] = (0.8, 1.25),
) -> list[dict[str, Any]]:
    """Score SR3 under each candidate inference schedule on ``images`` and rank them; returns rows, best first.

    The criterion: **the highest PSNR among the candidates whose detail ratio lies in ``detail_band`` and whose
    consistency with the input is no worse than bicubic's** (on the same photos; a chain that drifts from its input
    is not a super-resolution of it, however sharp), then the rest by how close their detail ratio is to 1.
    The paper chose its schedule by FID on held-out
    data because PSNR alone rewards blur (it "did not correlate well with image quality"). FID needs an Inception
    network's downloaded weights and thousands of images, neither of which this package has; PSNR alone would pick
    the blurriest schedule, and the detail ratio alone would accept noise of the right power. Together they pick
    the most faithful schedule among those whose output carries a photo-like amount of fine detail.
    Every candidate gets the same seed, so they differ by schedule, not by luck. Each row holds the options, the
    number of network evaluations, the mean metrics of the samples, ``feasible`` and ``rank``.
    """
    scale = int(scale or (info or {}).get("scale") or 0)
    if scale < 1:
        raise ValueError("give the scale (or info from load_model, which stores it)")
    candidates = candidates if candidates is not None else default_candidates()
    if not candidates:
        raise ValueError("no candidate schedules to search")
    pairs = tensor_pairs(images, scale, crop)
    groups = _groups(pairs)
    rows = []
    cands = candidates
    if progress:
        from tqdm.auto import tqdm

        cands = tqdm(candidates, desc="schedules", unit="schedule")
    for cand in cands:
        opts = inference_options(None, **cand)
        generator = torch.Generator().manual_seed(int(seed))
        sums: dict[str, float] = dict.fromkeys(METRICS, 0.0)
        count = 0
        for names in groups:
            hr = torch.cat([pairs[n][0] for n in names])
            lr = torch.cat([pairs[n][1] for n in names])
            ys, _, elapsed, s = _timed_scored_samples(
                model,
                lr,
                hr,
                samples,
                opts,
                scale=scale,
                generator=generator,
                batch_size=batch_size,
                progress=False,
                train_schedule=train_schedule,
                info=info,
            )
            for k, v in s.items():
                sums[k] += float(v.sum())
            sums["seconds_per_image"] += elapsed
            count += ys.shape[0] * ys.shape[1]
        row = {
            "steps": opts["steps"],
            "variance": opts["variance"],
            "start": opts["start"],
            "gamma_start": opts["gamma_start"] if opts["start"] == "bicubic" else None,
            "clip_y0": opts["clip_y0"],
            "betas": list(opts["betas"]) if opts["betas"] else None,
            "nfe": _nfe(opts, train_schedule if train_schedule is not None else training_schedule(info)),
            **{k: v / count for k, v in sums.items()},
        }
        rows.append(row)

    bicubic = [
        metrics.consistency(upscale_bicubic(pairs[n][1], scale).clamp(-1, 1), pairs[n][1], scale).item() for n in pairs
    ]
    return rank_schedules(rows, detail_band, max_consistency=sum(bicubic) / len(bicubic))


def rank_schedules(
    rows: list[dict[str, Any]],
    detail_band: tuple[float, float] = (0.8, 1.25),
    max_consistency: float = math.inf,
) -> list[dict[str, Any]]:
    """Sort rows best first by the criterion of `search_schedules`; sets ``feasible`` and ``rank`` on each row.
    ``max_consistency`` (bicubic's in `search_schedules`): rows above it are never feasible."""
    lo, hi = detail_band
    for row in rows:
        r = row["detail_ratio"]
        consistent = row.get("consistency", 0.0) <= max_consistency
        if math.isfinite(max_consistency):
            row["consistency_limit"] = max_consistency
        row["feasible"] = bool(math.isfinite(r) and lo <= r <= hi and consistent)

    def key(row):
        r = row["detail_ratio"]
        off = abs(math.log(r)) if math.isfinite(r) and r > 0 else math.inf
        # in band first, by PSNR (higher first); then the rest by |log ratio|. Differences below 0.01 dB or 1 % of
        # the ratio are noise, not evidence: there the cheaper schedule (fewer network evaluations) wins.
        if row["feasible"]:
            return (0, -round(row["psnr"], 2), row["nfe"])
        return (1, round(off, 2), row["nfe"])

    rows = sorted(rows, key=key)
    for i, row in enumerate(rows, 1):
        row["rank"] = i
    return rows


def _nfe(opts: dict, train_schedule: NoiseSchedule | None) -> int:
    """Network evaluations per image: the length of the chain actually run (a truncated one can be shorter)."""
    from .upscale import inference_schedule

    return inference_schedule(
        opts["steps"],
        start=opts["start"],
        gamma_start=opts["gamma_start"],
        train_schedule=train_schedule,
        betas=opts.get("betas"),
    ).T


def format_search(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'rank':>4} {'steps':>5} {'NFE':>5} {'variance':>9} {'start':>14} {'chain':>17} {'clip':>4} "
        f"{'PSNR':>7} {'PSNR-Y':>7} {'SSIM':>6} {'Consist.':>9} {'Colour':>7} {'Detail':>7} {'s/img':>7}  in band"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        start = "noise" if r["start"] == "noise" else f"bicubic@{r['gamma_start']:g}"
        chain = f"linear β→{r['betas'][1]:.3g}" if r.get("betas") else "respaced"
        lines.append(
            f"{r['rank']:>4} {r['steps']:>5} {r['nfe']:>5} {r['variance']:>9} {start:>14} {chain:>17} "
            f"{'on' if r.get('clip_y0') else 'off':>4} "
            f"{_fmt('{:.2f}', r['psnr']):>7} {_fmt('{:.2f}', r.get('psnr_y')):>7} "
            f"{_fmt('{:.3f}', r['ssim']):>6} {_fmt('{:.2f}', r['consistency']):>9} "
            f"{_fmt('{:.4f}', r.get('color_error')):>7} "
            f"{_fmt('{:.2f}', r['detail_ratio']):>7} {r['seconds_per_image']:>7.2f}  {'yes' if r['feasible'] else 'no'}"
        )
    if rows and "consistency_limit" in rows[0]:
        lines.append(
            f"in band: detail ratio in the band and consistency ≤ bicubic's {rows[0]['consistency_limit']:.2f}"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------ CLI


def load_images(data: str, split: str = "val") -> dict[str, Image.Image]:
    """``"builtin"`` → the built-in photos of ``split``; a folder → every image in it, by file name."""
    if data == "builtin":
        from .builtin import builtin_images

        return builtin_images(split)
    folder = Path(data)
    if not folder.is_dir():
        raise FileNotFoundError(f"--data {data}: not a folder (give a folder of images, or 'builtin')")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    images = {}
    for f in files:
        img, note = load_rgb(f)
        if note:
            print(note, file=sys.stderr)
        images[f.stem] = img
    return images


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
    model, info = load_model(arg, device=device, objective="regression")
    if info["objective"] != "regression":
        raise ValueError(f"--regression {info['path']} is a {info['objective']!r} model, not a regression one")
    if info["scale"] != scale:
        raise ValueError(f"--regression {info['path']} is ×{info['scale']}, but the SR3 model is ×{scale}")
    return model, info


def _write_json(obj: Any, path: str | Path) -> Path:
    """JSON, written atomically; non-finite numbers become null (JSON has no ∞)."""

    def clean(o):
        if isinstance(o, float):
            return o if math.isfinite(o) else None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o

    text = json.dumps(clean(obj), indent=2, ensure_ascii=False) + "\n"
    return write_atomic(path, lambda f: f.write(text.encode()))


def _add_common(p: argparse.ArgumentParser, crop_default: int | None) -> None:
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
    _add_common(p, crop_default=None)
    p.add_argument(
        "--regression",
        default=None,
        help="regression-baseline model file, or 'none' (default: the shipped one when installed)",
    )
    p.add_argument("--samples", type=int, default=4, help="K: SR3 samples per photo (scored each, and their mean)")
    add_sampler_arguments(p)
    p.add_argument("--tile", type=int, default=None, help="refine in overlapping tiles of this size to save memory")
    p.add_argument("--per-image", action="store_true", help="also print one table per photo")


def _check_scale(arg: int | None, info: dict) -> int:
    if arg is not None and arg != info["scale"]:
        raise ValueError(f"--scale {arg} does not match the model, which is ×{info['scale']}")
    return info["scale"]


def run_evaluate(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    images = load_images(args.data)
    model, info = load_model(args.checkpoint, device=device, strict=True)
    scale = _check_scale(args.scale, info)
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
        compile=args.compile,
    )
    print(format_table(result, per_image=args.per_image))
    if args.json:
        print(f"wrote {_write_json(result, args.json)}", file=sys.stderr)
    return 0


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from e


def _starts(text: str) -> list[str | float]:
    out: list[str | float] = []
    for v in (v.strip() for v in text.split(",") if v.strip()):
        try:
            out.append("noise" if v == "noise" else float(v))
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"a start is 'noise' or a γ_start in (0, 1), got {v!r}") from e
    return out


def _floats(text: str) -> list[float]:
    if text.strip() == "none":
        return []
    try:
        out = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers or 'none', got {text!r}") from e
    bad = [g for g in out if not 0 < g < 1]
    if bad:
        raise argparse.ArgumentTypeError(f"a noise level γ lies in (0, 1), got {bad[0]:g}")
    return out


CLIPS = {"off": (False,), "on": (True,), "both": (False, True)}


def add_search_arguments(p: argparse.ArgumentParser) -> None:
    _add_common(p, crop_default=128)
    p.add_argument("--steps", type=_ints, default="25,50,100", help="step counts to try, comma-separated")
    p.add_argument(
        "--variances",
        default="paper,posterior",
        help="sampler variances to try: paper (σ²=1−α_t), posterior (σ²=(1−γ_{t−1})(1−α_t)/(1−γ_t))",
    )
    p.add_argument(
        "--starts",
        type=_starts,
        default="noise,0.05,0.2,0.5",
        help="starts to try: 'noise' (the paper's) and γ_start values for a part-way bicubic start",
    )
    p.add_argument(
        "--clip-y0",
        choices=("off", "on", "both"),
        default="off",
        help="clip ŷ_0 to [−1, 1] inside each step (the reference code's variant): off, on, or try both",
    )
    p.add_argument(
        "--linear-gammas",
        type=_floats,
        default="0.01,0.001",
        help="also try chains from pure noise on a linear β schedule (β_1 = 1e-6) that begin at each of these noise "
        "levels γ, comma-separated; 'none' for no linear chains",
    )
    p.add_argument("--samples", type=int, default=1, help="SR3 samples per photo and schedule")
    p.add_argument(
        "--detail-band",
        type=float,
        nargs=2,
        default=(0.8, 1.25),
        metavar=("LO", "HI"),
        help="detail ratios counted as photo-like; the best PSNR inside the band wins",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (the same for every schedule)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps, or auto")
    p.add_argument("--batch-size", type=int, default=4, help="images refined together")


def run_search(args: argparse.Namespace) -> int:
    variances = [v.strip() for v in args.variances.split(",") if v.strip()]
    bad = [v for v in variances if v not in ("paper", "posterior")]
    if bad:
        raise ValueError(f"--variances: {bad[0]!r} is not one of paper, posterior")
    device = resolve_device(args.device)
    images = load_images(args.data)
    model, info = load_model(args.checkpoint, device=device, strict=True)
    scale = _check_scale(args.scale, info)
    rows = search_schedules(
        model,
        images,
        default_candidates(args.steps, variances, args.starts, CLIPS[args.clip_y0], args.linear_gammas),
        scale=scale,
        info=info,
        samples=args.samples,
        seed=args.seed,
        crop=args.crop,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        detail_band=tuple(args.detail_band),
    )
    print(format_search(rows))
    best = rows[0]
    flags = f"--steps {best['steps']} --variance {best['variance']} --start {best['start']}"
    if best["start"] == "bicubic":
        flags += f" --gamma-start {best['gamma_start']:g}"
    if best.get("betas"):
        flags += f" --betas {best['betas'][0]:.6g} {best['betas'][1]:.6g}"
    if best["clip_y0"]:
        flags += " --clip-y0 on"
    print(f"best: {flags}" + ("" if best["feasible"] else " (no schedule reached the detail band)"))
    if args.json:
        out = {
            "criterion": "max PSNR with detail ratio in band and consistency <= bicubic's, else detail ratio nearest 1",
            "rows": rows,
        }
        out["config"] = {
            "scale": scale,
            "samples": args.samples,
            "seed": args.seed,
            "crop": args.crop,
            "detail_band": list(args.detail_band),
            "checkpoint": info["path"],
        }
        print(f"wrote {_write_json(out, args.json)}", file=sys.stderr)
    return 0
