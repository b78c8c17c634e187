"""Images ↔ tensors and the bicubic resampling."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from sr3_edu.folders import image_header
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


def with_orientation(img: Image.Image, orientation: int) -> Image.Exif:
    exif = img.getexif()
    exif[0x0112] = orientation
    return exif


@pytest.mark.parametrize(
    "orientation, upright",
    [
        (1, lambda a: a),
        (2, lambda a: a[:, ::-1]),  # mirrored left to right
        (3, lambda a: a[::-1, ::-1]),  # turned half a turn
        (6, lambda a: np.rot90(a, k=-1)),  # stored turned a quarter anticlockwise: shown turned clockwise
        (8, lambda a: np.rot90(a, k=1)),
    ],
)
def test_load_rgb_turns_pixels_upright_as_their_exif_orientation_says(tmp_path, orientation, upright):
    a = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10  # 3 wide, 2 high, every pixel distinct
    img = Image.fromarray(a)
    img.save(tmp_path / "p.png", exif=with_orientation(img, orientation))
    loaded, note = load_rgb(tmp_path / "p.png")
    assert np.array_equal(np.asarray(loaded), upright(a)) and note is None


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif"])
def test_image_header_gives_the_size_load_rgb_turns_the_image_to(tmp_path, suffix):
    img = Image.fromarray(np.zeros((4, 10, 3), np.uint8))  # 10 wide, 4 high as stored
    path = tmp_path / f"p{suffix}"
    img.save(path, exif=with_orientation(img, 6))
    assert image_header(path) == ((4, 10), "RGB") == (load_rgb(path)[0].size, "RGB")
    img.save(tmp_path / f"q{suffix}")
    assert (
        image_header(tmp_path / f"q{suffix}") == ((10, 4), "RGB") == (load_rgb(tmp_path / f"q{suffix}")[0].size, "RGB")
    )


def icc(space: str) -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile(space)).tobytes()


def test_load_rgb_keeps_an_rgb_colour_profile_and_leaves_out_one_of_other_values(tmp_path):
    srgb, lab = icc("sRGB"), icc("LAB")
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "rgb.jpg", icc_profile=srgb)
    Image.fromarray(np.zeros((4, 6, 4), np.uint8)).save(tmp_path / "rgba.png", icc_profile=srgb)
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(tmp_path / "grey.png", icc_profile=lab)  # not RGB values
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "none.png")
    assert load_rgb(tmp_path / "rgb.jpg")[0].info["icc_profile"] == srgb
    assert load_rgb(tmp_path / "rgba.png")[0].info["icc_profile"] == srgb
    assert "icc_profile" not in load_rgb(tmp_path / "grey.png")[0].info
    assert "icc_profile" not in load_rgb(tmp_path / "none.png")[0].info


def test_load_rgb_names_an_unreadable_file_and_the_fix(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.png.*skip-bad-images"):
        load_rgb(bad)


def test_importing_the_package_does_not_import_torch():
    code = "import sys, sr3_edu; assert 'torch' not in sys.modules, 'import sr3_edu pulled in torch'"
    subprocess.run([sys.executable, "-c", code], check=True)
