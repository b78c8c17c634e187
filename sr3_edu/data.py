"""Paired data (x, y₀) for SR3: the low-resolution condition x and the high-resolution target y₀.

Step 1 of training draws (x, y₀) ~ p(x, y). Here y₀ is a random hr_size×hr_size crop of a photo and x its
bicubic, antialiased downscale by ``scale`` (`sr3_edu.images.downscale_pil`, the paper's §4 "bicubic
interpolation with anti-aliasing enabled"), both as tensors in [−1, 1].

Resuming a run must give bit-identical batches, so an item is a pure function of (seed, epoch, index): each
``__getitem__`` seeds its own ``torch.Generator`` from those three numbers and keeps no RNG state between calls.
`set_epoch` changes the crops from one epoch to the next. With a ``DataLoader`` call `set_epoch` before iterating
and keep ``persistent_workers=False`` (the default), so that the workers copy the dataset with the new epoch.

Augmentations, all applied to the high-resolution crop before it is downscaled, so x stays exactly
``downscale_pil(y₀)``:

* horizontal and vertical flips (each with probability ½); photos have no preferred left/right, and textures
  none for up/down either;
* ``color_augment``: a random permutation of the R, G, B channels. Bicubic downscaling filters each channel on
  its own, so permuting then downscaling equals downscaling then permuting: the pair stays a valid (x, y₀).

Problems with the input are reported with ``warnings.warn`` (category `DataWarning`), each once, when the data
set is built: a converted image (grayscale, RGBA, 16-bit), an image enlarged or skipped for being smaller than
the crop, an unreadable file skipped under ``skip_bad_images``. Anything that would make a wrong data set
raises ``ValueError`` naming the file or folder and the fix.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from typing import Literal

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from .folders import SUFFIX_LIST, DataFolderNotFoundError, DataWarning, check_folder, find_images, prepared_dirs
from .images import downscale_pil, load_rgb, to_tensor
from .items import check_seed_epoch, check_sizes, draw_index, item_generator
from .prepared import PreparedPairsDataset

__all__ = [
    "PairedImageDataset",
    "PreparedPairsDataset",
    "make_dataset",
    "DataWarning",
    "DataFolderNotFoundError",
    "MIN_SAMPLES_PER_EPOCH",
]

# The default patches_per_image makes an epoch at least this long, so a handful of photos still fills batches.
MIN_SAMPLES_PER_EPOCH = 64


class PairedImageDataset(Dataset):
    """Random crops of photos as (x_lr, y0) pairs: y0 (3, hr, hr) and x_lr = its bicubic downscale (3, hr/s, hr/s).

    Item ``i`` uses photo ``i % n_images``; there are ``patches_per_image`` items per photo (default: enough for
    `MIN_SAMPLES_PER_EPOCH` items per epoch). Photos smaller than ``hr_size`` on either side are enlarged
    (bicubic, aspect kept) with ``small="upscale"`` or left out with ``small="skip"``, each with a `DataWarning`.
    """

    def __init__(
        self,
        images: Sequence[tuple[str, Image.Image]],
        hr_size: int = 64,
        scale: int = 4,
        *,
        flips: bool = True,
        color_augment: bool = False,
        patches_per_image: int | None = None,
        seed: int = 0,
        small: Literal["upscale", "skip"] = "upscale",
        source: str = "the given images",
    ) -> None:
        check_sizes(hr_size, scale)
        check_seed_epoch(seed, 0)
        if small not in ("upscale", "skip"):
            raise ValueError(f"small must be 'upscale' or 'skip', got {small!r}")
        self.hr_size, self.scale, self.lr_size = hr_size, scale, hr_size // scale
        self.flips, self.color_augment, self.seed, self.epoch = flips, color_augment, seed, 0

        self._keep_images(images, small)
        if not self.images:
            raise ValueError(
                f"no usable images in {source}: all {len(images)} were skipped (see the warnings); "
                f"use photos of at least {hr_size}×{hr_size} pixels"
            )

        if patches_per_image is None:
            patches_per_image = math.ceil(MIN_SAMPLES_PER_EPOCH / len(self.images))
        if not isinstance(patches_per_image, int) or patches_per_image < 1:
            raise ValueError(f"patches_per_image must be a positive integer, got {patches_per_image!r}")
        self.patches_per_image = patches_per_image

    def _keep_images(self, images: Sequence[tuple[str, Image.Image]], small: str) -> None:
        """``self.names`` and ``self.images``: the photos as RGB, small ones enlarged or left out (`DataWarning` each).

        The warnings carry stacklevel 3, so that they name the line that built the data set."""
        hr_size = self.hr_size
        self.names: list[str] = []
        self.images: list[Image.Image] = []
        for name, img in images:
            if img.mode != "RGB":
                warnings.warn(f"{name}: {img.mode} converted to RGB", DataWarning, stacklevel=3)
                img = img.convert("RGB")
            w, h = img.size
            if min(w, h) < hr_size:
                if small == "skip":
                    warnings.warn(
                        f"skipped {name}: {w}×{h} is smaller than the {hr_size}×{hr_size} crop (small='skip')",
                        DataWarning,
                        stacklevel=3,
                    )
                    continue
                # enlarge by hr/min(w, h) so the short side is exactly hr_size
                f = hr_size / min(w, h)
                size = (max(hr_size, round(w * f)), max(hr_size, round(h * f)))
                warnings.warn(
                    f"{name}: {w}×{h} is smaller than the {hr_size}×{hr_size} crop; enlarged (bicubic) to "
                    f"{size[0]}×{size[1]}. Its crops hold no real detail: use larger photos or a smaller hr_size",
                    DataWarning,
                    stacklevel=3,
                )
                img = img.resize(size, Image.Resampling.BICUBIC)
            self.names.append(name)
            self.images.append(img)

    @classmethod
    def from_folder(
        cls,
        root: str | os.PathLike,
        hr_size: int = 64,
        scale: int = 4,
        *,
        skip_bad_images: bool = False,
        **kwargs,
    ) -> PairedImageDataset:
        """All images under ``root`` (recursive; suffixes in `IMAGE_SUFFIXES`, any case), decoded once here.

        An unreadable file raises ``ValueError`` naming it, or with ``skip_bad_images`` is skipped with a warning.
        Other keyword arguments go to the constructor.
        """
        root = check_folder(root)
        paths = find_images(root)
        if not paths:
            raise ValueError(
                f"no images in {root}: looked for files ending in {SUFFIX_LIST} (any case, subfolders included)"
            )
        images = []
        for p in paths:
            try:
                img, note = load_rgb(p)
            except ValueError as e:
                if not skip_bad_images:
                    raise
                warnings.warn(f"skipped unreadable {p} ({e.__cause__ or e})", DataWarning, stacklevel=2)
                continue
            if note:
                warnings.warn(note, DataWarning, stacklevel=2)
            images.append((str(p), img))
        if not images:
            raise ValueError(f"no readable images in {root}: all {len(paths)} files ending in {SUFFIX_LIST} failed")
        return cls(images, hr_size, scale, source=f"{root} (files ending in {SUFFIX_LIST})", **kwargs)

    @classmethod
    def from_builtin(
        cls, split: Literal["train", "val", "all"] = "train", hr_size: int = 64, scale: int = 4, **kwargs
    ) -> PairedImageDataset:
        """The built-in photos of ``split`` (see `sr3_edu.builtin`)."""
        from .builtin import builtin_images

        images = list(builtin_images(split).items())
        return cls(images, hr_size, scale, source=f"the built-in {split!r} photos", **kwargs)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch: items are a function of (seed, epoch, index)."""
        check_seed_epoch(self.seed, epoch)
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images) * self.patches_per_image

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for a data set of {len(self)} items")
        img = self.images[i % len(self.images)]
        g = item_generator(self.seed, self.epoch, i)
        hr = self.hr_size
        w, h = img.size
        # Every random number is drawn whatever the options, so an option changes only what it controls.
        top, left = draw_index(g, h - hr + 1), draw_index(g, w - hr + 1)
        hflip, vflip = draw_index(g, 2), draw_index(g, 2)
        perm = torch.randperm(3, generator=g).tolist()

        crop = img.crop((left, top, left + hr, top + hr))
        if self.flips and hflip:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if self.flips and vflip:
            crop = crop.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        if self.color_augment:
            bands = crop.split()
            crop = Image.merge("RGB", [bands[c] for c in perm])
        # x = bicubic↓s(y₀), made from the augmented crop itself
        x_lr = to_tensor(downscale_pil(crop, self.scale))  # (3, hr/s, hr/s)
        y0 = to_tensor(crop)  # (3, hr, hr)
        return x_lr, y0


def make_dataset(
    data: str | os.PathLike,
    *,
    hr_size: int = 64,
    scale: int = 4,
    split: Literal["train", "val", "all"] = "train",
    seed: int = 0,
    flips: bool = True,
    color_augment: bool = False,
    skip_bad_images: bool = False,
    small: Literal["upscale", "skip"] = "upscale",
    patches_per_image: int | None = None,
) -> PairedImageDataset | PreparedPairsDataset:
    """The data set behind ``--data``: "builtin" (the built-in ``split``), a prepare_data.py folder (lr_*/hr_*
    subfolders, `PreparedPairsDataset`; hr_size and scale must match it), or any folder of images.

    ``split`` applies to "builtin" only: a folder is used whole (give validation its own folder).
    ``small`` and ``patches_per_image`` do not apply to prepared pairs (their sizes are fixed).
    """
    kwargs = dict(flips=flips, color_augment=color_augment, seed=seed)
    if str(data) == "builtin":
        return PairedImageDataset.from_builtin(
            split, hr_size, scale, small=small, patches_per_image=patches_per_image, **kwargs
        )
    root = check_folder(data)
    if prepared_dirs(root) is not None:
        return PreparedPairsDataset(root, hr_size=hr_size, scale=scale, skip_bad_images=skip_bad_images, **kwargs)
    return PairedImageDataset.from_folder(
        root,
        hr_size,
        scale,
        skip_bad_images=skip_bad_images,
        small=small,
        patches_per_image=patches_per_image,
        **kwargs,
    )
