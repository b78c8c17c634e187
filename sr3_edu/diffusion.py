"""The forward process, the training loss (Algorithm 1) and iterative refinement (Algorithm 2).

Paper notation (SR3 §2): x is the low-resolution condition, y_0 the high-resolution image,
y_t the noisy image, γ the noise level, f_θ(x, y_t, γ) the network's estimate of the noise ε.
The textbook writes x_0, x_t, ᾱ_t and ε_θ(x_t, t) for y_0, y_t, γ_t and f_θ.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import Tensor

from . import compiled
from .schedule import NoiseSchedule

__all__ = [
    "q_sample",
    "predict_y0",
    "loss",
    "sample",
    "refine_step",
    "step_coefficients",
    "ddim_step",
    "ddim_coefficients",
    "SAMPLERS",
    "RefinementStep",
    "NoiseModel",
]


class NoiseModel(Protocol):
    """Anything called as f_θ(x, y_t, γ) → ε̂, e.g. `sr3_edu.unet.SR3UNet`."""

    def __call__(self, x_lr: Tensor, y_t: Tensor, gamma: Tensor) -> Tensor: ...


def _randn(shape, generator: torch.Generator | None, device, dtype) -> Tensor:
    """N(0, I) drawn from ``generator`` on its own device, so one seed gives one image anywhere."""
    if generator is None:
        return torch.randn(shape, device=device, dtype=dtype)
    z = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)
    return z.to(device=device, dtype=dtype)


def _per_example(gamma: Tensor, like: Tensor) -> Tensor:
    """γ of shape (B,) or () → (B, 1, 1, 1) in ``like``'s dtype and device."""
    g = torch.as_tensor(gamma, device=like.device).to(like.dtype)
    return g.reshape(-1, *([1] * (like.dim() - 1)))


def q_sample(y0: Tensor, gamma: Tensor, noise: Tensor) -> Tensor:
    """ỹ = √γ · y_0 + √(1−γ) · ε: a draw from q(y_t | y_0) at noise level γ (paper eq. 4).

    ``gamma`` has shape (B,) (one noise level per example) or is a scalar.
    Textbook: x_t = √ᾱ_t · x_0 + √(1−ᾱ_t) · ε.
    """
    g = _per_example(gamma, y0)
    return g.sqrt() * y0 + (1 - g).sqrt() * noise


def predict_y0(y_t: Tensor, gamma: Tensor, eps: Tensor) -> Tensor:
    """ŷ_0 = (y_t − √(1−γ) · ε̂) / √γ: q_sample solved for y_0 (paper eq. 6)."""
    g = _per_example(gamma, y_t)
    return (y_t - (1 - g).sqrt() * eps) / g.sqrt()


def loss(
    model: NoiseModel,
    x_lr: Tensor,
    y0: Tensor,
    schedule: NoiseSchedule,
    p: int = 1,
    generator: torch.Generator | None = None,
    offset_noise: float = 0.0,
) -> Tensor:
    """E ‖ f_θ(x, √γ·y_0 + √(1−γ)·ε, γ) − ε ‖_p^p, averaged over elements (Algorithm 1).

    γ ~ p(γ) (one continuous level per example, `NoiseSchedule.sample_gamma`), ε ~ N(0, I).
    p = 1 is the paper's choice for its best models ("L1 gives slightly better FID", Table 5);
    p = 2 with a discrete uniform t is the textbook's / DDPM's L_simple.

    ``offset_noise`` s > 0 is *not* the paper's: ε ← ε + s·ε_c with one ε_c ~ N(0, 1) per (image, channel), so the
    network sees image-wide offsets of the noise during training (Guttenberg 2023); the noise is then no longer
    i.i.d. N(0, I), which Algorithm 2 assumes.
    """
    if p not in (1, 2):
        raise ValueError(f"p must be 1 (L1) or 2 (L2), got {p!r}")
    if offset_noise < 0:
        raise ValueError(f"offset_noise must be ≥ 0, got {offset_noise!r}")
    B = y0.shape[0]
    # γ ~ p(γ)
    gamma = schedule.sample_gamma(B, generator=generator).to(device=y0.device, dtype=y0.dtype)
    # ε ~ N(0, I)
    eps = _randn(y0.shape, generator, y0.device, y0.dtype)
    if offset_noise:
        # ε + s·ε_c, ε_c ~ N(0, 1) per (image, channel)
        eps = eps + offset_noise * _randn((*y0.shape[:2], 1, 1), generator, y0.device, y0.dtype)
    # y_t = √γ y_0 + √(1−γ) ε   (the paper's ỹ)
    y_t = q_sample(y0, gamma, eps)
    eps_hat = model(x_lr, y_t, gamma)
    err = (eps_hat.float() - eps.float()).abs()
    return err.mean() if p == 1 else err.square().mean()


@dataclass
class RefinementStep:
    """One state of the reverse chain, kept for plots: y_t and the network's ŷ_0 at that step."""

    t: int
    """Step index t (0 is the final image)."""
    gamma: float
    """γ_t (1.0 at t = 0)."""
    y_t: Tensor
    """The noisy image y_t, (B, C, H, W), on the CPU."""
    y0_hat: Tensor | None
    """ŷ_0 = (y_t − √(1−γ_t) ε̂)/√γ_t predicted from y_t (None at t = 0)."""


def model_device_dtype(model) -> tuple[torch.device, torch.dtype]:
    """Where ``model``'s weights live and their dtype; the CPU and float32 for a parameter-free f_θ (an oracle)."""
    try:
        p = next(model.parameters())
        return p.device, p.dtype
    except (AttributeError, StopIteration):
        return torch.device("cpu"), torch.float32


def step_coefficients(schedule: NoiseSchedule, variance: Literal["paper", "posterior"] = "paper") -> Tensor:
    """The scalars of every refinement step, computed once in float64: a (T, 7) table whose row t − 1 holds

        √(1−γ_t), √γ_t, (1−α_t)/√(1−γ_t), √α_t,                       (Algorithm 2's update, eq. 6 for ŷ_0)
        √γ_{t−1}(1−α_t)/(1−γ_t), √α_t(1−γ_{t−1})/(1−γ_t),             (the posterior mean's weights on ŷ_0, y_t)
        σ_t                                                              (0 at t = 1: the last step adds no noise)

    with γ_0 = 1. ``variance="paper"`` takes σ_t² = 1 − α_t, ``"posterior"`` σ_t² = (1−γ_{t−1})(1−α_t)/(1−γ_t).
    The sampler reads its numbers from this table on the model's device, so a step needs no host values.
    """
    if variance not in ("paper", "posterior"):
        raise ValueError(f"variance must be 'paper' or 'posterior', got {variance!r}")
    alpha, gamma, gamma_prev = schedule.alphas, schedule.gammas, schedule.gammas_prev
    sigma = (schedule.betas if variance == "paper" else schedule.posterior_variance).sqrt()  # σ_t² = 1 − α_t or σ_q²
    sigma[0] = 0.0  # z = 0 at t = 1
    columns = [
        (1 - gamma).sqrt(),  # √(1−γ_t)
        gamma.sqrt(),  # √γ_t
        (1 - alpha) / (1 - gamma).sqrt(),  # (1−α_t)/√(1−γ_t)
        alpha.sqrt(),  # √α_t
        gamma_prev.sqrt() * (1 - alpha) / (1 - gamma),  # √γ_{t−1}(1−α_t)/(1−γ_t)
        alpha.sqrt() * (1 - gamma_prev) / (1 - gamma),  # √α_t(1−γ_{t−1})/(1−γ_t)
        sigma,  # σ_t
    ]
    return torch.stack(columns, dim=1)


def refine_step(
    model: NoiseModel, x: Tensor, y_t: Tensor, gamma_t: Tensor, k: Tensor, z: Tensor | None, clip_y0: bool = False
) -> tuple[Tensor, Tensor]:
    """One step of Algorithm 2, t → t − 1, with ``k`` the step's row of `step_coefficients`:

        ε̂ = f_θ(x, y_t, γ_t),   ŷ_0 = (y_t − √(1−γ_t) ε̂) / √γ_t
        y_{t−1} = 1/√α_t · ( y_t − (1−α_t)/√(1−γ_t) · ε̂ ) + σ_t z

    or, with ``clip_y0``, the same mean written as μ = √γ_{t−1}(1−α_t)/(1−γ_t)·ŷ_0 + √α_t(1−γ_{t−1})/(1−γ_t)·y_t
    with ŷ_0 clipped to [−1, 1] first. ``z`` is None where no noise is added. Returns (y_{t−1}, ŷ_0 unclipped).
    A pure function of tensors, so `torch.compile` can make the U-Net and the update one graph.
    """
    # the columns of `step_coefficients`, in its order
    sqrt_1m_gamma, sqrt_gamma, eps_weight, sqrt_alpha, w_y0, w_yt, sigma = k.unbind()
    # ε̂ = f_θ(x, y_t, γ_t)
    eps = model(x, y_t, gamma_t)
    # ŷ_0 = (y_t − √(1−γ_t) ε̂) / √γ_t   (eq. 6, `predict_y0` with the table's float64 square roots)
    y0_hat = (y_t - sqrt_1m_gamma * eps) / sqrt_gamma
    if clip_y0:
        # μ = √γ_{t−1}(1−α_t)/(1−γ_t) · clip(ŷ_0) + √α_t(1−γ_{t−1})/(1−γ_t) · y_t   (the posterior mean)
        mu = w_y0 * y0_hat.clamp(-1, 1) + w_yt * y_t
    else:
        # μ = 1/√α_t · (y_t − (1−α_t)/√(1−γ_t) · ε̂)   (Algorithm 2, line 4)
        mu = (y_t - eps_weight * eps) / sqrt_alpha
    # y_{t−1} = μ + σ_t z
    y = mu if z is None else mu + sigma * z
    return y, y0_hat


def ddim_coefficients(schedule: NoiseSchedule, eta: float = 0.0) -> Tensor:
    """The scalars of every DDIM step (Song et al. 2021, eq. 12 and 16, in SR3's γ), in float64: a (T, 5) table
    whose row t − 1 holds √(1−γ_t), √γ_t, √γ_{t−1}, √(1−γ_{t−1}−σ_t²) and

        σ_t = η · √((1−γ_{t−1})/(1−γ_t)) · √(1 − γ_t/γ_{t−1}),

    with γ_0 = 1. Since γ_t/γ_{t−1} = α_t, σ_t² is η² times the posterior variance: η = 1 is the ancestral chain
    with ``variance="posterior"``, η = 0 adds no noise at all (a deterministic map from y_T to y_0).
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1] (0: deterministic DDIM, 1: the ancestral chain), got {eta!r}")
    gamma, gamma_prev = schedule.gammas, schedule.gammas_prev
    sigma = eta * schedule.posterior_variance.sqrt()  # σ_t = η σ_q(t)
    columns = [
        (1 - gamma).sqrt(),  # √(1−γ_t)
        gamma.sqrt(),  # √γ_t
        gamma_prev.sqrt(),  # √γ_{t−1}
        (1 - gamma_prev - sigma.square()).clamp(min=0).sqrt(),  # √(1−γ_{t−1}−σ_t²)
        sigma,  # σ_t
    ]
    return torch.stack(columns, dim=1)


def ddim_step(
    model: NoiseModel, x: Tensor, y_t: Tensor, gamma_t: Tensor, k: Tensor, z: Tensor | None, clip_y0: bool = False
) -> tuple[Tensor, Tensor]:
    """One DDIM step, t → t − 1, with ``k`` the step's row of `ddim_coefficients`:

        ε̂ = f_θ(x, y_t, γ_t),   ŷ_0 = (y_t − √(1−γ_t) ε̂) / √γ_t
        y_{t−1} = √γ_{t−1} · ŷ_0 + √(1−γ_{t−1}−σ_t²) · ε̂ + σ_t z

    i.e. ŷ_0 noised back to level γ_{t−1} with the network's own ε̂ for all but σ_t² of the noise. Any γ schedule
    works, with any spacing, because f_θ is told γ itself. With ``clip_y0`` ŷ_0 is clipped to [−1, 1] and ε̂
    recomputed from it. Returns (y_{t−1}, ŷ_0 unclipped); at t = 1 (γ_0 = 1) the step returns ŷ_0 itself.
    """
    # the columns of `ddim_coefficients`, in its order
    sqrt_1m_gamma, sqrt_gamma, sqrt_gamma_prev, eps_weight, sigma = k.unbind()
    # ε̂ = f_θ(x, y_t, γ_t)
    eps = model(x, y_t, gamma_t)
    # ŷ_0 = (y_t − √(1−γ_t) ε̂) / √γ_t   (eq. 6)
    y0_hat = (y_t - sqrt_1m_gamma * eps) / sqrt_gamma
    y0_used, eps_used = y0_hat, eps
    if clip_y0:
        y0_used = y0_hat.clamp(-1, 1)
        # ε̂ = (y_t − √γ_t clip(ŷ_0)) / √(1−γ_t): the noise that clipped ŷ_0 implies
        eps_used = (y_t - sqrt_gamma * y0_used) / sqrt_1m_gamma
    # y_{t−1} = √γ_{t−1} ŷ_0 + √(1−γ_{t−1}−σ_t²) ε̂
    y = sqrt_gamma_prev * y0_used + eps_weight * eps_used
    # + σ_t z
    return (y if z is None else y + sigma * z), y0_hat


SAMPLERS = ("ddpm", "ddim")
"""``"ddpm"``: Algorithm 2 (`refine_step`); ``"ddim"``: `ddim_step`."""


@torch.inference_mode()
def sample(
    model: NoiseModel,
    x_lr: Tensor,
    schedule: NoiseSchedule,
    *,
    scale: int,
    variance: Literal["paper", "posterior"] = "paper",
    generator: torch.Generator | None = None,
    return_trajectory: bool | int = False,
    progress: bool = False,
    y_T: Tensor | None = None,
    clip_y0: bool = False,
    compile: bool = False,
    sampler: Literal["ddpm", "ddim"] = "ddpm",
    eta: float = 0.0,
) -> Tensor | tuple[Tensor, list[RefinementStep]]:
    """Iterative refinement (Algorithm 2): y_T ~ N(0, I), then for t = T, …, 1

        y_{t−1} = 1/√α_t · ( y_t − (1−α_t)/√(1−γ_t) · f_θ(x, y_t, γ_t) ) + σ_t · z,   z ~ N(0, I),

    with z = 0 at t = 1 (one step is `refine_step`). ``variance="paper"`` takes σ_t² = 1 − α_t (the paper;
    textbook β_t); ``variance="posterior"`` takes σ_t² = (1−γ_{t−1})(1−α_t)/(1−γ_t), the textbook's σ_q(t)²
    and the reference code's choice.

    ``schedule`` is the *inference* schedule; it need not be the one the model was trained with.
    ``x_lr`` is (B, C, h, w); the result is (B, C, h·scale, w·scale). ``return_trajectory=True``
    also returns every step as `RefinementStep`; an int k keeps every k-th step (plus y_T and y_0).
    ``y_T`` replaces the initial N(0, I) draw (used by the part-way "bicubic" start).
    ``clip_y0=True`` is the reference implementation's variant, not the paper's: it takes the same step written as
    the posterior mean with ŷ_0 clipped to the image range [−1, 1] first, which stops early, very noisy steps from
    pushing the colours out of range.
    Every random draw comes from ``generator``, so a seed fixes the image.
    The whole chain runs inside ``model.fixed_weights()`` where the network has one: `sr3_edu.pipeline.FastNetwork`
    then casts θ to bf16 once for the chain, not at every step; the numbers are the same.

    ``sampler="ddim"`` takes DDIM steps instead (`ddim_step`, noise σ_t = η × the posterior σ; ``variance`` is then
    unused): η = 0 is deterministic, η = 1 the ancestral chain with the posterior variance. Not the paper's sampler,
    but the same trained f_θ: it keeps its quality at fewer steps.

    ``compile=True`` runs each step through `torch.compile` (U-Net and update fused; a CUDA graph on a GPU), with
    the step's numbers read from a table on the device and each step's noise drawn on the device. It is meant for
    a GPU, where the first call's compilation (a minute or more) is spread over many steps or images; on a CPU
    without AMX a compiled step measured slower than an eager one (``benchmarks/bench_compile.py``). On a GPU its
    noise comes from a device generator seeded from ``generator``, so a seed still fixes the image, but not the
    same image as the eager sampler's; on the CPU both draw the same noise.
    """
    if x_lr.dim() != 4:
        raise ValueError(f"x_lr must be a batch (B, C, h, w), got shape {tuple(x_lr.shape)}")
    device, dtype = model_device_dtype(model)
    step, k_dev, gammas_dev = _step_and_tables(schedule, sampler, variance, eta, device, dtype)
    x = x_lr.to(device=device, dtype=dtype)
    B, C, h, w = x.shape
    shape = (B, C, h * scale, w * scale)
    y = _randn(shape, generator, device, dtype) if y_T is None else y_T.to(device, dtype).clone()
    step, noise_generator = (
        compiled.compiled_sampler(step, generator, shape, device, dtype) if compile else (step, generator)
    )
    stride = int(return_trajectory)  # True keeps every step, False none
    trajectory: list[RefinementStep] = []
    gammas = schedule.gammas.tolist()

    # θ does not change during the chain: a wrapper of f_θ may prepare its weights once for it
    with getattr(model, "fixed_weights", contextlib.nullcontext)():
        for t in _timesteps(schedule.T, progress):
            gamma_t = gammas_dev[t - 1].expand(B)
            z = _randn(shape, noise_generator, device, dtype) if t > 1 and (sampler == "ddpm" or eta > 0) else None
            kept = stride > 0 and (t == schedule.T or t % stride == 0)
            y_kept = y.float().cpu() if kept else None  # before the step: a CUDA graph reuses y's memory
            y, y0_hat = step(model, x, y, gamma_t, k_dev[t - 1], z, clip_y0)
            if kept:
                trajectory.append(RefinementStep(t, gammas[t - 1], y_kept, y0_hat.float().cpu()))
    if compile and device.type == "cuda":
        y = y.clone()  # the graph's output memory is reused by its next replay, so hand back a copy
    if stride > 0:
        trajectory.append(RefinementStep(0, 1.0, y.float().cpu(), None))
        return y, trajectory
    return y


def _step_and_tables(
    schedule: NoiseSchedule, sampler: str, variance: str, eta: float, device: torch.device, dtype: torch.dtype
) -> tuple[Callable, Tensor, Tensor]:
    """The step `sample` takes (`refine_step` or `ddim_step`), its coefficients (T, k) and γ_t (T,) on the device."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if sampler == "ddim":
        coefficients, step = ddim_coefficients(schedule, eta), ddim_step
    else:
        coefficients, step = step_coefficients(schedule, variance), refine_step
    # Every step's numbers on the device, made once: reading row t − 1 is a view, not a host → device copy.
    return step, coefficients.to(device=device, dtype=dtype), schedule.gammas.to(device=device, dtype=dtype)


def _timesteps(T: int, progress: bool):
    """t = T, …, 1, under a progress bar if asked."""
    if not progress:
        return range(T, 0, -1)
    from tqdm.auto import tqdm

    return tqdm(range(T, 0, -1), desc="refining", unit="step", leave=False)
