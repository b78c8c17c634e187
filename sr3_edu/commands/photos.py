"""``sr3-edu photos``: gather the built-in training photos and Debian's wallpaper photos into a folder
(`sr3_edu.photos.gather`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..photos import gather

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="data/photos", help="folder to write the photos and SOURCES.txt into")
    p.add_argument("--long-side", type=int, default=1024, help="shrink the Debian photos to at most this many pixels")


def run(args: argparse.Namespace) -> int:
    written = gather(args.out, args.long_side)
    print(f"{len(written)} photos in {args.out} (list and licences: {Path(args.out) / 'SOURCES.txt'})", file=sys.stderr)
    return 0
