"""Image-quality metrics for super-resolution: PSNR, PSNR on Y, SSIM, the paper's consistency, and a detail ratio.

Every function takes images as tensors in the model's range [−1, 1], shape (B, C, H, W) (or one image (C, H, W)),
maps them to [0, 1] and clips there — the range an image file stores — and returns one score per image, shape (B,).
Means over a data set are the caller's job (`sr3_edu.evaluate`).

What each one rewards (SR3 §4.2): PSNR and SSIM reward the conditional *mean*, so the regression baseline beats
SR3 on both while looking blurrier; consistency asks whether the output, shrunk again, gives back the input;
the detail ratio asks whether the output has as much fine detail as a real photo — the property PSNR punishes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .images import downscale

__all__ = [
    "psnr",
    "psnr_y",
    "ssim",
    "consistency",
    "color_error",
    "detail_ratio",
    "seam_ratio",
    "to_unit",
    "rgb_to_y",
]


def to_unit(x: Tensor) -> Tensor:
    """[−1, 1] → [0, 1] in float64, clipped as an image file would be (before rounding); (C,H,W) → (1,C,H,W)."""
    x = torch.as_tensor(x)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"expected images (B, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    # x₀₁ = (x + 1) / 2
    return ((x.detach().double().cpu() + 1) / 2).clamp(0, 1)


def _pair(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    a, b = to_unit(a), to_unit(b)
    if a.shape != b.shape:
        raise ValueError(f"images to compare must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return a, b


def _psnr(mse: Tensor, data_range: float) -> Tensor:
    # PSNR = 10 · log10(R² / MSE)   (+∞ for identical images)
    return 10 * torch.log10(data_range**2 / mse)


def psnr(a: Tensor, b: Tensor, data_range: float = 1.0) -> Tensor:
    """PSNR = 10 · log10(R² / MSE) in dB, per image, over all channels and pixels in [0, R] (R = ``data_range``).

    ``data_range`` only rescales the pixels (the dB value does not change with it); +∞ for identical images.
    """
    a, b = _pair(a, b)
    mse = (a - b).square().mean(dim=(1, 2, 3)) * data_range**2
    return _psnr(mse, data_range)


def rgb_to_y(x01: Tensor) -> Tensor:
    """ITU-R BT.601 luma of RGB in [0, 1], on the studio range [16, 235] divided by 255.

    Y = (16 + 65.481·R + 128.553·G + 24.966·B) / 255 — MATLAB's ``rgb2ycbcr``, which the SR literature
    (Set5/Set14 tables) uses for "PSNR on the Y channel". (B, 3, H, W) → (B, 1, H, W).
    """
    if x01.shape[1] != 3:
        raise ValueError(f"the Y channel needs RGB images (3 channels), got {x01.shape[1]}")
    w = x01.new_tensor([65.481, 128.553, 24.966]).reshape(1, 3, 1, 1)
    # Y = 16 + 65.481 R + 128.553 G + 24.966 B   (8-bit scale)
    return (16 + (x01 * w).sum(dim=1, keepdim=True)) / 255


def psnr_y(a: Tensor, b: Tensor, border: int = 0) -> Tensor:
    """PSNR on the BT.601 Y channel (`rgb_to_y`), after cutting ``border`` pixels from every side.

    The SR-paper convention is ``border = scale`` (the outermost pixels of an upscaled image depend on
    how the resampler treats edges); `sr3_edu.evaluate` passes the scale. R = 1 on Y/255.
    """
    a, b = _pair(a, b)
    if border < 0 or 2 * border >= min(a.shape[-2:]):
        raise ValueError(f"border {border} leaves nothing of a {a.shape[-1]}×{a.shape[-2]} image")
    ya, yb = rgb_to_y(a), rgb_to_y(b)
    if border:
        ya, yb = ya[..., border:-border, border:-border], yb[..., border:-border, border:-border]
    return _psnr((ya - yb).square().mean(dim=(1, 2, 3)), 1.0)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    r = size // 2
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a: Tensor, b: Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Structural similarity (Wang et al. 2004), per image, averaged over channels and positions.

        SSIM = (2 μ_a μ_b + C₁)(2 σ_ab + C₂) / ((μ_a² + μ_b² + C₁)(σ_a² + σ_b² + C₂)),
        C₁ = (0.01 R)², C₂ = (0.03 R)²,

    with μ, σ², σ_ab local statistics under an 11×11 Gaussian window of σ = 1.5 (population covariance).
    Only positions where the window lies fully inside the image count, which is what
    ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=1, channel_axis=…)`` computes (it filters the whole image, then drops a 5-pixel border).
    """
    a, b = _pair(a, b)
    if min(a.shape[-2:]) < window:
        raise ValueError(f"SSIM needs images of at least {window}×{window}, got {a.shape[-1]}×{a.shape[-2]}")
    B, C, H, W = a.shape
    g = _gaussian_window(window, sigma)
    # separable Gaussian, "valid" positions only: (B·C, 1, H−10, W−10)
    kx, ky = g.reshape(1, 1, 1, -1), g.reshape(1, 1, -1, 1)

    def blur(x: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(x.reshape(B * C, 1, H, W), kx), ky)

    mu_a, mu_b = blur(a), blur(b)
    # σ_a² = E[a²] − μ_a², σ_ab = E[ab] − μ_a μ_b
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.reshape(B, C, -1).mean(dim=(1, 2))


def consistency(sr: Tensor, x_lr: Tensor, scale: int) -> Tensor:
    """The paper's consistency (SR3 §4.2.1, Table 1): MSE(D(ŷ), x) × 10⁵, per image.

    D is `sr3_edu.images.downscale`, the same antialiased bicubic that made the low-resolution data, and
    both images are in [0, 1]. The paper reports "MSE (×10⁻⁵) between the low-resolution inputs and the
    down-sampled super-resolution outputs" but states neither the pixel range nor the downsampling kernel;
    this is our choice, so numbers compare across runs of this package, not with the paper's Table 1.
    The ground truth itself does not score 0 when x was saved as 8-bit: rounding (≈ 0.13) and the small
    difference between PIL's and torch's bicubic give it ≈ 0.15.
    """
    sr01 = to_unit(sr)
    x01 = to_unit(x_lr)
    down = downscale(sr01, scale)
    if down.shape != x01.shape:
        raise ValueError(
            f"the output shrunk by {scale} is {tuple(down.shape)}, but the input is {tuple(x01.shape)}; "
            f"is the scale right?"
        )
    # MSE(D(ŷ), x) · 10⁵
    return (down - x01).square().mean(dim=(1, 2, 3)) * 1e5


def color_error(sr: Tensor, hr: Tensor) -> Tensor:
    """Mean colour error: (1/C) Σ_c |mean(ŷ_c) − mean(y_c)| per image, pixels in [0, 1].

    The image-wide colour a chain lands on, apart from any detail: a chain from pure noise whose mean drifts
    (`sr3_edu.diagnose`) scores tenths; bicubic, which keeps the input's mean, scores about 10⁻³ or less.
    """
    sr, hr = _pair(sr, hr)
    diff = sr.mean(dim=(2, 3)) - hr.mean(dim=(2, 3))  # (B, C), both already on [0, 1]
    return diff.abs().mean(dim=1)


def _high_frequency_energy(x01: Tensor, cutoff: float) -> Tensor:
    B, C, H, W = x01.shape
    # Hann window: the image's borders would otherwise add a bright cross of false high frequencies.
    win = torch.outer(
        torch.hann_window(H, periodic=False, dtype=x01.dtype), torch.hann_window(W, False, dtype=x01.dtype)
    )
    x = (x01 - x01.mean(dim=(2, 3), keepdim=True)) * win
    power = torch.fft.fft2(x).abs().square()  # (B, C, H, W)
    # radial frequency in units of Nyquist: √(f_y² + f_x²) / 0.5 cycles per pixel
    fy = torch.fft.fftfreq(H, dtype=x01.dtype).reshape(-1, 1)
    fx = torch.fft.fftfreq(W, dtype=x01.dtype).reshape(1, -1)
    radius = (fy.square() + fx.square()).sqrt() / 0.5
    return (power * (radius > cutoff)).sum(dim=(1, 2, 3))


def detail_ratio(sr: Tensor, hr: Tensor, cutoff: float = 0.25) -> Tensor:
    """E_hf(ŷ) / E_hf(y): high-frequency spectral energy of the output over that of the ground truth, per image.

        E_hf(y) = Σ_{|f| > cutoff · f_Nyquist} |FFT₂(w · (y − ȳ))(f)|²   (summed over channels, w a 2-D Hann window)

    The default cutoff 1/4 of Nyquist is the low-resolution image's own Nyquist frequency at ×4: everything
    above it is detail the input does not contain and the model has to invent. Bicubic and the regression
    baseline (a conditional mean) score well below 1; a sample with a photo-like amount of fine texture scores
    near 1; a noisy one scores above 1. It uses no learned weights (unlike FID, which the paper used), so it
    says nothing about whether the detail is *right* — read it beside PSNR and consistency.
    ``nan`` if the ground truth has no high-frequency energy (a flat image).
    """
    sr, hr = _pair(sr, hr)
    if not 0 <= cutoff < math.sqrt(2):
        raise ValueError(f"cutoff is a fraction of the Nyquist frequency in [0, √2), got {cutoff}")
    e_sr, e_hr = _high_frequency_energy(sr, cutoff), _high_frequency_energy(hr, cutoff)
    # E_hf(ŷ) / E_hf(y)
    return torch.where(e_hr > 0, e_sr / e_hr, torch.full_like(e_hr, float("nan")))


def seam_ratio(y: Tensor, row_borders: list[int], col_borders: list[int]) -> float:
    """How visible tile borders are: the mean |y[i+1] − y[i]| over the jumps i that cross a border (listed in
    ``row_borders`` and ``col_borders``: i is the last row or column before it), over the same mean for every other
    jump, rows and columns together. About 1 when a border looks like any other row; above 1 for a seam.
    ``y`` is (…, H, W) in any range (see `sr3_edu.pipeline.TiledModel.borders`)."""
    y = y.double()
    dy, dx = (y[..., 1:, :] - y[..., :-1, :]).abs(), (y[..., :, 1:] - y[..., :, :-1]).abs()
    rows = dy.mean(dim=tuple(d for d in range(dy.dim()) if d != dy.dim() - 2))  # (H − 1,) mean jump per row pair
    cols = dx.mean(dim=tuple(range(dx.dim() - 1)))  # (W − 1,)
    rmask, cmask = torch.zeros_like(rows, dtype=torch.bool), torch.zeros_like(cols, dtype=torch.bool)
    rmask[list(row_borders)], cmask[list(col_borders)] = True, True
    if not (rmask.any() or cmask.any()):
        raise ValueError("no tile borders given: the image was refined in one piece")
    at = torch.cat([rows[rmask], cols[cmask]]).mean()
    elsewhere = torch.cat([rows[~rmask], cols[~cmask]]).mean()
    return float(at / elsewhere)
