"""Command line: ``python -m sr3_edu COMMAND`` (also installed as ``sr3-edu``).

Each command is a module of `sr3_edu.commands` with ``add_arguments(parser)`` and ``run(args) -> int``; this file
only routes to them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

COMMANDS = {
    "demo": "super-resolve the built-in validation photos with the shipped model (the quickstart)",
    "train": "train SR3 (or the regression baseline) on a folder of images or the built-in photos",
    "upscale": "super-resolve an image or a folder of images of any size",
    "evaluate": "score bicubic, regression, SR3 and the mean of SR3 samples on held-out photos",
    "export": "turn a training checkpoint into a small model file (EMA weights, fp16)",
    "search": "grid-search inference schedules on the validation photos",
    "diagnose": "the noise estimate's errors at fixed γ and the drift of a chain from noise",
    "photos": "gather the built-in training photos and Debian's wallpaper photos into a folder",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one clear line, exit 2
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sr3-edu",
        description="SR3: image super-resolution via iterative refinement.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, help_text in COMMANDS.items():
        module = f"sr3_edu.commands.{name}"
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue  # a command whose module is not part of this installation
        p = sub.add_parser(
            name, help=help_text, description=help_text, formatter_class=argparse.ArgumentDefaultsHelpFormatter
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():  # restores Python's own printer afterwards
            warnings.showwarning = _one_line_warnings(args.command)
            return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        # User-facing errors (bad files, sizes, checkpoints) as one line, not a traceback.
        print(f"sr3-edu {args.command}: error: {e}", file=sys.stderr)
        return 1


def _one_line_warnings(command: str):
    """Warnings as one line each, like the errors (Python's default adds the file, the line and its source)."""

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"sr3-edu {command}: {category.__name__}: {message}", file=file or sys.stderr)

    return show


if __name__ == "__main__":
    sys.exit(main())
