"""Why a chain drifts: the network's noise estimate at fixed noise levels, and what ÷√γ makes of its errors.

Algorithm 2 reads the image off the noise estimate, ŷ_0 = (y_t − √(1−γ) ε̂)/√γ (eq. 6). An error δ in ε̂ is an error
δ·√(1−γ)/√γ in ŷ_0: at γ = 10⁻⁴ a hundredfold. An exact estimate corrects such errors at the next step: whatever of
y_t the photo (fixed by x) does not explain, it calls noise. `noise_estimate_errors` measures the errors on held-out
photos with y_t drawn exactly from q(y_t | y_0) (the network alone, not the sampler), and whether the network calls
an image-wide offset of y_t noise, as it should; `chain_drift` then follows the mean of y_t along a chain from pure
noise, where such offsets build up.

    python -m sr3_edu diagnose            # the shipped model on the built-in validation photos
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .checkpoint import ModelInfo
from .diffusion import model_device_dtype, q_sample
from .upscale import super_resolve

__all__ = ["noise_estimate_errors", "paper_chain", "chain_drift", "format_report", "GAMMAS"]

GAMMAS = (4.4e-5, 1e-4, 1e-3, 1e-2, 0.1, 0.5, 0.9)
"""Default noise levels: from the first level of the training schedule (γ_T ≈ 4.4·10⁻⁵) to nearly clean."""


@torch.inference_mode()
def noise_estimate_errors(
    model, x: Tensor, y0: Tensor, gammas=GAMMAS, *, repeats: int = 8, seed: int = 0
) -> list[dict[str, float]]:
    """For each γ: E‖ε̂ − ε‖² per element (``eps_mse``), the mean over images of |mean(ε̂ − ε)| (``eps_bias``, the
    image-wide part of the error) and the shift of ŷ_0 it causes, eps_bias·√(1−γ)/√γ (``y0_shift``; pixels in
    [−1, 1]), and ``mean_response``: how much ε̂'s mean moves per unit of a constant added to y_t. The low-resolution
    x fixes the photo's mean, so an exact estimate takes such an offset for noise: 1/√(1−γ) (``mean_response_exact``);
    a network that takes it for signal lets the mean of a chain wander. ``x`` (B, C, H/s, W/s) and ``y0``
    (B, C, H, W) in [−1, 1]; ``repeats`` draws of ε per γ."""
    device, _ = model_device_dtype(model)
    gen = torch.Generator().manual_seed(seed)
    x, y0 = x.to(device), y0.to(device)
    rows = []
    for gamma in gammas:
        g = torch.full((y0.shape[0],), float(gamma), device=device)
        mse, bias, response = [], [], []
        for _ in range(repeats):
            eps = torch.randn(y0.shape, generator=gen).to(device)
            y_t = q_sample(y0, g, eps)
            eps_hat = model(x, y_t, g).float()
            err = (eps_hat - eps).flatten(1)
            mse.append(err.square().mean().item())
            bias.append(err.mean(dim=1).abs().mean().item())
            # ε̂'s mean after adding a constant 0.1 to y_t, against before
            response.append(((model(x, y_t + 0.1, g).float() - eps_hat).mean() / 0.1).item())
        b = sum(bias) / repeats
        rows.append(
            {
                "gamma": float(gamma),
                "eps_mse": sum(mse) / repeats,
                "eps_bias": b,
                "y0_shift": b * math.sqrt(1 - gamma) / math.sqrt(gamma),
                "mean_response": sum(response) / repeats,
                "mean_response_exact": 1 / math.sqrt(1 - gamma),
            }
        )
    return rows


def paper_chain(model, lr: Tensor, info: ModelInfo, *, steps: int = 100, every: int = 10, seed: int = 0):
    """Algorithm 2 as the paper writes it: from pure noise, σ_t² = 1 − α_t, no clipping, ``steps`` steps of the
    training schedule respaced. Returns the output and the `RefinementStep` kept every ``every`` steps. It runs in
    plain fp32, like the rest of the diagnosis, so that its figures are the same on every machine."""
    return super_resolve(
        model,
        lr,
        info=info,
        steps=steps,
        start="noise",
        variance="paper",
        clip_y0=False,
        seed=seed,
        return_trajectory=every,
        precision="fp32",
    )


def chain_drift(model, lr: Tensor, info: ModelInfo, *, steps: int = 100, every: int = 10, seed: int = 0) -> list[dict]:
    """The paper's sampler from pure noise (`paper_chain`): the mean and standard deviation of y_t every ``every``
    steps. A chain that works keeps the mean near the photos' (a few tenths at most); one that accumulates a biased
    ε̂ walks away from it."""
    _, steps_kept = paper_chain(model, lr, info, steps=steps, every=every, seed=seed)
    return [{"t": s.t, "gamma": s.gamma, "mean": s.y_t.mean().item(), "std": s.y_t.std().item()} for s in steps_kept]


def format_report(errors: list[dict], drift: list[dict], target_mean: float) -> str:
    lines = ["noise estimate at fixed γ (y_t drawn from q(y_t | y_0)):", ""]
    lines += ["γ          ε-MSE    |mean err|  ŷ0 shift  response to an offset (exact)"]
    lines += [
        f"{r['gamma']:<9.2g} {r['eps_mse']:8.5f}  {r['eps_bias']:9.5f}  {r['y0_shift']:8.3f}  "
        f"{r['mean_response']:8.3f} ({r['mean_response_exact']:.3f})"
        for r in errors
    ]
    lines += ["", f"chain from pure noise (the photos' mean is {target_mean:+.3f}):", ""]
    lines += ["  t   γ_t        mean    std"]
    lines += [f"{r['t']:>4} {r['gamma']:<9.2e} {r['mean']:+7.3f} {r['std']:6.3f}" for r in drift]
    return "\n".join(lines)
