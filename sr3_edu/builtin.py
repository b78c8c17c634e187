"""Built-in photos: natural colour images shipped inside installed packages, so training and the demo work offline.

Sources (all read from files installed with the package, never downloaded):

* scikit-image's ``skimage.data``: ``astronaut`` (512×512), ``chelsea`` (451×300, a cat), ``coffee`` (600×400),
  ``rocket`` (640×427), ``hubble_deep_field`` (1000×872), ``immunohistochemistry`` (512×512, a stained tissue
  slide), ``retina`` (1411×1411), and the two views of ``stereo_motorcycle`` (741×500 each), here
  ``motorcycle_left`` and ``motorcycle_right``;
* matplotlib's sample ``grace_hopper.jpg`` (512×600, a portrait).

Sizes are width×height. ``skimage.data`` also lists images (``lily``, ``skin``, ``kidney``, …) that it fetches
with ``pooch`` over the network; they are left out on purpose. ``cat`` is the same photo as ``chelsea``.

The split is fixed, by image (never by patch, so no validation pixel is ever trained on):

* train (7): ``astronaut``, ``coffee``, ``hubble_deep_field``, ``immunohistochemistry``, ``retina``,
  ``motorcycle_left``, ``motorcycle_right``. The two motorcycle views are near-duplicates (a stereo pair a few
  centimetres apart), so they must sit on the same side; on the validation side they would be validated against
  their own twin.
* val (3): ``rocket``, ``chelsea``, ``grace_hopper``: a man-made scene with sky and hard edges, an animal with
  fur (fine stochastic texture), and a human face. Three different kinds of content, each with a relative in the
  training side (machinery in ``motorcycle``, texture in ``coffee``, a face in ``astronaut``) but none a copy, so
  validation measures generalisation to new photos rather than to an unseen domain.

``skimage`` and ``matplotlib`` are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

import numpy as np
from PIL import Image

__all__ = ["BUILTIN_SPLIT", "builtin_names", "load_builtin", "builtin_images"]

BUILTIN_SPLIT: dict[str, tuple[str, ...]] = {
    "train": (
        "astronaut",
        "coffee",
        "hubble_deep_field",
        "immunohistochemistry",
        "retina",
        "motorcycle_left",
        "motorcycle_right",
    ),
    "val": ("rocket", "chelsea", "grace_hopper"),
}

_SKIMAGE_NAMES = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")


def builtin_names(split: Literal["train", "val", "all"] = "train") -> tuple[str, ...]:
    """Names of the built-in photos in ``split`` ("train", "val" or "all" = train then val)."""
    if split == "all":
        return BUILTIN_SPLIT["train"] + BUILTIN_SPLIT["val"]
    if split not in BUILTIN_SPLIT:
        raise ValueError(f"unknown built-in split {split!r}; choose one of 'train', 'val', 'all'")
    return BUILTIN_SPLIT[split]


@cache
def _load_array(name: str) -> np.ndarray:
    # Decoding a JPEG/PNG takes tens of milliseconds; keep each photo once per process.
    if name in _SKIMAGE_NAMES:
        import skimage.data

        a = getattr(skimage.data, name)()
    elif name in ("motorcycle_left", "motorcycle_right"):
        import skimage.data

        left, right, _disparity = skimage.data.stereo_motorcycle()
        a = left if name == "motorcycle_left" else right
    elif name == "grace_hopper":
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as f, Image.open(f) as im:
            a = np.asarray(im.convert("RGB"))
    else:
        raise ValueError(f"unknown built-in image {name!r}; choose one of {', '.join(builtin_names('all'))}")
    a = np.ascontiguousarray(a)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise RuntimeError(f"built-in image {name!r} is {a.dtype} {a.shape}, expected 8-bit RGB")
    a.setflags(write=False)
    return a


def load_builtin(name: str) -> Image.Image:
    """One built-in photo as an 8-bit RGB PIL image (a fresh copy; the decoded pixels are cached)."""
    return Image.fromarray(_load_array(name))


def builtin_images(split: Literal["train", "val", "all"] = "train") -> dict[str, Image.Image]:
    """All photos of ``split``, name → 8-bit RGB PIL image, in the order of `builtin_names`."""
    return {name: load_builtin(name) for name in builtin_names(split)}
