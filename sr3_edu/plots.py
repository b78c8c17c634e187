"""The figures: the demo's, drawn from `sr3_edu.evaluate`'s results (the methods side by side, `plot_comparison`; one
chain of iterative refinement, `plot_refinement`), and `show`, the one image panel they and the notebooks draw."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .images import to_uint8

__all__ = ["PANELS", "show", "plot_comparison", "plot_refinement"]

PANELS: tuple[tuple[str, str], ...] = (
    ("lr", "LR (input)"),
    ("bicubic", "bicubic"),
    ("regression", "regression"),
    ("sr3", "SR3"),
    ("hr", "HR"),
)
"""The columns of `plot_comparison`: (key in an evaluation's kept tensors, title)."""


def show(ax, t: torch.Tensor, title: str | None = None, fontsize: float = 8) -> None:
    """An image in [−1, 1] on ``ax`` (nearest-neighbour, so pixels stay pixels), without ticks."""
    ax.imshow(to_uint8(t), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)


def plot_comparison(result: dict[str, Any], path: str | Path, zoom: float = 1 / 3, dpi: int = 80) -> Path:
    """LR | bicubic | regression | SR3 | HR for every photo, a zoomed center detail under each row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    tensors = result["tensors"]
    scores = {rec["name"]: rec["methods"] for rec in result["images"]}
    cols = [(k, label) for k, label in PANELS if k in ("lr", "hr") or k in next(iter(tensors.values()))]
    rows = len(tensors) * 2
    fig, axes = plt.subplots(rows, len(cols), figsize=(1.9 * len(cols), 1.9 * rows), squeeze=False)
    for r, (name, t) in enumerate(tensors.items()):
        H, W = t["hr"].shape[-2:]
        zh, zw = max(8, int(H * zoom)), max(8, int(W * zoom))
        top, left = (H - zh) // 2, (W - zw) // 2
        for c, (key, label) in enumerate(cols):
            img = t[key][0] if key == "sr3" else t[key]  # the first of the K samples
            title = f"{name}\n{label}" if c == 0 else label
            if key in scores[name]:
                s = scores[name][key]
                title += f"\n{s['psnr']:.1f} dB, detail {s['detail_ratio']:.2f}"
            show(axes[2 * r, c], img, title)
            # the same region in every column; the LR is `scale` times smaller
            f = img.shape[-1] / W
            axes[2 * r, c].add_patch(
                Rectangle((left * f - 0.5, top * f - 0.5), zw * f, zh * f, fill=False, edgecolor="yellow", lw=0.8)
            )
            crop = img[:, int(top * f) : int((top + zh) * f), int(left * f) : int((left + zw) * f)]
            show(axes[2 * r + 1, c], crop)
    fig.suptitle("×{scale}: PSNR rewards the blurry mean; SR3 samples keep the detail".format(**result["config"]))
    return _save(fig, path, dpi)


def plot_refinement(
    steps: list[tuple[int, float, torch.Tensor, torch.Tensor | None]], path: str | Path, columns: int = 8, dpi: int = 80
) -> Path:
    """A strip of y_t (top) and ŷ_0 (bottom) along the reverse process, from y_T to y_0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(steps) > columns:
        # always the first (y_T) and the last (y_0), evenly in between
        idx = torch.linspace(0, len(steps) - 1, columns).round().long().unique().tolist()
        steps = [steps[i] for i in idx]
    fig, axes = plt.subplots(2, len(steps), figsize=(1.6 * len(steps), 3.9), squeeze=False)
    for c, (t, gamma, y_t, y0_hat) in enumerate(steps):
        # 1 − γ_t: the share of noise in y_t's variance (γ_t itself rounds to 1 near the end)
        show(axes[0, c], y_t, f"y_{t}\n1−γ={1 - gamma:.2g}")
        show(axes[1, c], y0_hat if y0_hat is not None else y_t)
        axes[1, c].set_xlabel(f"ŷ_0 from y_{t}" if y0_hat is not None else "y_0 (the output)", fontsize=8)
    fig.suptitle("Iterative refinement: y_t (top) and the network's estimate ŷ_0 (bottom)", fontsize=9)
    return _save(fig, path, dpi)


def _save(fig, path: str | Path, dpi: int) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
