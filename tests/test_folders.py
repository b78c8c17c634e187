"""Images on disk: one recursive lister for training and for evaluation."""

import pytest
from PIL import Image

from sr3_edu.folders import find_images, load_images


def test_evaluation_photos_are_listed_as_training_images_are_recursively_and_named_by_their_path(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    for name in ("a.png", "sub/b.JPG", ".hidden/c.png", "notes.txt"):
        path = tmp_path / name
        if name.endswith("txt"):
            path.write_text("not an image")
        else:
            Image.new("RGB", (8, 8), (10, 20, 30)).save(path, format="PNG" if name.endswith("png") else "JPEG")
    assert [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)] == ["a.png", "sub/b.JPG"]
    images = load_images(str(tmp_path))
    assert sorted(images) == ["a", "sub/b"] and images["a"].size == (8, 8)


def test_load_images_names_the_folder_that_is_missing_or_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_images(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="no images"):
        load_images(str(tmp_path))
