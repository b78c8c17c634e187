"""Images ↔ tensors, and the bicubic resampling that makes and enlarges low-resolution inputs.

Model tensors are float32 in [−1, 1], shape (C, H, W) or (B, C, H, W). Low-resolution inputs are made
as in the paper (§4 Datasets): "bicubic interpolation with anti-aliasing enabled".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import Tensor

__all__ = [
    "to_tensor",
    "to_image",
    "to_uint8",
    "load_rgb",
    "exif_orientation",
    "downscale_pil",
    "downscale",
    "upscale_bicubic",
    "IMAGE_SUFFIXES",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def to_tensor(img: Image.Image | np.ndarray) -> Tensor:
    """RGB uint8 image (PIL or H×W×3 array) → float32 tensor (3, H, W) in [−1, 1]."""
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise TypeError(f"expected an 8-bit image, got dtype {a.dtype}; load it with sr3_edu.images.load_rgb")
    if a.ndim == 2:
        a = a[:, :, None]
    t = torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1).float()
    # [0, 255] → [−1, 1]
    return t / 127.5 - 1.0


def to_uint8(t: Tensor) -> np.ndarray:
    """Tensor (C, H, W) in [−1, 1] → H×W×C uint8 array (values outside are clipped)."""
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(f"to_uint8 takes one image, got a batch of {t.shape[0]}")
        t = t[0]
    a = ((t.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return a.permute(1, 2, 0).numpy()


def to_image(t: Tensor) -> Image.Image:
    """Tensor (C, H, W) in [−1, 1] → PIL RGB image."""
    return Image.fromarray(to_uint8(t))


EXIF_ORIENTATION = 0x0112
"""The EXIF tag that says how a camera's stored pixels are to be turned for display (1: as stored)."""


def exif_orientation(im: Image.Image) -> int:
    """The EXIF orientation (1–8) of an opened image, from what its header holds; 1 when it has none.

    A PNG's eXIf chunk counts only when it comes before the pixels (where PIL writes it): looking further would
    decode the whole image, and `image_header` and `load_rgb` must agree without doing so. A TIFF counts as 1:
    PIL turns TIFFs itself (upright size when opened, upright pixels when loaded)."""
    if im.format == "TIFF" or (im.format == "PNG" and "exif" not in im.info):
        return 1
    value = im.getexif().get(EXIF_ORIENTATION, 1)
    return value if value in range(1, 9) else 1


def load_rgb(path: str | Path) -> tuple[Image.Image, str | None]:
    """Open any image as 8-bit RGB, upright. Returns the image and a note when it had to be converted.

    A photo whose EXIF orientation tag says its pixels are stored turned or mirrored (as many cameras and phones
    store them) is turned the way image viewers show it, so its enlargement is upright too. Grayscale, palette,
    RGBA (alpha dropped onto black) and 16-bit images are converted; a file PIL cannot read raises ``ValueError``
    naming the file. An ICC colour profile of RGB values stays in ``info["icc_profile"]`` (a wide-gamut phone
    photo's colours mean something else without it); one of other values (grey, CMYK) is left out, as the pixels
    are RGB now.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            turned = exif_orientation(im) != 1
            im.load()
            img = ImageOps.exif_transpose(im) if turned else im
            rgb, note = _to_rgb(img, path)
            if rgb is im:  # an upright RGB file: the pixels must outlive the file
                rgb = im.copy()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(
            f"cannot read image {path}: {e}. Re-save it as PNG/JPEG, remove it from the folder, "
            f"or pass --skip-bad-images to skip unreadable files"
        ) from e
    profile = rgb.info.pop("icc_profile", None) or img.info.get("icc_profile")
    if profile and profile[16:20] == b"RGB ":  # the ICC header's colour space field
        rgb.info["icc_profile"] = profile
    return rgb, note


def _to_rgb(img: Image.Image, path: Path) -> tuple[Image.Image, str | None]:
    mode = img.mode
    if mode == "RGB":
        return img, None
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if a.max() > 255 else 255.0
        a8 = np.clip(np.round(a / top * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(a8).convert("RGB"), f"{path}: {mode} (16-bit) converted to 8-bit RGB"
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        return img.convert("RGBA").convert("RGB"), f"{path}: alpha channel dropped ({mode} → RGB)"
    return img.convert("RGB"), f"{path}: {mode} converted to RGB"


def downscale_pil(img: Image.Image, scale: int) -> Image.Image:
    """The paper's LR image: PIL bicubic resize by 1/scale (PIL filters with antialiasing when shrinking)."""
    w, h = img.size
    if w % scale or h % scale:
        raise ValueError(f"image of {w}×{h} is not divisible by the scale {scale}; crop it to a multiple first")
    return img.resize((w // scale, h // scale), Image.Resampling.BICUBIC)


def downscale(x: Tensor, scale: int) -> Tensor:
    """Tensor version of `downscale_pil`: bicubic with antialiasing, (B, C, H, W) → (B, C, H/s, W/s).

    torch's antialiased bicubic uses PIL's kernel (a = −0.5, support widened by the scale), so it matches
    `downscale_pil` up to 8-bit rounding; the consistency metric uses it on model outputs.
    """
    H, W = x.shape[-2:]
    if H % scale or W % scale:
        raise ValueError(f"tensor of {H}×{W} is not divisible by the scale {scale}")
    return F.interpolate(x, size=(H // scale, W // scale), mode="bicubic", antialias=True, align_corners=False)


def upscale_bicubic(x: Tensor, scale: int | None = None, size: tuple[int, int] | None = None) -> Tensor:
    """Bicubic enlargement (the baseline, and what the U-Net does to x before concatenating it)."""
    if size is None:
        if scale is None:
            raise ValueError("give scale or size")
        size = (x.shape[-2] * scale, x.shape[-1] * scale)
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False)
