"""The built-in photos: a fixed, disjoint split that loads offline as 8-bit RGB."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sr3_edu.builtin import BUILTIN_SPLIT, builtin_images, builtin_names, load_builtin

DOCUMENTED = {
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "motorcycle_left",
    "motorcycle_right",
    "grace_hopper",
}


def test_split_is_disjoint_and_covers_the_documented_photos():
    train, val = set(BUILTIN_SPLIT["train"]), set(BUILTIN_SPLIT["val"])
    assert set(BUILTIN_SPLIT) == {"train", "val"}
    assert not train & val
    assert train | val == DOCUMENTED
    assert len(builtin_names("all")) == len(DOCUMENTED)
    assert 6 <= len(train) <= 8 and 2 <= len(val) <= 4


def test_motorcycle_views_share_a_side():
    for side in BUILTIN_SPLIT.values():
        assert ("motorcycle_left" in side) == ("motorcycle_right" in side)


@pytest.mark.parametrize("split", ["train", "val"])
def test_images_load_as_8bit_rgb(split):
    images = builtin_images(split)
    assert tuple(images) == builtin_names(split)
    for name, im in images.items():
        assert im.mode == "RGB", name
        a = np.asarray(im)
        assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
        assert min(im.size) >= 256, name  # big enough for 256×256 crops without enlarging
        assert a.std() > 10, name  # a real photo, not a blank placeholder


def test_motorcycle_views_differ_and_photos_are_distinct():
    left, right = np.asarray(load_builtin("motorcycle_left")), np.asarray(load_builtin("motorcycle_right"))
    assert left.shape == right.shape and not np.array_equal(left, right)
    means = {n: float(np.asarray(load_builtin(n)).mean()) for n in builtin_names("all")}
    assert len(set(means.values())) == len(means)


def test_returned_images_are_copies():
    im = load_builtin("chelsea")
    before = im.getpixel((0, 0))
    im.paste((0, 0, 0), (0, 0, 4, 4))
    assert load_builtin("chelsea").getpixel((0, 0)) == before


def test_unknown_name_and_split_list_valid_ones():
    with pytest.raises(ValueError, match="astronaut"):
        load_builtin("lena")
    with pytest.raises(ValueError, match="'train', 'val', 'all'"):
        builtin_names("test")
    with pytest.raises(ValueError, match="'train', 'val', 'all'"):
        builtin_images("test")


def test_import_is_cheap_and_loading_needs_no_network():
    code = (
        "import socket, sys\n"
        "def no_net(*a, **k): raise RuntimeError('network used')\n"
        "socket.socket.connect = no_net\n"
        "socket.create_connection = no_net\n"
        "import sr3_edu.builtin as b\n"
        "assert 'skimage' not in sys.modules and 'matplotlib' not in sys.modules\n"
        "assert len(b.builtin_images('all')) == 10\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=Path(__file__).parents[1])
