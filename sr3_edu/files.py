"""Writing files so that an interrupted run never leaves a torn one: every model file, checkpoint, image and JSON
the package writes goes through `write_atomic`."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image

from .images import IMAGE_SUFFIXES

__all__ = ["write_atomic", "write_json", "write_image_atomic", "writable_folder"]


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object], *, durable: bool = False) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it over ``path``; returns ``path``.

    The rename is atomic on POSIX, so a reader (or a process killed mid-write) sees the old file or the new one, never
    half of one; on any error the temporary file is removed and ``path`` is left as it was. ``durable`` also fsyncs
    the file and its folder before returning, so the new file survives a power cut (for training checkpoints).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.tmp", dir=path.parent)  # "last.pt.tmpXXXX": what cleanups look for
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
    return path


def write_json(obj: Any, path: str | Path) -> Path:
    """``obj`` as indented UTF-8 JSON, written atomically; non-finite numbers become null (JSON has no ∞)."""

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


def write_image_atomic(img: Image.Image, path: str | Path, icc_profile: bytes | None = None) -> Path:
    """Save ``img`` to ``path`` via a temporary file and a rename: an interrupted run leaves no half-written image.

    The format follows the suffix (PNG, JPEG, …); an unknown suffix is refused before anything is written. JPEG and
    WebP keep what a super-resolved image adds: JPEG at quality 95 with full-resolution colour (4:4:4, where
    PIL's default is quality 75 with colour at half resolution), WebP lossless (PIL's lossy default halves the
    colour resolution whatever its quality). ``icc_profile``, the colour profile the pixels are in (`load_rgb` keeps
    an input's), is embedded where the format holds one."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"cannot tell the image format of {path}: use a suffix among {', '.join(IMAGE_SUFFIXES)}")
    options = dict(SAVE_OPTIONS.get(fmt, {}))
    if icc_profile and fmt in ICC_FORMATS:
        options["icc_profile"] = icc_profile
    return write_atomic(path, lambda f: img.save(f, format=fmt, **options))


SAVE_OPTIONS = {"JPEG": {"quality": 95, "subsampling": 0}, "WEBP": {"lossless": True}}
"""PIL save options of `write_image_atomic` for the formats PIL saves lossily by default."""
ICC_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF")
"""The formats PIL embeds an ICC profile in."""


def writable_folder(folder: str | Path, flag: str) -> Path:
    """``folder``, made if missing, once a file has been made and removed in it: a command that writes its results
    only after minutes of work calls this first, so that a folder it cannot write to stops it before the work.
    ``flag`` names the option that chose the folder in the error."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ValueError(
            f"{flag}: cannot write into {folder} ({e.strerror or e}); give a folder you can write to"
        ) from e
    return folder
