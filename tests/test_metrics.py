"""Metrics against values known in closed form and against scikit-image's implementations."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from sr3_edu import metrics
from sr3_edu.images import downscale, upscale_bicubic


def smooth_images(B=2, C=3, H=48, W=40, seed=0):
    """Random but photo-like (spatially correlated) images in [−0.8, 0.8]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, C, H // 4, W // 4, generator=g) * 1.6 - 0.8
    return upscale_bicubic(x, size=(H, W)).clamp(-0.8, 0.8) + 0.05 * torch.randn(B, C, H, W, generator=g)


def as_unit_hwc(t):
    return ((t.double() + 1) / 2).clamp(0, 1).permute(1, 2, 0).numpy()


def test_psnr_of_a_known_mse():
    a = torch.zeros(2, 3, 8, 8)  # 0.5 in [0, 1]
    b = a.clone()
    b[0] += 0.2  # +0.1 in [0, 1] everywhere: MSE 0.01 → 20 dB
    b[1, :, :4] -= 0.02  # −0.01 on half the pixels: MSE 0.5e-4 → 43.01 dB
    p = metrics.psnr(a, b)
    assert p[0].item() == pytest.approx(20.0, abs=1e-6)
    assert p[1].item() == pytest.approx(10 * math.log10(1 / 0.5e-4), abs=1e-6)
    # the range only rescales the pixels; the dB value is the same
    assert metrics.psnr(a, b, data_range=255.0)[0].item() == pytest.approx(20.0, abs=1e-6)
    assert math.isinf(metrics.psnr(a, a)[0].item())


def test_psnr_matches_skimage_and_accepts_a_single_image():
    a, b = smooth_images(1)[0], smooth_images(1, seed=1)[0]
    want = peak_signal_noise_ratio(as_unit_hwc(a), as_unit_hwc(b), data_range=1)
    assert metrics.psnr(a, b).item() == pytest.approx(want, abs=1e-4)


def test_psnr_refuses_images_of_different_shapes():
    with pytest.raises(ValueError, match="same shape"):
        metrics.psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))


def test_y_channel_is_bt601_studio_range_as_skimage():
    x = smooth_images(1)[0]
    want = rgb2ycbcr(as_unit_hwc(x))[..., 0] / 255
    got = metrics.rgb_to_y(metrics.to_unit(x))[0, 0].numpy()
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert metrics.rgb_to_y(torch.zeros(1, 3, 2, 2)).min().item() == pytest.approx(16 / 255)
    assert metrics.rgb_to_y(torch.ones(1, 3, 2, 2)).max().item() == pytest.approx(235 / 255)


def test_psnr_y_of_a_known_gray_shift_and_the_border_crop():
    a = torch.zeros(1, 3, 20, 20)
    b = a + 0.2  # +0.1 on R, G and B: ΔY = 0.1 · 219/255
    want = -20 * math.log10(0.1 * 219 / 255)
    assert metrics.psnr_y(a, b).item() == pytest.approx(want, abs=1e-6)
    # a difference only in a 4-pixel frame is invisible with border=4, but not without
    c = a.clone()
    c[..., :4, :] = 0.5
    assert math.isinf(metrics.psnr_y(a, c, border=4).item())
    assert math.isfinite(metrics.psnr_y(a, c, border=3).item())
    with pytest.raises(ValueError, match="border"):
        metrics.psnr_y(a, c, border=10)


def test_ssim_of_identical_images_is_one():
    x = smooth_images()
    torch.testing.assert_close(metrics.ssim(x, x), torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("shape", [(3, 32, 32), (3, 29, 45), (1, 24, 17)])
def test_ssim_matches_skimage_gaussian_ssim(shape):
    C, H, W = shape
    g = torch.Generator().manual_seed(H * W)
    a = torch.rand(2, C, H, W, generator=g) * 2 - 1
    b = (a + 0.4 * torch.randn(2, C, H, W, generator=g)).clamp(-1, 1)
    got = metrics.ssim(a, b)
    for i in range(2):
        want = structural_similarity(
            as_unit_hwc(a[i]),
            as_unit_hwc(b[i]),
            channel_axis=2,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1,
        )
        assert got[i].item() == pytest.approx(want, abs=1e-6)
    assert (got < 0.99).all()  # a real difference, not a trivial 1


def test_ssim_refuses_images_smaller_than_its_window():
    with pytest.raises(ValueError, match="11×11"):
        metrics.ssim(torch.zeros(1, 3, 10, 30), torch.zeros(1, 3, 10, 30))


def test_consistency_of_an_exact_downscale_is_zero_and_of_a_perturbed_one_is_its_mse():
    hr = smooth_images()
    x = downscale(hr, 4)
    assert metrics.consistency(hr, x, 4).abs().max().item() < 1e-6
    # +0.02 in [−1, 1] is +0.01 in [0, 1]: MSE 1e-4, ×1e5 = 10
    c = metrics.consistency(hr, x + 0.02, 4)
    torch.testing.assert_close(c, torch.full((2,), 10.0, dtype=torch.float64), atol=1e-4, rtol=1e-4)
    # an output that ignores the input is far less consistent than its bicubic enlargement
    assert (metrics.consistency(hr.flip(-1), x, 4) > metrics.consistency(upscale_bicubic(x, 4), x, 4)).all()


def test_consistency_refuses_a_wrong_scale():
    hr = smooth_images()
    with pytest.raises(ValueError, match="scale"):
        metrics.consistency(hr, downscale(hr, 4), 2)


def test_detail_ratio_is_one_for_identical_below_one_for_blur_above_one_for_noise():
    hr = smooth_images(H=64, W=56) + 0.1 * torch.randn(2, 3, 64, 56, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(metrics.detail_ratio(hr, hr), torch.ones(2, dtype=torch.float64))
    blurred = F.avg_pool2d(hr, 3, stride=1, padding=1, count_include_pad=False)
    bicubic = upscale_bicubic(downscale(hr, 4), 4)
    noisy = hr + 0.2 * torch.randn(hr.shape, generator=torch.Generator().manual_seed(4))
    assert (metrics.detail_ratio(blurred, hr) < 0.7).all()
    assert (metrics.detail_ratio(bicubic, hr) < metrics.detail_ratio(blurred, hr)).all()
    assert (metrics.detail_ratio(noisy, hr) > 1.5).all()


def test_detail_ratio_of_a_flat_ground_truth_is_nan():
    flat = torch.zeros(1, 3, 16, 16)
    assert math.isnan(metrics.detail_ratio(smooth_images(1, H=16, W=16), flat).item())


def test_color_error_is_the_mean_per_channel_offset_and_ignores_detail():
    from sr3_edu.metrics import color_error

    hr = torch.rand(2, 3, 32, 32) * 1.6 - 0.8
    shifted = hr.clone()
    shifted[:, 0] += 0.2  # +0.1 on [0, 1] in red only
    noisy = hr + 0.3 * torch.randn(hr.shape, generator=torch.Generator().manual_seed(0))
    assert color_error(hr, hr).max().item() == 0
    assert color_error(shifted, hr).tolist() == pytest.approx([0.1 / 3] * 2, abs=1e-6)
    assert color_error(noisy, hr).max().item() < 0.01  # zero-mean noise barely moves the mean
