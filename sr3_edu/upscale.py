"""Super-resolve images of any size with a trained model: pad, refine (Algorithm 2), crop back.

Which chain runs (the options, their defaults, the schedule) is decided in `sr3_edu.inference`; the network's fast
path, the tiles and the padding are `sr3_edu.pipeline`'s; this module puts images in and out around them.

Sizes. The U-Net needs the sides of y_t divisible by ``model.multiple``; the low-resolution input is padded on the
right and bottom by reflection, and the output cropped back to exactly (w·scale, h·scale)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import torch
from PIL import Image
from torch import Tensor

from .checkpoint import ModelInfo, load_model
from .diffusion import RefinementStep, q_sample, sample
from .images import to_image, to_tensor, upscale_bicubic
from .inference import SamplerOptions, training_schedule
from .pipeline import FastNetwork, pad_like, pad_lr, tiled
from .regression import regress
from .schedule import NoiseSchedule

__all__ = ["super_resolve", "Upscaled"]

Upscaled: TypeAlias = Tensor | Image.Image | list[Image.Image] | tuple[Tensor, list[RefinementStep]]
"""What `super_resolve` returns: the input's own form (a tensor, a PIL image, a list of them), or with
``return_trajectory`` the pair (tensor, the `RefinementStep` list)."""


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
    options: SamplerOptions | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    batch_size: int = 8,
    progress: bool = False,
    tile: int | str | None = "auto",
    precision: str = "auto",
    train_schedule: NoiseSchedule | None = None,
    info: ModelInfo | Mapping[str, Any] | None = None,
    objective: str | None = None,
    y_T: Tensor | None = None,
    return_trajectory: bool | int = False,
    compile: bool = False,
) -> Upscaled:
    """Super-resolve ``x_lr`` by ``scale``: pad, sample (or regress), crop back, clip to [−1, 1].

    ``model`` is a network (with ``info``, the `ModelInfo` `sr3_edu.checkpoint.load_model` returns, supplying the scale,
    the objective and default sampler options) or a path to a model file. ``x_lr`` is a tensor (B, C, h, w) or
    (C, h, w) in [−1, 1], a PIL image or a list of PIL images (any sizes); the result has the same form with
    sides × ``scale``. Options left at None come from ``info.inference``, then `DEFAULT_INFERENCE`.

    ``start="bicubic"`` starts part-way at γ_start from the bicubic image (Chung et al. 2022, not the paper's
    Algorithm 2); it makes its own y_T, so a ``y_T`` given with it is refused. ``clip_y0`` clips ŷ_0 to [−1, 1]
    inside every step (the reference code's variant, not the paper's). ``betas`` = (β_1, β_n) samples a linear β
    schedule of ``steps`` steps instead of the training schedule respaced; ``"off"`` respaces it whatever ``info``
    says (see `inference_options`). ``sampler="ddim"`` takes DDIM steps with noise ``eta`` × the posterior σ
    (`sr3_edu.diffusion.ddim_step`). ``options``, a `SamplerOptions` already resolved, replaces those eight keywords
    (give one or the other). ``seed`` (or ``generator``)
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
    info = ModelInfo.of(info)
    objective = objective or info.objective
    scale = int(scale or info.scale or 0)
    if scale < 1:
        raise ValueError("give the scale (the model file stores it; pass info=… or scale=…)")
    given = {"steps": steps, "variance": variance, "start": start, "gamma_start": gamma_start, "clip_y0": clip_y0}
    given.update(betas=betas, sampler=sampler, eta=eta)
    if options is not None and any(v is not None for v in given.values()):
        raise ValueError("give the sampler options either as options=SamplerOptions(…) or as keywords, not both")
    opts = options if options is not None else SamplerOptions.resolve(info, **given)
    if y_T is not None and opts.start == "bicubic":
        raise ValueError("start='bicubic' makes its own y_T from the bicubic image; pass y_T only with start='noise'")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if generator is None and seed is not None:
        generator = torch.Generator().manual_seed(int(seed))
    schedule = opts.schedule(train_schedule if train_schedule is not None else training_schedule(info))
    batches, kind = _as_batch(x_lr)
    if return_trajectory and kind not in ("tensor", "tensor3"):
        raise ValueError("return_trajectory needs a tensor input")

    outputs, trajectories = _refine_batches(
        FastNetwork(model, precision),
        batches,
        opts,
        schedule,
        scale=scale,
        objective=objective,
        batch_size=batch_size,
        tile=tile,
        y_T=y_T,
        generator=generator,
        progress=progress,
        trajectory=return_trajectory,
        compile=compile,
    )
    return _unbatch(outputs, kind, _merge_steps(trajectories) if return_trajectory else None)


def _refine_batches(fast: FastNetwork, batches, opts, schedule, *, scale, objective, batch_size, tile, y_T, **chain):
    """Every image of ``batches`` refined (or regressed) in chunks of ``batch_size``: (outputs per batch, the
    trajectory of each chunk)."""
    from tqdm.auto import tqdm

    # chunks of batch_size (images of different sizes always go alone)
    chunks = [(i, b[j : j + batch_size]) for i, b in enumerate(batches) for j in range(0, b.shape[0], batch_size)]
    outputs: list[list[Tensor]] = [[] for _ in batches]
    trajectories: list[list[RefinementStep]] = []
    offset = 0
    total = sum(c.shape[0] for _, c in chunks)
    with tqdm(
        total=total, desc="super-resolving", unit="image", disable=not chain["progress"] or len(chunks) == 1
    ) as bar:
        for i, chunk in chunks:
            n = chunk.shape[0]
            x, h, w = pad_lr(chunk.float(), scale, getattr(fast.model, "multiple", 1))
            H, W = h * scale, w * scale  # the output's size before padding
            net = tiled(fast, tile, scale, x.shape[-2] * scale, x.shape[-1] * scale) or fast
            if objective == "regression":
                y, traj = regress(net, x, scale=scale), None
            else:
                y_start = None if y_T is None else pad_like(y_T[offset : offset + n], H, W, x.shape, scale)
                y, traj = _refine(net, x, schedule, opts, y_start, scale=scale, **chain)
            offset += n
            outputs[i].append(y[..., :H, :W].float().clamp(-1, 1).cpu())
            if traj is not None:
                trajectories.append(_crop_steps(traj, H, W))
            bar.update(n)
    return [torch.cat(o) for o in outputs], trajectories


def _refine(net, x, schedule, opts: SamplerOptions, y_start, *, scale, generator, progress, trajectory, compile):
    """One chunk through the chain `opts` describes: (y_0, its trajectory or None)."""
    if y_start is None and opts.start == "bicubic":
        up = upscale_bicubic(x, scale).clamp(-1, 1)
        eps = torch.randn(up.shape, generator=generator, device=generator.device if generator else "cpu")
        # y_S = √γ_S · bicubic(x) + √(1−γ_S) · ε   (the chain's first noise level γ_S ≈ γ_start)
        y_start = q_sample(up, schedule.gammas[-1].float(), eps.to(up))
    result = sample(
        net,
        x,
        schedule,
        scale=scale,
        variance=opts.variance,
        generator=generator,
        progress=progress,
        y_T=y_start,
        return_trajectory=trajectory,
        clip_y0=opts.clip_y0,
        compile=compile,
        sampler=opts.sampler,
        eta=opts.eta,
    )
    return result if trajectory else (result, None)


def _unbatch(out: list[Tensor], kind: str, trajectory: list[RefinementStep] | None) -> Upscaled:
    """The outputs in the form the input came in (see `_as_batch`), with the trajectory when one was asked for."""
    if kind == "pil":
        return to_image(out[0][0])
    if kind == "pil_list":
        return [to_image(o[0]) for o in out]
    result = out[0][0] if kind == "tensor3" else out[0]
    return result if trajectory is None else (result, trajectory)


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
