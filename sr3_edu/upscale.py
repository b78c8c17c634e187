"""Super-resolve images of any size with a trained model: pad, refine (Algorithm 2), crop back.

The inference schedule. f_θ is conditioned on the continuous noise level γ, never on the step index, so it can be
sampled with a chain other than the one it was trained on (SR3 §2.4: "flexibility in choosing number of diffusion
steps, and the noise schedule during inference"). `inference_schedule` keeps n of the training schedule's γ_t,
evenly spaced in t (`NoiseSchedule.respace`): a short chain through the same noise levels. Or, with
``betas=(β_1, β_n)``, a fresh linear β schedule of n steps (`NoiseSchedule.linear`), the form the paper's inference
schedules take. The paper capped inference at 100 steps and searched the schedule on held-out data;
`sr3_edu.search.search_schedules` does that search here.

Two ways to start the chain:

* ``start="noise"`` — the paper's Algorithm 2: y_T ~ N(0, I), then all the way down.
* ``start="bicubic"`` — **not the paper's sampler**: Chung et al. 2022, "Come-Closer-Diffuse-Faster". The
  bicubic enlargement of x is already close to y_0, so the chain starts part-way, at the noise level γ_start:
  y_S = √γ_S · bicubic(x) + √(1−γ_S) · ε over the schedule ``train.truncate(γ_start).respace(n)``. The n steps
  then cover only the low-noise end, where the detail is made.

Sizes. The U-Net needs the sides of y_t divisible by ``model.multiple``; the low-resolution input is padded on the
right and bottom by reflection, and the output cropped back to exactly (w·scale, h·scale).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from .checkpoint import load_model
from .devices import PRECISIONS, resolve_device
from .diffusion import SAMPLERS, RefinementStep, q_sample, sample
from .files import write_atomic
from .images import IMAGE_SUFFIXES, load_rgb, to_image, to_tensor, upscale_bicubic
from .pipeline import AUTO_OVERLAP, AUTO_TILE, FastNetwork, TiledModel, auto_tile, pad_like, pad_lr
from .regression import regress
from .schedule import NoiseSchedule

__all__ = [
    "DEFAULT_INFERENCE",
    "inference_options",
    "as_arguments",
    "describe",
    "sampler_options",
    "inference_schedule",
    "training_schedule",
    "super_resolve",
    "TiledModel",
    "write_image_atomic",
    "add_sampler_arguments",
    "add_tile_argument",
    "add_precision_argument",
    "add_arguments",
    "run",
]

DEFAULT_INFERENCE: dict[str, Any] = {
    "steps": 100,
    "variance": "paper",
    "start": "noise",
    "gamma_start": 0.2,
    "clip_y0": False,
    "betas": None,
    "sampler": "ddpm",
    "eta": 0.0,
}
"""Used for any option that neither the caller nor the model file sets: the paper's 100-step budget, its σ_t² =
1 − α_t, its start from pure noise and its unclipped update. γ_start only matters for ``start="bicubic"``;
``clip_y0`` is the reference code's variant (ŷ_0 clipped to [−1, 1] in each step, see `sr3_edu.diffusion.sample`).
``betas`` None respaces the training schedule; a pair (β_1, β_n) samples a linear β schedule of ``steps`` steps instead
(from noise only). A caller's ``betas="off"`` respaces the training schedule whatever the model file stores; a
caller's ``steps`` other than the file's stretches the file's linear schedule to that length (the same β_1 and the same
first noise level γ_n, `NoiseSchedule.linear_to`), as β_n was chosen for the file's own number of steps.
``sampler`` "ddpm" is Algorithm 2; "ddim" takes DDIM steps with noise η × the posterior σ (``variance`` unused)."""


def inference_options(info: dict | None = None, **given: Any) -> dict[str, Any]:
    """The sampler options in force: ``given`` (ignoring None) over the model file's ``info["inference"]``
    over `DEFAULT_INFERENCE`."""
    opts = dict(DEFAULT_INFERENCE)
    opts.update({k: v for k, v in ((info or {}).get("inference") or {}).items() if k in DEFAULT_INFERENCE})
    opts.update({k: v for k, v in given.items() if v is not None})
    if given.get("betas") == "off" or (given.get("start") == "bicubic" and given.get("betas") is None):
        opts["betas"] = None  # the training schedule respaced, over a model file's linear schedule
    if opts["variance"] not in ("paper", "posterior"):
        raise ValueError(f"variance must be 'paper' or 'posterior', got {opts['variance']!r}")
    if opts["start"] not in ("noise", "bicubic"):
        raise ValueError(f"start must be 'noise' or 'bicubic', got {opts['start']!r}")
    if int(opts["steps"]) < 1:
        raise ValueError(f"steps must be a positive number of refinement steps, got {opts['steps']}")
    if opts["sampler"] not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {opts['sampler']!r}")
    if not 0 <= float(opts["eta"]) <= 1:
        raise ValueError(f"eta must be in [0, 1] (0: deterministic DDIM, 1: the ancestral chain), got {opts['eta']}")
    opts["eta"] = float(opts["eta"])
    if not 0 < float(opts["gamma_start"]) < 1:
        raise ValueError(f"gamma_start is a noise level γ in (0, 1), got {opts['gamma_start']}")
    opts["steps"], opts["gamma_start"], opts["clip_y0"] = (
        int(opts["steps"]),
        float(opts["gamma_start"]),
        bool(opts["clip_y0"]),
    )
    if opts["betas"] is not None:
        betas = tuple(float(b) for b in opts["betas"])
        if len(betas) != 2 or not 0 < betas[0] <= betas[1] < 1:
            raise ValueError(f"betas are (β_1, β_n) of a linear schedule with 0 < β_1 ≤ β_n < 1, got {opts['betas']}")
        if opts["start"] != "noise":
            raise ValueError("a linear β schedule (betas) runs from pure noise; it cannot start part-way (bicubic)")
        stored = (info or {}).get("inference") or {}
        n = int(stored.get("steps") or DEFAULT_INFERENCE["steps"])
        if given.get("betas") is None and n != opts["steps"]:
            # The model file's linear chain at another length: the same β_1 and the same first noise level γ_T.
            gamma_T = NoiseSchedule.linear(n, *betas).gammas[-1].item()
            betas = (betas[0], NoiseSchedule.linear_to(opts["steps"], gamma_T, start=betas[0]).betas[-1].item())
        opts["betas"] = betas
    return opts


def as_arguments(opts: dict[str, Any]) -> dict[str, Any]:
    """Options `inference_options` resolved, as `super_resolve`'s keyword arguments: passed on with the same ``info``
    they resolve to themselves again (a respaced chain is said as ``betas="off"``, as None would mean "the file's")."""
    return {**{k: opts[k] for k in DEFAULT_INFERENCE}, "betas": opts["betas"] or "off"}


def describe(opts: dict[str, Any]) -> str:
    """The sampler options in words, for the lines the commands print: e.g. "100 steps, variance=paper, start=noise"."""
    sampler = f"DDIM η={opts['eta']:g}" if opts.get("sampler") == "ddim" else f"variance={opts['variance']}"
    return (
        f"{opts['steps']} steps, {sampler}, start={opts['start']}"
        + (f" (γ_start={opts['gamma_start']})" if opts["start"] == "bicubic" else "")
        + (f", linear β {opts['betas'][0]:g}→{opts['betas'][1]:g}" if opts.get("betas") else "")
        + (", ŷ_0 clipped" if opts["clip_y0"] else "")
    )


def training_schedule(info: dict | None = None) -> NoiseSchedule:
    """The schedule the model was trained with, as its model file records it (``info["inference"]["schedule"]``);
    `NoiseSchedule.linear()` (T = 2000, β 1e-6 → 1e-2, the trainer's default) when the file does not say."""
    spec = ((info or {}).get("inference") or {}).get("schedule")
    return NoiseSchedule.from_dict(spec) if spec else NoiseSchedule.linear()


def inference_schedule(
    steps: int,
    *,
    start: str = "noise",
    gamma_start: float = 0.2,
    train_schedule: NoiseSchedule | None = None,
    betas: tuple[float, float] | None = None,
) -> NoiseSchedule:
    """The chain to sample with: ``train.respace(steps)`` (from noise), ``train.truncate(γ_start).respace(steps)``
    (the part-way bicubic start), or with ``betas`` = (β_1, β_n) the linear schedule ``NoiseSchedule.linear(steps,
    β_1, β_n)`` (from noise). A respaced ``steps`` is capped at the number of training steps it can choose from."""
    if betas is not None:
        if start != "noise":
            raise ValueError("a linear β schedule (betas) runs from pure noise; it cannot start part-way (bicubic)")
        return NoiseSchedule.linear(int(steps), float(betas[0]), float(betas[1]))
    train = train_schedule if train_schedule is not None else NoiseSchedule.linear()
    if start == "bicubic":
        train = train.truncate(gamma_start)
    elif start != "noise":
        raise ValueError(f"start must be 'noise' or 'bicubic', got {start!r}")
    return train.respace(min(int(steps), train.T))


def _as_batch(x: Tensor | Image.Image | Sequence[Image.Image]) -> tuple[list[Tensor], str]:
    if isinstance(x, Image.Image):
        return [to_tensor(x.convert("RGB"))[None]], "pil"
    if isinstance(x, Tensor):
        if x.dim() == 3:
            return [x[None]], "tensor3"
        if x.dim() != 4:
            raise ValueError(f"x_lr must be (B, C, h, w) or (C, h, w), got shape {tuple(x.shape)}")
        return [x], "tensor"
    if isinstance(x, (list, tuple)) and all(isinstance(i, Image.Image) for i in x):
        return [to_tensor(i.convert("RGB"))[None] for i in x], "pil_list"
    raise TypeError(f"x_lr must be a tensor, a PIL image or a list of PIL images, not {type(x).__name__}")


@torch.inference_mode()
def super_resolve(
    model,
    x_lr: Tensor | Image.Image | Sequence[Image.Image],
    *,
    scale: int | None = None,
    steps: int | None = None,
    variance: str | None = None,
    start: str | None = None,
    gamma_start: float | None = None,
    clip_y0: bool | None = None,
    betas: tuple[float, float] | str | None = None,
    sampler: str | None = None,
    eta: float | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    batch_size: int = 8,
    progress: bool = False,
    tile: int | str | None = "auto",
    precision: str = "auto",
    train_schedule: NoiseSchedule | None = None,
    info: dict | None = None,
    objective: str | None = None,
    y_T: Tensor | None = None,
    return_trajectory: bool | int = False,
    compile: bool = False,
) -> Any:
    """Super-resolve ``x_lr`` by ``scale``: pad, sample (or regress), crop back, clip to [−1, 1].

    ``model`` is a network (with ``info``, the dict `sr3_edu.checkpoint.load_model` returns, supplying the scale,
    the objective and default sampler options) or a path to a model file. ``x_lr`` is a tensor (B, C, h, w) or
    (C, h, w) in [−1, 1], a PIL image or a list of PIL images (any sizes); the result has the same form with
    sides × ``scale``. Options left at None come from ``info["inference"]``, then `DEFAULT_INFERENCE`.

    ``start="bicubic"`` starts part-way at γ_start from the bicubic image (Chung et al. 2022, not the paper's
    Algorithm 2); it makes its own y_T, so a ``y_T`` given with it is refused. ``clip_y0`` clips ŷ_0 to [−1, 1]
    inside every step (the reference code's variant, not the paper's). ``betas`` = (β_1, β_n) samples a linear β
    schedule of ``steps`` steps instead of the training schedule respaced; ``"off"`` respaces it whatever ``info``
    says (see `inference_options`). ``sampler="ddim"`` takes DDIM steps with noise ``eta`` × the posterior σ
    (`sr3_edu.diffusion.ddim_step`). ``seed`` (or ``generator``)
    together with ``batch_size`` fixes every random draw (with a given ``precision``: bf16 and fp32 chains differ in
    the last bits, so their samples differ slightly). ``tile`` bounds memory: "auto" refines images with a side over
    `sr3_edu.pipeline.AUTO_TILE` in tiles of that size, a number in tiles of that size, None or 0 whole (see
    `TiledModel`). ``precision`` "auto" is the machine's fast path: channels_last memory, and bf16 autocast where the
    machine multiplies bf16 natively (AMX or AVX512_BF16 on a CPU, see `sr3_edu.devices.native_bf16`); "fp32" is
    plain fp32 in the default memory layout, the reference arithmetic (what the tests compare against); "bf16" forces
    bf16 (see `sr3_edu.pipeline.FastNetwork`).
    ``train_schedule`` is the schedule the model was trained with (default: the one ``info`` records, see
    `training_schedule`).
    ``return_trajectory`` (tensor input only) also returns the `RefinementStep` list, cropped like the output.
    ``compile`` runs each refinement step through `torch.compile` (a CUDA graph on a GPU; see `sample`).
    """
    if isinstance(model, (str, Path)):
        model, info = load_model(model)
    info = info or {}
    objective = objective or info.get("objective", "sr3")
    scale = int(scale or info.get("scale") or 0)
    if scale < 1:
        raise ValueError("give the scale (the model file stores it; pass info=… or scale=…)")
    opts = inference_options(
        info,
        steps=steps,
        variance=variance,
        start=start,
        gamma_start=gamma_start,
        clip_y0=clip_y0,
        betas=betas,
        sampler=sampler,
        eta=eta,
    )
    if y_T is not None and opts["start"] == "bicubic":
        raise ValueError("start='bicubic' makes its own y_T from the bicubic image; pass y_T only with start='noise'")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if generator is None and seed is not None:
        generator = torch.Generator().manual_seed(int(seed))
    if train_schedule is None:
        train_schedule = training_schedule(info)
    schedule = inference_schedule(
        opts["steps"],
        start=opts["start"],
        gamma_start=opts["gamma_start"],
        train_schedule=train_schedule,
        betas=opts["betas"],
    )
    multiple = getattr(model, "multiple", 1)
    fast = FastNetwork(model, precision, channels_last=precision != "fp32")
    batches, kind = _as_batch(x_lr)
    if return_trajectory and kind not in ("tensor", "tensor3"):
        raise ValueError("return_trajectory needs a tensor input")

    # Split into chunks of batch_size (images of different sizes always go alone).
    chunks = [(i, b[j : j + batch_size]) for i, b in enumerate(batches) for j in range(0, b.shape[0], batch_size)]
    bar = None
    if progress and len(chunks) > 1:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(c.shape[0] for _, c in chunks), desc="super-resolving", unit="image")
    outputs: list[list[Tensor]] = [[] for _ in batches]
    trajectories: list[list[RefinementStep]] = []
    offset = 0
    for i, chunk in chunks:
        x, h, w = pad_lr(chunk.float(), scale, multiple)
        side = auto_tile(tile, x.shape[-2] * scale, x.shape[-1] * scale)
        net = TiledModel(fast, side, scale, overlap=None if tile != "auto" else AUTO_OVERLAP) if side else fast
        if objective == "regression":
            y, traj = regress(net, x, scale=scale), None
        else:
            start_y = None
            if y_T is not None:
                start_y = pad_like(y_T[offset : offset + chunk.shape[0]], h * scale, w * scale, x.shape, scale)
            elif opts["start"] == "bicubic":
                up = upscale_bicubic(x, scale).clamp(-1, 1)
                eps = torch.randn(up.shape, generator=generator, device=generator.device if generator else "cpu")
                # y_S = √γ_S · bicubic(x) + √(1−γ_S) · ε   (the chain's first noise level γ_S ≈ γ_start)
                start_y = q_sample(up, schedule.gammas[-1].float(), eps.to(up))
            result = sample(
                net,
                x,
                schedule,
                scale=scale,
                variance=opts["variance"],
                generator=generator,
                progress=progress,
                y_T=start_y,
                return_trajectory=return_trajectory,
                clip_y0=opts["clip_y0"],
                compile=compile,
                sampler=opts["sampler"],
                eta=opts["eta"],
            )
            y, traj = result if return_trajectory else (result, None)
        offset += chunk.shape[0]
        outputs[i].append(y[..., : h * scale, : w * scale].float().clamp(-1, 1).cpu())
        if traj is not None:
            trajectories.append(_crop_steps(traj, h * scale, w * scale))
        if bar is not None:
            bar.update(chunk.shape[0])
    if bar is not None:
        bar.close()

    out = [torch.cat(o) for o in outputs]
    if kind == "pil":
        return to_image(out[0][0])
    if kind == "pil_list":
        return [to_image(o[0]) for o in out]
    result = out[0][0] if kind == "tensor3" else out[0]
    if return_trajectory:
        return result, _merge_steps(trajectories)
    return result


def _crop_steps(steps: list[RefinementStep], H: int, W: int) -> list[RefinementStep]:
    return [
        RefinementStep(s.t, s.gamma, s.y_t[..., :H, :W], None if s.y0_hat is None else s.y0_hat[..., :H, :W])
        for s in steps
    ]


def _merge_steps(per_chunk: list[list[RefinementStep]]) -> list[RefinementStep]:
    if len(per_chunk) == 1:
        return per_chunk[0]
    merged = []
    for parts in zip(*per_chunk):
        y0 = None if parts[0].y0_hat is None else torch.cat([p.y0_hat for p in parts])
        merged.append(RefinementStep(parts[0].t, parts[0].gamma, torch.cat([p.y_t for p in parts]), y0))
    return merged


# ---------------------------------------------------------------------------------------------------- files


def write_image_atomic(img: Image.Image, path: str | Path) -> Path:
    """Save ``img`` to ``path`` via a temporary file and a rename: an interrupted run leaves no half-written image.

    The format follows the suffix (PNG, JPEG, …); an unknown suffix is refused before anything is written.
    """
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"cannot tell the image format of {path}: use a suffix among {', '.join(IMAGE_SUFFIXES)}")
    return write_atomic(path, lambda f: img.save(f, format=fmt))


def _input_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in the folder {path}")
        return files
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    return [path]


# ------------------------------------------------------------------------------------------------------ CLI


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
        help="torch.compile each refinement step, U-Net and update together (a CUDA graph on a GPU): faster per "
        "step after a first call that compiles for tens of seconds to minutes, so it pays on many steps or images",
    )


def add_precision_argument(p: argparse.ArgumentParser) -> None:
    """``--precision``, shared by every command that runs the network."""
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="the network's arithmetic: 'auto' is this machine's fast path (channels_last, and bf16 where the CPU has "
        "AVX512_BF16 or AMX or the GPU supports it); 'fp32' plain fp32, the same numbers on every machine; 'bf16' "
        "forces bf16",
    )


def add_tile_argument(p: argparse.ArgumentParser) -> None:
    """``--tile``, shared by upscale and evaluate."""
    p.add_argument(
        "--tile",
        type=_tile,
        default="auto",
        help="refine in overlapping tiles of at most this many output pixels a side, blended at every step: bounded "
        f"memory and no seams; 'auto' tiles images with a side over {AUTO_TILE} (the fastest tile on a CPU), 0 never",
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
    return value


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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = HelpFormatter
    p.add_argument(
        "--checkpoint",
        default=None,
        help="model file or training checkpoint (default: the SR3 model shipped with the package); "
        "a regression model file runs the regression baseline",
    )
    p.add_argument("--input", required=True, help="an image, or a folder of images (.png, .jpg, …), any size")
    p.add_argument(
        "--output",
        required=True,
        help="output image path for one input (format from its suffix); a folder for a folder (PNG files)",
    )
    add_sampler_arguments(p)
    add_tile_argument(p)
    p.add_argument(
        "--skip-bad-images", action="store_true", help="in a folder, skip unreadable files instead of stopping"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    src = Path(args.input)
    files = _input_files(src)
    folder = src.is_dir()
    out = Path(args.output)
    if folder and out.exists() and not out.is_dir():
        raise ValueError(f"--input is a folder, so --output must be a folder, but {out} is a file")
    if not folder:
        if out.is_dir():
            out = out / (src.stem + ".png")
        elif out.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"--output {out} needs an image suffix ({', '.join(IMAGE_SUFFIXES)})")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")

    # Read everything first: a bad file stops the run before any model work or any output.
    images: list[tuple[Path, Image.Image]] = []
    for f in files:
        try:
            img, note = load_rgb(f)
        except ValueError:
            if folder and args.skip_bad_images:
                print(f"skipping unreadable {f}", file=sys.stderr)
                continue
            raise
        if note:
            print(note, file=sys.stderr)
        images.append((f, img))
    if not images:
        raise ValueError(f"no readable images in {src}")

    model, info = load_model(args.checkpoint, device=resolve_device(args.device), objective="sr3")
    scale = info["scale"]
    opts = inference_options(info, **sampler_options(args))
    what = (
        "regression"
        if info["objective"] == "regression"
        else f"SR3 ({info.get('parametrisation', 'eps')}-parametrised f_θ), {describe(opts)}"
    )
    print(f"{info['path']}: ×{scale} {what}", file=sys.stderr)

    generator = torch.Generator().manual_seed(args.seed)
    progress = not args.no_progress
    iterator = images
    if progress and len(images) > 1:
        from tqdm.auto import tqdm

        iterator = tqdm(images, desc="images", unit="image")
    for f, img in iterator:
        sr = super_resolve(
            model,
            img,
            info=info,
            **as_arguments(opts),
            generator=generator,
            batch_size=args.batch_size,
            progress=progress,
            tile=args.tile,
            precision=args.precision,
            compile=args.compile,
        )
        target = out / (f.stem + ".png") if folder else out
        write_image_atomic(sr, target)
        print(f"{f} ({img.width}×{img.height}) → {target} ({sr.width}×{sr.height})", file=sys.stderr)
    return 0
