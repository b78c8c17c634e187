"""The command-line flags the commands share: one definition of the sampler's, the precision's and the tiles' flags,
and the help formatter every command uses."""

from __future__ import annotations

import argparse
from typing import Any

from ..devices import PRECISIONS
from ..diffusion import SAMPLERS
from ..pipeline import AUTO_TILE

__all__ = [
    "HelpFormatter",
    "add_sampler_arguments",
    "add_precision_argument",
    "add_tile_argument",
    "sampler_options",
]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: …)" only where it says something: not for None/False, nor where the help states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.default is False or "default" in text:
            return text
        return super()._get_help_string(action)


def add_sampler_arguments(p: argparse.ArgumentParser, *, steps_default: str = "the model file's, else 100") -> None:
    """Options shared by upscale, evaluate and demo: the inference schedule and where to run."""
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="refinement steps: the model file's chain at this length (the training schedule respaced, or its linear β "
        f"schedule stretched to the same first noise level) (default: {steps_default})",
    )
    p.add_argument(
        "--variance",
        choices=("paper", "posterior"),
        default=None,
        help="noise added each step: 'paper' σ²=1−α_t (Algorithm 2) or 'posterior' σ²=(1−γ_{t−1})(1−α_t)/(1−γ_t) "
        "(default: the model file's, else paper)",
    )
    p.add_argument(
        "--start",
        choices=("noise", "bicubic"),
        default=None,
        help="'noise': y_T ~ N(0, I), the paper's sampler; 'bicubic': start part-way from the noised bicubic image "
        "at --gamma-start (Chung et al. 2022, not the paper's) (default: the model file's, else noise)",
    )
    p.add_argument(
        "--gamma-start",
        type=float,
        default=None,
        help="noise level γ where a --start bicubic chain begins, in (0, 1); lower = more noise "
        "(default: the model file's, else 0.2)",
    )
    p.add_argument(
        "--clip-y0",
        choices=("on", "off"),
        default=None,
        help="'on': clip ŷ_0 to [−1, 1] inside each step (the reference code's variant, not the paper's) "
        "(default: the model file's, else off)",
    )
    p.add_argument(
        "--betas",
        nargs="+",
        type=_beta_or_off,
        default=None,
        metavar="B",
        help="'B1 BN': sample a linear β schedule from β_1 = B1 to β_n = BN over --steps steps instead of the training "
        "schedule respaced (from noise; e.g. --steps 100 --betas 1e-6 0.09 ends at γ = 0.01); 'off': the training "
        "schedule respaced, whatever the model file says (default: the model file's, else the training schedule "
        "respaced)",
    )
    p.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default=None,
        help="'ddpm': Algorithm 2, the paper's sampler; 'ddim': DDIM steps (Song et al. 2021), which keep more quality "
        "at few steps (default: the model file's, else ddpm)",
    )
    p.add_argument(
        "--eta",
        type=float,
        default=None,
        help="DDIM's noise, η × the posterior σ, in [0, 1]: 0 deterministic, 1 the ancestral chain with the "
        "posterior variance (default: the model file's, else 0)",
    )
    add_precision_argument(p)
    p.add_argument("--seed", type=int, default=0, help="random seed; with --batch-size it fixes the output")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps, or auto (a GPU when there is one)")
    p.add_argument("--batch-size", type=int, default=4, help="images refined together (more = faster on a GPU)")
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile each refinement step, U-Net and update together (on a GPU replayed as a CUDA graph): "
        "meant for a GPU and many steps or images, as the first call compiles for a minute or more; on a CPU "
        "without AMX it measured slower than the eager loop (benchmarks/bench_compile.py)",
    )


def add_precision_argument(p: argparse.ArgumentParser) -> None:
    """``--precision``, shared by every command that runs the network."""
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="the network's arithmetic: 'auto' is this machine's fast path (channels_last, and bf16 where the CPU has "
        "AVX512_BF16 or AMX or the GPU supports it); 'fp32' plain fp32 in the default layout, no bf16 rounding; "
        "'bf16' forces bf16",
    )


def add_tile_argument(p: argparse.ArgumentParser) -> None:
    """``--tile``, shared by upscale and evaluate."""
    p.add_argument(
        "--tile",
        type=_tile,
        default="auto",
        help="refine in overlapping tiles of at most this many output pixels a side, blended at every step: bounded "
        f"memory and no seams; 'auto' tiles images with a side over {AUTO_TILE} (the fastest tile on a CPU), 0 never; "
        f"at least {MIN_TILE}",
    )


def _tile(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"a tile size is 'auto', 0 (no tiles) or a number of pixels; got {text!r}")
    if 0 < value < MIN_TILE:
        raise argparse.ArgumentTypeError(
            f"a tile is a side in output pixels, at least {MIN_TILE} (a smaller one shows the network less than a "
            f"16-pixel input at ×4 and multiplies the work), not a number of tiles; got {value}"
        )
    return value


MIN_TILE = 64
"""The smallest ``--tile`` side the commands take: the shipped model's training crops (64² outputs of 16² inputs)."""


def sampler_options(args: argparse.Namespace) -> dict[str, Any]:
    """The sampler options given on the command line (None where left to the model file)."""
    clip = getattr(args, "clip_y0", None)
    return {
        "steps": args.steps,
        "variance": args.variance,
        "start": args.start,
        "gamma_start": args.gamma_start,
        "clip_y0": None if clip is None else clip == "on",
        "betas": _betas_flag(getattr(args, "betas", None)),
        "sampler": getattr(args, "sampler", None),
        "eta": getattr(args, "eta", None),
    }


def _beta_or_off(text: str) -> float | str:
    if text == "off":
        return text
    try:
        return float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"a β is a number in (0, 1), or 'off'; got {text!r}") from e


def _betas_flag(values: list | None) -> tuple[float, float] | str | None:
    """``--betas``: None (not given), "off" (respace the training schedule), or the pair (β_1, β_n)."""
    if values is None:
        return None
    if values == ["off"]:
        return "off"
    if len(values) != 2 or "off" in values:
        raise ValueError(f"--betas takes two numbers B1 BN, or 'off'; got {' '.join(map(str, values))}")
    return (float(values[0]), float(values[1]))
