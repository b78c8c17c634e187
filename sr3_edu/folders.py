"""Images on disk: finding them (one recursive lister for training and evaluation), checking the folder, reading a
header, loading the photos behind ``--data``, and the prepared-pairs layout (lr_<size>/hr_<size> subfolders) of the
reference code's prepare_data.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PIL import Image

from .images import IMAGE_SUFFIXES, exif_orientation, load_rgb

__all__ = [
    "DataWarning",
    "DataFolderNotFoundError",
    "SUFFIX_LIST",
    "find_images",
    "check_folder",
    "prepared_dirs",
    "image_header",
    "load_images",
]

SUFFIX_LIST = ", ".join(IMAGE_SUFFIXES)


class DataWarning(UserWarning):
    """Something about the input images was fixed or skipped; the message names the file."""


class DataFolderNotFoundError(FileNotFoundError, ValueError):
    """The data folder does not exist (both a FileNotFoundError and a ValueError)."""


def find_images(root: Path) -> list[Path]:
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


def check_folder(root: str | os.PathLike) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise DataFolderNotFoundError(f"data folder {root} does not exist; check the path (or use --data builtin)")
    if not root.is_dir():
        raise ValueError(f"{root} is a file, not a folder; put the training images in a folder and pass the folder")
    return root


def prepared_dirs(root: Path) -> tuple[Path, Path] | None:
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


def image_header(path: Path) -> tuple[tuple[int, int], str]:
    """(size, mode) of an image from its header alone (cheap), the size upright as `load_rgb` turns it by its EXIF
    orientation; ValueError naming the file if unreadable."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            # orientations 5–8 turn the image by a quarter: width and height swap
            return ((h, w) if exif_orientation(im) >= 5 else (w, h)), im.mode
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(
            f"cannot read image {path}: {e}. Re-save it, remove the pair, or pass --skip-bad-images to skip it"
        ) from e


def load_images(data: str, split: str = "val") -> dict[str, Image.Image]:
    """The photos behind ``--data`` of evaluate, search, diagnose and demo: ``"builtin"`` → the built-in photos of
    ``split``; a folder → every image under it (recursively, as `find_images` lists them for training), named by
    its path in the folder without the suffix ("photo", "sub/photo")."""
    if data == "builtin":
        from .builtin import builtin_images

        return builtin_images(split)
    folder = Path(data)
    if not folder.is_dir():
        raise FileNotFoundError(f"--data {data}: not a folder (give a folder of images, or 'builtin')")
    files = find_images(folder)
    if not files:
        raise ValueError(f"no images ({SUFFIX_LIST}) in {folder} or its subfolders")
    images = {}
    for f in files:
        img, note = load_rgb(f)
        if note:
            print(note, file=sys.stderr)
        images[f.relative_to(folder).with_suffix("").as_posix()] = img
    return images
