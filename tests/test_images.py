"""Images ↔ tensors and the bicubic resampling."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from sr3_edu.images import downscale, downscale_pil, load_rgb, to_image, to_tensor, to_uint8, upscale_bicubic


def photo(h=64, w=96):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(xx / 5.0), np.cos(yy / 7.0), np.sin((xx + yy) / 9.0)], -1) * 100 + 128
    return Image.fromarray(np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8))


def test_tensor_round_trip_is_exact_and_in_minus_one_to_one():
    img = photo()
    t = to_tensor(img)
    assert t.shape == (3, 64, 96) and t.min() >= -1 and t.max() <= 1
    assert np.array_equal(to_uint8(t), np.asarray(img))
    assert np.array_equal(np.asarray(to_image(t)), np.asarray(img))


def test_tensor_downscale_matches_pil_bicubic_with_antialias_up_to_rounding():
    img = photo()
    pil = np.asarray(downscale_pil(img, 4)).astype(float)
    ten = to_uint8(downscale(to_tensor(img)[None], 4)[0]).astype(float)
    assert pil.shape == ten.shape == (16, 24, 3)
    assert np.abs(pil - ten).mean() < 0.5 and np.abs(pil - ten).max() <= 3


def test_downscale_refuses_sizes_not_divisible_by_the_scale():
    with pytest.raises(ValueError, match="not divisible"):
        downscale_pil(photo(63, 96), 4)


def test_bicubic_enlargement_has_the_target_size():
    assert upscale_bicubic(torch.zeros(1, 3, 5, 7), 4).shape == (1, 3, 20, 28)


def test_load_rgb_converts_grayscale_rgba_and_16_bit(tmp_path):
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(tmp_path / "g.png")
    Image.fromarray(np.full((8, 8, 4), 200, np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(tmp_path / "d.png")
    for name, note in [("g.png", "converted"), ("a.png", "alpha"), ("d.png", "16-bit")]:
        img, msg = load_rgb(tmp_path / name)
        assert img.mode == "RGB" and img.size == (8, 8)
        assert note in msg and name in msg
    assert np.asarray(load_rgb(tmp_path / "d.png")[0])[0, 0, 0] == round(40000 / 65535 * 255)


def test_load_rgb_names_an_unreadable_file_and_the_fix(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.png.*skip-bad-images"):
        load_rgb(bad)


def test_importing_the_package_does_not_import_torch():
    code = "import sys, sr3_edu; assert 'torch' not in sys.modules, 'import sr3_edu pulled in torch'"
    subprocess.run([sys.executable, "-c", code], check=True)
