"""photos: the built-in training photos and Debian's wallpaper photos gathered into one training folder."""

import pytest
from PIL import Image

from sr3_edu.builtin import builtin_names
from sr3_edu.cli import main
from sr3_edu.photos import MATE_NATURE, PLASMA_PHOTOS, debian_photos, gather


def fake_packages(root, size=(300, 200)):
    """The two packages' folders under ``root``, with small stand-in photos (plasma: a file and a symlink)."""
    mate = root / "usr/share/backgrounds/mate/nature"
    mate.mkdir(parents=True)
    for name in MATE_NATURE:
        Image.new("RGB", size, (10, 200, 30)).save(mate / f"{name}.jpg")
    for name in PLASMA_PHOTOS:
        images = root / "usr/share/wallpapers" / name / "contents/images"
        images.mkdir(parents=True)
        Image.new("RGB", size, (200, 10, 30)).save(images / "2560x1600.jpg")
        (images / "640x480.jpg").symlink_to("2560x1600.jpg")
    return root


def test_gather_writes_builtin_train_and_debian_photos_shrunk_with_their_sources(tmp_path):
    root = fake_packages(tmp_path / "root")
    written = gather(tmp_path / "out", long_side=120, root=root)
    names = {p.name for p in written}
    assert len(written) == len(builtin_names("train")) + len(MATE_NATURE) + len(PLASMA_PHOTOS)
    assert all(f"builtin_{n}.png" in names for n in builtin_names("train"))
    assert not any(n in name for n in builtin_names("val") for name in names)  # validation photos stay unseen
    assert Image.open(tmp_path / "out" / "mate_Aqua.png").size == (120, 80)
    sources = (tmp_path / "out" / "SOURCES.txt").read_text()
    assert "plasma_Path.png" in sources and "GPL-2+" in sources
    assert "/usr/share/doc/mate-backgrounds/copyright" in sources


def test_symlinked_sizes_are_not_taken_for_the_photo(tmp_path):
    root = fake_packages(tmp_path / "root")
    paths = {name: path for name, _, path in debian_photos(root)}
    assert paths["Path"].name == "2560x1600.jpg"


def test_a_missing_package_is_named_with_the_install_command_and_nothing_is_written(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="mate-backgrounds is not installed.*apt-get install"):
        gather(tmp_path / "out", root=tmp_path / "empty")
    assert not (tmp_path / "out").exists()
    missing = fake_packages(tmp_path / "root")
    (missing / "usr/share/backgrounds/mate/nature/Dune.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="Dune.jpg is missing"):
        debian_photos(missing)


def test_photos_command_refuses_a_tiny_long_side(tmp_path, capsys):
    assert main(["photos", "--out", str(tmp_path / "o"), "--long-side", "10"]) == 1
    assert "long_side must be at least 64" in capsys.readouterr().err
