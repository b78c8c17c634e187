"""Prepared pairs: a folder in the layout of the reference code's prepare_data.py (lr_<size>/ and hr_<size>/ with
the same file names), read as fixed (x, y₀) pairs with the same flips and colour augmentation as `sr3_edu.data`."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .folders import SUFFIX_LIST, DataWarning, check_folder, find_images, image_header, prepared_dirs
from .images import load_rgb, to_tensor
from .items import check_seed_epoch, draw_index, item_generator

__all__ = ["PreparedPairsDataset"]


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
        self.root = root = check_folder(root)
        check_seed_epoch(seed, 0)
        dirs = prepared_dirs(root)
        if dirs is None:
            raise ValueError(f"{root} has no lr_<size> and hr_<size> subfolders (the prepare_data.py layout)")
        self.lr_dir, self.hr_dir = dirs
        self.flips, self.color_augment, self.seed, self.epoch = flips, color_augment, seed, 0
        lr_size, hr_size_found = self._read_pairs(*self._match_files(), skip_bad_images=skip_bad_images)

        # s = h / l, read from the first pair and checked on all of them in _read_pairs
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

    def _match_files(self) -> tuple[dict[Path, Path], dict[Path, Path]]:
        """The images of lr_*/ and hr_*/ by path relative to their folder; every one must have its partner."""
        # Pairs are matched by path relative to lr_*/ and hr_*/ (prepare_data.py writes the same name to both).
        lr_files = {p.relative_to(self.lr_dir): p for p in find_images(self.lr_dir)}
        hr_files = {p.relative_to(self.hr_dir): p for p in find_images(self.hr_dir)}
        if not lr_files and not hr_files:
            raise ValueError(f"no images in {self.lr_dir} or {self.hr_dir}: looked for files ending in {SUFFIX_LIST}")
        for have, lack, other in ((lr_files, self.hr_dir, hr_files), (hr_files, self.lr_dir, lr_files)):
            missing = sorted(set(have) - set(other))
            if missing:
                more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
                raise ValueError(
                    f"{have[missing[0]]} has no partner {lack / missing[0]}{more}; pairs are matched by file name, "
                    f"so add the missing file or remove its partner"
                )
        return lr_files, hr_files

    def _read_pairs(
        self, lr_files: dict[Path, Path], hr_files: dict[Path, Path], *, skip_bad_images: bool
    ) -> tuple[tuple[int, int], tuple[int, int]]:
        """Fill ``self.pairs`` from the headers (no pixels decoded); return the (w, h) of LR and HR all pairs share.

        Its warnings carry stacklevel 3, so that they name the line that built the data set."""
        self.pairs: list[tuple[Path, Path]] = []
        converted: list[str] = []
        lr_size = hr_size_found = None
        for name in sorted(lr_files):
            try:
                (lw, lh), lmode = image_header(lr_files[name])
                (hw, hh), hmode = image_header(hr_files[name])
            except ValueError as e:
                if not skip_bad_images:
                    raise
                warnings.warn(f"skipped pair {name}: {e.__cause__ or e}", DataWarning, stacklevel=3)
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
            raise ValueError(f"no readable pairs in {self.root}: every pair was skipped (see the warnings)")
        if converted:
            warnings.warn(
                f"{len(converted)} images in {self.root} are not 8-bit RGB (e.g. {converted[0]}); converted when read",
                DataWarning,
                stacklevel=3,
            )
        return lr_size, hr_size_found

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch: items are a function of (seed, epoch, index)."""
        check_seed_epoch(self.seed, epoch)
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
        g = item_generator(self.seed, self.epoch, i)
        hflip, vflip = draw_index(g, 2), draw_index(g, 2)
        perm = torch.randperm(3, generator=g)
        # Flipping commutes with the symmetric bicubic kernel, permuting with per-channel filtering: pairs stay valid.
        if self.flips and hflip:
            x_lr, y0 = x_lr.flip(-1), y0.flip(-1)
        if self.flips and vflip:
            x_lr, y0 = x_lr.flip(-2), y0.flip(-2)
        if self.color_augment:
            x_lr, y0 = x_lr[perm], y0[perm]
        return x_lr.contiguous(), y0.contiguous()
