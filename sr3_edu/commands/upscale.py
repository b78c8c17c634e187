"""``sr3-edu upscale``: super-resolve an image, or every image under a folder, with `sr3_edu.upscale.super_resolve`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from ..checkpoint import load_model
from ..devices import resolve_device
from ..files import writable_folder, write_image_atomic
from ..folders import SUFFIX_LIST, find_images
from ..images import IMAGE_SUFFIXES, load_rgb
from ..inference import SamplerOptions
from ..upscale import super_resolve
from .flags import HelpFormatter, add_sampler_arguments, add_tile_argument, sampler_options

__all__ = ["add_arguments", "run", "output_paths"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = HelpFormatter
    p.add_argument(
        "--checkpoint",
        default=None,
        help="model file or training checkpoint (default: the SR3 model shipped with the package); "
        "a regression model file runs the regression baseline",
    )
    p.add_argument(
        "--input",
        required=True,
        help="an image, or a folder of images (.png, .jpg, …, subfolders too), any size; a photo is read upright, "
        "turned as its EXIF orientation says (as image viewers show it)",
    )
    p.add_argument(
        "--output",
        required=True,
        help="output image path for one input (format from its suffix: PNG, WebP lossless, JPEG at quality 95, …); "
        "for a folder, a folder (PNG files, the input's subfolders kept); never one of the inputs",
    )
    add_sampler_arguments(p)
    add_tile_argument(p)
    p.add_argument(
        "--skip-bad-images", action="store_true", help="in a folder, skip unreadable files instead of stopping"
    )
    p.add_argument(
        "--skip-existing",
        action="store_true",
        help="leave out the inputs whose output file is already there: to go on after an interrupted folder run "
        "(each output is written whole or not at all, and depends only on its image and the options, --seed "
        "included, not on the other images)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def output_paths(src: Path, out: Path) -> list[tuple[Path, Path]]:
    """(input, output) for every image to upscale: one file, or each image under the folder ``src`` with its path
    mirrored under the folder ``out`` as PNG ("sub/photo.jpg" → "OUT/sub/photo.png"). Refuses, before any model
    work, what would fail later or lose a file: a file as the output of a folder, two inputs that would write one
    output, an output that is one of the inputs."""
    if not src.exists():
        raise FileNotFoundError(f"input {src} does not exist")
    if not src.is_dir():
        if out.is_dir():
            out = out / (src.stem + ".png")
        elif out.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"--output {out} needs an image suffix ({SUFFIX_LIST})")
        _refuse_overwriting_inputs([(src, out)])
        return [(src, out)]
    if out.exists() and not out.is_dir():
        raise ValueError(f"--input is a folder, so --output must be a folder, but {out} is a file")
    files = find_images(src)
    if not files:
        raise ValueError(f"no images ({SUFFIX_LIST}) in the folder {src} or its subfolders")
    pairs = [(f, out / f.relative_to(src).with_suffix(".png")) for f in files]
    seen: dict[Path, Path] = {}
    for f, target in pairs:
        if target in seen:
            raise ValueError(f"{seen[target]} and {f} would both be written to {target}; rename one of them")
        seen[target] = f
    _refuse_overwriting_inputs(pairs)
    return pairs


def _refuse_overwriting_inputs(pairs: list[tuple[Path, Path]]) -> None:
    inputs = {f.resolve(): f for f, _ in pairs}
    for f, target in pairs:
        if (hit := inputs.get(target.resolve())) is not None:
            raise ValueError(
                f"{hit} would be overwritten by the enlargement of {f}; "
                f"give --output a path outside the input (a new file, or a new folder for a folder)"
            )


def _read(pairs: list[tuple[Path, Path]], skip_bad: bool) -> list[tuple[Path, Path, Image.Image]]:
    """Every input read before any model work, so that a bad file stops the run before it costs anything."""
    images = []
    for f, target in pairs:
        try:
            img, note = load_rgb(f)
        except ValueError:
            if skip_bad:
                print(f"skipping unreadable {f}", file=sys.stderr)
                continue
            raise
        if note:
            print(note, file=sys.stderr)
        images.append((f, target, img))
    return images


def run(args: argparse.Namespace) -> int:
    src = Path(args.input)
    pairs = output_paths(src, Path(args.output))
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.skip_existing:
        done = [target for _, target in pairs if target.is_file()]
        pairs = [(f, target) for f, target in pairs if not target.is_file()]
        if done:
            print(
                f"--skip-existing: {len(done)} output{'s' * (len(done) != 1)} already there (e.g. {done[0]}), "
                f"left as {'they are' if len(done) != 1 else 'it is'}",
                file=sys.stderr,
            )
        if not pairs:
            return 0
    images = _read(pairs, skip_bad=src.is_dir() and args.skip_bad_images)
    if not images:
        raise ValueError(f"no readable images in {src}")
    writable_folder(Path(args.output) if src.is_dir() else pairs[0][1].parent, "--output")

    model, info = load_model(args.checkpoint, device=resolve_device(args.device), objective="sr3")
    opts = SamplerOptions.resolve(info, **sampler_options(args))
    what = (
        "regression"
        if info.objective == "regression"
        else f"SR3 ({info.parametrisation}-parametrised f_θ), {opts.describe()}"
    )
    print(f"{info.path}: ×{info.scale} {what}", file=sys.stderr)

    progress = not args.no_progress
    iterator = images
    if progress and len(images) > 1:
        from tqdm.auto import tqdm

        iterator = tqdm(images, desc="images", unit="image")
    for f, target, img in iterator:
        sr = super_resolve(
            model,
            img,
            info=info,
            options=opts,
            seed=args.seed,  # drawn afresh for each image: its output is the same alone or in any folder
            batch_size=args.batch_size,
            progress=progress,
            tile=args.tile,
            precision=args.precision,
            compile=args.compile,
        )
        write_image_atomic(sr, target, icc_profile=img.info.get("icc_profile"))  # the input's colours, kept
        print(f"{f} ({img.width}×{img.height}) → {target} ({sr.width}×{sr.height})", file=sys.stderr)
    return 0
