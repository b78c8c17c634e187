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
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from .images import IMAGE_SUFFIXES, downscale_pil, load_rgb, to_tensor

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

_SUFFIX_LIST = ", ".join(IMAGE_SUFFIXES)


class DataWarning(UserWarning):
    """Something about the input images was fixed or skipped; the message names the file."""


class DataFolderNotFoundError(FileNotFoundError, ValueError):
    """The data folder does not exist (both a FileNotFoundError and a ValueError)."""


def _item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A generator that depends only on (seed, epoch, index); SeedSequence mixes the three into 64 well-spread bits."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def _draw(g: torch.Generator, n: int) -> int:
    """An integer uniform on {0, …, n−1}."""
    return int(torch.randint(n, (1,), generator=g))


def _check_sizes(hr_size: int, scale: int) -> None:
    for name, v in (("hr_size", hr_size), ("scale", scale)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if hr_size % scale:
        raise ValueError(
            f"hr_size {hr_size} is not divisible by scale {scale}: the LR side would be {hr_size / scale:g}; "
            f"use an hr_size that is a multiple of {scale}, e.g. {max(scale, hr_size // scale * scale)}"
        )


def _check_seed_epoch(seed: int, epoch: int) -> None:
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")


def _find_images(root: Path) -> list[Path]:
    """Image files under ``root``, recursively, sorted; hidden files and folders (".name") are left out."""
    found = []
    # os.walk does not follow symlinked folders, so a link loop cannot make this hang.
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            path = Path(dirpath) / f
            # is_file() leaves out pipes and devices, which would block a read forever
            if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES) and path.is_file():
                found.append(path)
    return found


def _check_folder(root: str | os.PathLike) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise DataFolderNotFoundError(f"data folder {root} does not exist; check the path (or use --data builtin)")
    if not root.is_dir():
        raise ValueError(f"{root} is a file, not a folder; put the training images in a folder and pass the folder")
    return root


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
        _check_sizes(hr_size, scale)
        _check_seed_epoch(seed, 0)
        if small not in ("upscale", "skip"):
            raise ValueError(f"small must be 'upscale' or 'skip', got {small!r}")
        self.hr_size, self.scale, self.lr_size = hr_size, scale, hr_size // scale
        self.flips, self.color_augment, self.seed, self.epoch = flips, color_augment, seed, 0

        self.names: list[str] = []
        self.images: list[Image.Image] = []
        for name, img in images:
            if img.mode != "RGB":
                warnings.warn(f"{name}: {img.mode} converted to RGB", DataWarning, stacklevel=2)
                img = img.convert("RGB")
            w, h = img.size
            if min(w, h) < hr_size:
                if small == "skip":
                    warnings.warn(
                        f"skipped {name}: {w}×{h} is smaller than the {hr_size}×{hr_size} crop (small='skip')",
                        DataWarning,
                        stacklevel=2,
                    )
                    continue
                # enlarge by hr/min(w, h) so the short side is exactly hr_size
                f = hr_size / min(w, h)
                size = (max(hr_size, round(w * f)), max(hr_size, round(h * f)))
                warnings.warn(
                    f"{name}: {w}×{h} is smaller than the {hr_size}×{hr_size} crop; enlarged (bicubic) to "
                    f"{size[0]}×{size[1]}. Its crops hold no real detail: use larger photos or a smaller hr_size",
                    DataWarning,
                    stacklevel=2,
                )
                img = img.resize(size, Image.Resampling.BICUBIC)
            self.names.append(name)
            self.images.append(img)
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
        root = _check_folder(root)
        paths = _find_images(root)
        if not paths:
            raise ValueError(
                f"no images in {root}: looked for files ending in {_SUFFIX_LIST} (any case, subfolders included)"
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
            raise ValueError(f"no readable images in {root}: all {len(paths)} files ending in {_SUFFIX_LIST} failed")
        return cls(images, hr_size, scale, source=f"{root} (files ending in {_SUFFIX_LIST})", **kwargs)

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
        _check_seed_epoch(self.seed, epoch)
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images) * self.patches_per_image

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for a data set of {len(self)} items")
        img = self.images[i % len(self.images)]
        g = _item_generator(self.seed, self.epoch, i)
        hr = self.hr_size
        w, h = img.size
        # Every random number is drawn whatever the options, so an option changes only what it controls.
        top, left = _draw(g, h - hr + 1), _draw(g, w - hr + 1)
        hflip, vflip = _draw(g, 2), _draw(g, 2)
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


def _prepared_dirs(root: Path) -> tuple[Path, Path] | None:
    """The (lr_*, hr_*) subfolders of a prepare_data.py folder, or None if ``root`` has neither."""
    # only lr_<digits>/hr_<digits>, so a photo folder with a subfolder like "hr_photos" stays a photo folder
    lr = sorted(d for d in root.glob("lr_*") if d.is_dir() and d.name[3:].isdigit())
    hr = sorted(d for d in root.glob("hr_*") if d.is_dir() and d.name[3:].isdigit())
    if not lr and not hr:
        return None
    if len(lr) != 1 or len(hr) != 1:
        found = ", ".join(d.name for d in lr + hr) or "none"
        raise ValueError(
            f"{root} looks like a prepared-pairs folder but needs exactly one lr_<size> and one hr_<size> "
            f"subfolder (found: {found}); move the others elsewhere"
        )
    return lr[0], hr[0]


class PreparedPairsDataset(Dataset):
    """Pairs made beforehand, in the layout of the reference implementation's prepare_data.py.

    ``root/lr_{l}/NAME`` is the condition and ``root/hr_{h}/NAME`` the target (``sr_{l}_{h}``, the bicubic
    enlargement, is ignored: the U-Net enlarges x itself). The scale is h / l; every pair is checked to have
    HR = LR × scale and all pairs the same size. Images are read when an item is asked for. Items get the same
    deterministic flips and channel permutation as `PairedImageDataset`, applied to both tensors alike.
    Pass ``hr_size``/``scale`` to have them checked against the folder.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        hr_size: int | None = None,
        scale: int | None = None,
        flips: bool = True,
        color_augment: bool = False,
        seed: int = 0,
        skip_bad_images: bool = False,
    ) -> None:
        self.root = root = _check_folder(root)
        _check_seed_epoch(seed, 0)
        dirs = _prepared_dirs(root)
        if dirs is None:
            raise ValueError(f"{root} has no lr_<size> and hr_<size> subfolders (the prepare_data.py layout)")
        self.lr_dir, self.hr_dir = dirs
        self.flips, self.color_augment, self.seed, self.epoch = flips, color_augment, seed, 0

        # Pairs are matched by path relative to lr_*/ and hr_*/ (prepare_data.py writes the same name to both).
        lr_files = {p.relative_to(self.lr_dir): p for p in _find_images(self.lr_dir)}
        hr_files = {p.relative_to(self.hr_dir): p for p in _find_images(self.hr_dir)}
        if not lr_files and not hr_files:
            raise ValueError(f"no images in {self.lr_dir} or {self.hr_dir}: looked for files ending in {_SUFFIX_LIST}")
        for have, lack, other in ((lr_files, self.hr_dir, hr_files), (hr_files, self.lr_dir, lr_files)):
            missing = sorted(set(have) - set(other))
            if missing:
                more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
                raise ValueError(
                    f"{have[missing[0]]} has no partner {lack / missing[0]}{more}; pairs are matched by file name, "
                    f"so add the missing file or remove its partner"
                )

        self.pairs: list[tuple[Path, Path]] = []
        converted: list[str] = []
        lr_size = hr_size_found = None
        for name in sorted(lr_files):
            try:
                (lw, lh), lmode = _header(lr_files[name])
                (hw, hh), hmode = _header(hr_files[name])
            except ValueError as e:
                if not skip_bad_images:
                    raise
                warnings.warn(f"skipped pair {name}: {e.__cause__ or e}", DataWarning, stacklevel=2)
                continue
            if lr_size is None:
                lr_size, hr_size_found = (lw, lh), (hw, hh)
                if hw % lw or hh % lh or hw // lw != hh // lh:
                    raise ValueError(
                        f"{hr_files[name]} is {hw}×{hh} but {lr_files[name]} is {lw}×{lh}: not a whole scale factor"
                    )
            if (lw, lh) != lr_size or (hw, hh) != hr_size_found:
                raise ValueError(
                    f"pair {name} is {lw}×{lh} → {hw}×{hh}, but the first pair is {lr_size[0]}×{lr_size[1]} → "
                    f"{hr_size_found[0]}×{hr_size_found[1]} ({self.hr_dir / name}); every pair must share one size"
                )
            converted += [str(p) for p, m in ((lr_files[name], lmode), (hr_files[name], hmode)) if m != "RGB"]
            self.pairs.append((lr_files[name], hr_files[name]))
        if not self.pairs:
            raise ValueError(f"no readable pairs in {root}: every pair was skipped (see the warnings)")
        if converted:
            warnings.warn(
                f"{len(converted)} images in {root} are not 8-bit RGB (e.g. {converted[0]}); converted when read",
                DataWarning,
                stacklevel=2,
            )

        # s = h / l, read from the first pair and checked on all of them above
        self.scale = hr_size_found[0] // lr_size[0]
        self.hr_size, self.lr_size = hr_size_found[0], lr_size[0]
        named = f"{self.lr_dir.name} → {self.hr_dir.name}"
        if scale is not None and scale != self.scale:
            raise ValueError(f"{root} holds ×{self.scale} pairs ({named}) but scale {scale} was asked for")
        if hr_size is not None and (hr_size, hr_size) != hr_size_found:
            raise ValueError(
                f"{root} holds {hr_size_found[0]}×{hr_size_found[1]} targets ({named}) but hr_size {hr_size} "
                f"was asked for; pass hr_size={hr_size_found[0]}"
            )

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch: items are a function of (seed, epoch, index)."""
        _check_seed_epoch(self.seed, epoch)
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for a data set of {len(self)} items")
        lr_path, hr_path = self.pairs[i]
        x_lr, y0 = to_tensor(load_rgb(lr_path)[0]), to_tensor(load_rgb(hr_path)[0])  # (3, l, l), (3, h, h)
        if x_lr.shape[-1] * self.scale != y0.shape[-1] or x_lr.shape[-2] * self.scale != y0.shape[-2]:
            raise ValueError(f"{hr_path} changed size since the data set was built; rebuild it")
        g = _item_generator(self.seed, self.epoch, i)
        hflip, vflip = _draw(g, 2), _draw(g, 2)
        perm = torch.randperm(3, generator=g)
        # Flipping commutes with the symmetric bicubic kernel, permuting with per-channel filtering: pairs stay valid.
        if self.flips and hflip:
            x_lr, y0 = x_lr.flip(-1), y0.flip(-1)
        if self.flips and vflip:
            x_lr, y0 = x_lr.flip(-2), y0.flip(-2)
        if self.color_augment:
            x_lr, y0 = x_lr[perm], y0[perm]
        return x_lr.contiguous(), y0.contiguous()


def _header(path: Path) -> tuple[tuple[int, int], str]:
    """(size, mode) of an image from its header alone (cheap); ValueError naming the file if unreadable."""
    try:
        with Image.open(path) as im:
            return im.size, im.mode
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(
            f"cannot read image {path}: {e}. Re-save it, remove the pair, or pass --skip-bad-images to skip it"
        ) from e


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
    root = _check_folder(data)
    if _prepared_dirs(root) is not None:
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
