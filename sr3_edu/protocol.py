"""The evaluation protocol: each held-out photo y_0 and its input x, made exactly as training makes them.

SR3 §4: x is y_0 shrunk by bicubic interpolation with anti-aliasing (`downscale_pil`, saved as 8 bits). Pairs come
in the paper's order, (x, y_0): the condition first, then the target, as in every data item of `sr3_edu.data`.
"""

from __future__ import annotations

from PIL import Image
from torch import Tensor

from .images import downscale_pil, to_tensor

__all__ = ["prepare_pair", "tensor_pairs", "size_groups"]


def prepare_pair(img: Image.Image, scale: int, crop: int | None = None) -> tuple[Image.Image, Image.Image]:
    """(x, y_0): the photo y_0 center-cropped to at most ``crop``×``crop`` and trimmed to a multiple of ``scale`` on
    the right and bottom, and its low-resolution version x made as in training (`downscale_pil`)."""
    _check_crop(crop, scale)
    img = img.convert("RGB")
    W, H = img.size
    if crop is not None:
        cw, ch = min(crop, W), min(crop, H)
        left, top = (W - cw) // 2, (H - ch) // 2
        img = img.crop((left, top, left + cw, top + ch))
        W, H = img.size
    W, H = W - W % scale, H - H % scale
    if W < scale or H < scale:
        raise ValueError(
            f"an image of {img.width}×{img.height} is smaller than the scale {scale}: a held-out photo needs at least "
            f"{scale}×{scale} pixels (remove it from the photos evaluated)"
        )
    y0 = img.crop((0, 0, W, H))
    return downscale_pil(y0, scale), y0


def _check_crop(crop: int | None, scale: int) -> None:
    if crop is not None and crop < scale:
        raise ValueError(f"a crop of {crop} pixels is smaller than the scale {scale}: crop to at least {scale}")


def tensor_pairs(
    images: dict[str, Image.Image], scale: int, crop: int | None = None
) -> dict[str, tuple[Tensor, Tensor]]:
    """name → (x, y_0) as (1, C, H/s, W/s) and (1, C, H, W) tensors in [−1, 1], each made by `prepare_pair`."""
    _check_crop(crop, scale)  # before any photo, which it is not the fault of
    pairs = {}
    for name, img in images.items():
        try:
            x, y0 = prepare_pair(img, scale, crop)
        except ValueError as e:
            raise ValueError(f"photo {name!r}: {e}") from None
        pairs[name] = (to_tensor(x)[None], to_tensor(y0)[None])
    return pairs


def size_groups(pairs: dict[str, tuple[Tensor, Tensor]]) -> list[list[str]]:
    """Names grouped by image size, so photos of one size are refined in one batch."""
    by_size: dict[tuple[int, ...], list[str]] = {}
    for name, (_, y0) in pairs.items():
        by_size.setdefault(tuple(y0.shape), []).append(name)
    return list(by_size.values())
