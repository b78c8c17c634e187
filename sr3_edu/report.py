"""Text tables of the scores: `format_table` for `sr3_edu.evaluate.evaluate`'s result, `format_search` for the
rows of `sr3_edu.search.search_schedules`. Plots are `sr3_edu.plots`'s."""

from __future__ import annotations

import math
from typing import Any

from .inference import describe

__all__ = ["METHODS", "format_number", "format_table", "format_search"]

METHODS = ("bicubic", "regression", "sr3", "sr3_mean")
"""The methods `sr3_edu.evaluate.evaluate` scores, in the order the tables list them."""

COLUMNS = [
    ("psnr", "PSNR ↑", "{:.2f}"),
    ("psnr_y", "PSNR-Y ↑", "{:.2f}"),
    ("ssim", "SSIM ↑", "{:.3f}"),
    ("consistency", "Consist. ↓", "{:.2f}"),
    ("color_error", "Colour ↓", "{:.4f}"),
    ("detail_ratio", "Detail →1", "{:.2f}"),
    ("seconds_per_image", "s/image", "{:.2f}"),
]


def format_number(fmt: str, v: float | None) -> str:
    """``fmt.format(v)``, or "n/a" for a missing or non-finite value (a table cell)."""
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


def format_table(result: dict[str, Any], per_image: bool = False) -> str:
    """The methods as rows, the metrics as columns (means over images); ``per_image`` adds one block per photo."""
    labels = {"bicubic": "bicubic", "regression": "regression", "sr3": "SR3 (a sample)", "sr3_mean": "SR3 mean of K"}

    def block(methods: dict[str, dict[str, float]]) -> list[str]:
        head = f"{'method':<16}" + "".join(f"{h:>12}" for _, h, _ in COLUMNS)
        lines = [head, "-" * len(head)]
        for m in METHODS:
            if m in methods:
                lines.append(
                    f"{labels[m]:<16}" + "".join(f"{format_number(f, methods[m].get(k)):>12}" for k, _, f in COLUMNS)
                )
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


def format_search(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'rank':>4} {'steps':>5} {'NFE':>5} {'sampler':>10} {'start':>14} {'chain':>17} {'clip':>4} "
        f"{'PSNR':>7} {'PSNR-Y':>7} {'SSIM':>6} {'Consist.':>9} {'Colour':>7} {'Detail':>7} {'s/img':>7}  in band"
    )
    lines = [head, "-" * len(head)]
    f = format_number
    for r in rows:
        start = "noise" if r["start"] == "noise" else f"bicubic@{r['gamma_start']:g}"
        chain = f"linear β→{r['betas'][1]:.3g}" if r.get("betas") else "respaced"
        sampler = f"DDIM η={r['eta']:g}" if r.get("sampler") == "ddim" else r["variance"]
        lines.append(
            f"{r['rank']:>4} {r['steps']:>5} {r['nfe']:>5} {sampler:>10} {start:>14} {chain:>17} "
            f"{'on' if r.get('clip_y0') else 'off':>4} "
            f"{f('{:.2f}', r['psnr']):>7} {f('{:.2f}', r.get('psnr_y')):>7} "
            f"{f('{:.3f}', r['ssim']):>6} {f('{:.2f}', r['consistency']):>9} "
            f"{f('{:.4f}', r.get('color_error')):>7} "
            f"{f('{:.2f}', r['detail_ratio']):>7} {r['seconds_per_image']:>7.2f}  {'yes' if r['feasible'] else 'no'}"
        )
    if rows and "consistency_limit" in rows[0]:
        lines.append(
            f"in band: detail ratio in the band and consistency ≤ bicubic's {rows[0]['consistency_limit']:.2f}"
        )
    return "\n".join(lines)
