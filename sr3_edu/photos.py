"""More training photos: the built-in training photos plus real photos from two Debian wallpaper packages.

The seven built-in training photos hold about 2 megapixels. Two Debian packages install photographs under free
licences, read here from the disk (nothing is downloaded by this module):

* ``mate-backgrounds``: the 12 photos in ``/usr/share/backgrounds/mate/nature/``;
* ``plasma-workspace-wallpapers``: 10 of its wallpapers that are photographs (the rest are drawn or abstract art),
  the largest file of each in ``/usr/share/wallpapers/NAME/contents/images/``.

Both packages' ``/usr/share/doc/<package>/copyright`` files state GPL-2+ for every file used here
(mate-backgrounds names each photo's author; plasma-workspace-wallpapers: "2014 KDE Visual Design Group").
``gather`` writes them, shrunk so the long side is at most ``long_side`` pixels (a 64×64 crop of a 2560-pixel
wallpaper would be nearly flat), beside the built-in training photos into one folder, with ``SOURCES.txt``
naming every file, its origin and its licence. The built-in *validation* photos are never copied.

    apt-get install -y mate-backgrounds plasma-workspace-wallpapers
    python -m sr3_edu photos --out data/photos
    python -m sr3_edu train --data data/photos ...
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from .builtin import builtin_images
from .images import load_rgb

__all__ = ["MATE_NATURE", "PLASMA_PHOTOS", "debian_photos", "gather"]

MATE_NATURE = (
    "Aqua",
    "Blinds",
    "Dune",
    "FreshFlower",
    "Garden",
    "GreenMeadow",
    "LadyBird",
    "RainDrops",
    "Storm",
    "TwoWings",
    "Wood",
    "YellowFlower",
)
"""The photos of mate-backgrounds (``/usr/share/backgrounds/mate/nature/NAME.jpg``)."""

PLASMA_PHOTOS = (
    "BytheWater",
    "ColdRipple",
    "ColorfulCups",
    "DarkestHour",
    "EveningGlow",
    "FallenLeaf",
    "Grey",
    "Kite",
    "OneStandsOut",
    "Path",
)
"""The plasma-workspace-wallpapers that are photographs (``/usr/share/wallpapers/NAME/contents/images/``)."""

_PACKAGES = {
    "mate-backgrounds": Path("/usr/share/backgrounds/mate/nature"),
    "plasma-workspace-wallpapers": Path("/usr/share/wallpapers"),
}
LICENCE = "GPL-2+"


def debian_photos(root: str | Path = "/") -> list[tuple[str, str, Path]]:
    """(name, package, path) of every listed photo, under ``root`` (for tests); raises naming a missing package."""
    root = Path(root)
    found = []
    mate = root / _PACKAGES["mate-backgrounds"].relative_to("/")
    plasma = root / _PACKAGES["plasma-workspace-wallpapers"].relative_to("/")
    for package, folder in (("mate-backgrounds", mate), ("plasma-workspace-wallpapers", plasma)):
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder} does not exist: the Debian package {package} is not installed "
                f"(apt-get install -y mate-backgrounds plasma-workspace-wallpapers)"
            )
    for name in MATE_NATURE:
        found.append((name, "mate-backgrounds", mate / f"{name}.jpg"))
    for name in PLASMA_PHOTOS:
        images = plasma / name / "contents" / "images"
        # the largest real file; the smaller sizes are symbolic links to it or downscaled copies
        files = [p for p in images.glob("*") if p.is_file() and not p.is_symlink()] if images.is_dir() else []
        if not files:
            raise FileNotFoundError(f"no image in {images}: is plasma-workspace-wallpapers fully installed?")
        found.append((name, "plasma-workspace-wallpapers", max(files, key=lambda p: p.stat().st_size)))
    missing = [str(p) for _, _, p in found if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]} is missing (and {len(missing) - 1} more); reinstall its package")
    return found


def gather(out: str | Path, long_side: int = 1024, root: str | Path = "/") -> list[Path]:
    """Write the built-in training photos and the Debian photos (shrunk to ``long_side``) as PNGs into ``out``."""
    if long_side < 64:
        raise ValueError(f"long_side must be at least 64 pixels, got {long_side}")
    sources = debian_photos(root)  # fails before anything is written
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written, lines = [], [f"Training photos written by `python -m sr3_edu photos` (long side ≤ {long_side} px).", ""]
    for name, img in builtin_images("train").items():
        written.append(out / f"builtin_{name}.png")
        img.save(written[-1])
        lines.append(f"{written[-1].name}: sr3_edu.builtin {name!r} (see sr3_edu/builtin.py for its source)")
    for name, package, path in sources:
        img = load_rgb(path)[0]  # 8-bit RGB, upright
        w, h = img.size
        if max(w, h) > long_side:
            f = long_side / max(w, h)
            img = img.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.LANCZOS)
        written.append(out / f"{package.split('-')[0]}_{name}.png")
        img.save(written[-1])
        lines.append(
            f"{written[-1].name}: {path} ({w}×{h}) from the Debian package {package}, {LICENCE} "
            f"(/usr/share/doc/{package}/copyright)"
        )
    (out / "SOURCES.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return written
