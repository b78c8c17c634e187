"""Paired (x_lr, y0) data sets: deterministic items, x = bicubic↓(y0), and clear errors for bad folders."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from sr3_edu.builtin import BUILTIN_SPLIT
from sr3_edu.data import (
    MIN_SAMPLES_PER_EPOCH,
    DataFolderNotFoundError,
    DataWarning,
    PairedImageDataset,
    PreparedPairsDataset,
    make_dataset,
)
from sr3_edu.images import downscale_pil, to_image, to_tensor


def photo(w: int, h: int, seed: int = 0) -> Image.Image:
    """A random RGB image: every crop position and flip gives different pixels."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    photo(90, 70, 1).save(root / "a.png")
    photo(80, 100, 2).save(root / "sub" / "b.JPG", quality=95)
    photo(66, 64, 3).save(root / "c.bmp")
    return root


def same(a: tuple, b: tuple) -> bool:
    return all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def test_items_depend_only_on_seed_epoch_index(folder):
    ds = PairedImageDataset.from_folder(folder, hr_size=32, seed=3)
    again = PairedImageDataset.from_folder(folder, hr_size=32, seed=3)
    assert same(ds[5], ds[5]) and same(ds[5], again[5])
    first = [ds[i] for i in range(6)]
    ds.set_epoch(1)
    assert not any(same(first[i], ds[i]) for i in range(6))
    ds.set_epoch(0)
    assert all(same(first[i], ds[i]) for i in range(6))
    other_seed = PairedImageDataset.from_folder(folder, hr_size=32, seed=4)
    assert not same(first[0], other_seed[0])
    # surviving a round trip through pickle is what DataLoader workers rely on
    assert same(pickle.loads(pickle.dumps(ds))[2], first[2])


def test_shapes_range_and_length(folder):
    ds = PairedImageDataset.from_folder(folder, hr_size=32, scale=4)
    assert len(ds.images) == 3
    assert ds.patches_per_image * 3 >= MIN_SAMPLES_PER_EPOCH and len(ds) == 3 * ds.patches_per_image
    x, y0 = ds[len(ds) - 1]
    assert x.shape == (3, 8, 8) and y0.shape == (3, 32, 32)
    assert x.dtype == y0.dtype == torch.float32
    assert -1 <= y0.min() and y0.max() <= 1 and -1 <= x.min() and x.max() <= 1
    assert len(PairedImageDataset.from_folder(folder, patches_per_image=2)) == 6
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_lr_is_the_bicubic_downscale_of_a_real_crop(folder):
    ds = PairedImageDataset.from_folder(folder, hr_size=32, scale=4, flips=False)
    for i in range(4):
        x, y0 = ds[i]
        crop = to_image(y0)
        assert torch.equal(x, to_tensor(downscale_pil(crop, 4)))
        # y0 is one of the hr×hr windows of its photo
        src = np.asarray(ds.images[i % len(ds.images)])
        windows = np.lib.stride_tricks.sliding_window_view(src, (32, 32, 3))[:, :, 0]
        assert (windows == np.asarray(crop)).all(axis=(2, 3, 4)).sum() >= 1


def test_flips_are_horizontal_and_vertical_and_reuse_the_same_crop(folder):
    plain = PairedImageDataset.from_folder(folder, hr_size=32, flips=False, seed=1)
    flipped = PairedImageDataset.from_folder(folder, hr_size=32, flips=True, seed=1)
    seen = set()
    for i in range(len(plain)):
        y_plain, y_flip = plain[i][1], flipped[i][1]
        kinds = {
            "none": y_plain,
            "h": y_plain.flip(-1),
            "v": y_plain.flip(-2),
            "hv": y_plain.flip(-1, -2),
        }
        match = [k for k, v in kinds.items() if torch.equal(v, y_flip)]
        assert len(match) == 1
        seen.add(match[0])
    assert seen == {"none", "h", "v", "hv"}


def test_color_augment_permutes_x_and_y0_alike(folder):
    plain = PairedImageDataset.from_folder(folder, hr_size=32, seed=2)
    aug = PairedImageDataset.from_folder(folder, hr_size=32, seed=2, color_augment=True)
    perms = set()
    for i in range(12):
        (_, y_plain), (x_aug, y_aug) = plain[i], aug[i]
        perm = [next(c for c in range(3) if torch.equal(y_aug[k], y_plain[c])) for k in range(3)]
        assert sorted(perm) == [0, 1, 2]
        perms.add(tuple(perm))
        # x stays bicubic↓(y0) after the permutation
        assert torch.equal(x_aug, to_tensor(downscale_pil(to_image(y_aug), 4)))
    assert len(perms) > 1


@pytest.mark.parametrize(
    ("name", "make", "note"),
    [
        ("gray.png", lambda: Image.fromarray(np.random.default_rng(0).integers(0, 256, (70, 70), np.uint8)), "L"),
        ("alpha.png", lambda: photo(70, 70).convert("RGBA"), "alpha"),
        (
            "deep.png",
            lambda: Image.fromarray(np.random.default_rng(0).integers(0, 65536, (70, 70)).astype(np.uint16)),
            "16-bit",
        ),
    ],
)
def test_non_rgb_inputs_convert_with_a_warning(tmp_path, name, make, note):
    make().save(tmp_path / name)
    with pytest.warns(DataWarning, match=rf"{name}.*{note}"):
        ds = PairedImageDataset.from_folder(tmp_path)
    x, y0 = ds[0]
    assert x.shape == (3, 16, 16) and y0.shape == (3, 64, 64)


def test_small_image_is_enlarged_with_a_warning(tmp_path):
    photo(40, 30).save(tmp_path / "tiny.png")
    with pytest.warns(DataWarning, match=r"tiny\.png: 40×30 .*64×64.*85×64"):
        ds = PairedImageDataset.from_folder(tmp_path)
    assert ds.images[0].size == (85, 64)
    assert ds[0][1].shape == (3, 64, 64)


def test_small_image_is_skipped_with_a_warning(tmp_path):
    photo(40, 30).save(tmp_path / "tiny.png")
    photo(64, 64).save(tmp_path / "ok.png")
    with pytest.warns(DataWarning, match=r"skipped .*tiny\.png"):
        ds = PairedImageDataset.from_folder(tmp_path, small="skip")
    assert len(ds.images) == 1 and ds.names[0].endswith("ok.png")
    (tmp_path / "ok.png").unlink()
    with pytest.warns(DataWarning), pytest.raises(ValueError, match=str(tmp_path)):
        PairedImageDataset.from_folder(tmp_path, small="skip")


def test_corrupt_file_errors_or_is_skipped(tmp_path):
    photo(70, 70).save(tmp_path / "good.png")
    (tmp_path / "foo.png").write_bytes(b"this is not a png\x00\x01\x02" * 10)
    with pytest.raises(ValueError, match=r"foo\.png.*--skip-bad-images"):
        PairedImageDataset.from_folder(tmp_path)
    with pytest.raises(ValueError, match=r"foo\.png.*--skip-bad-images"):
        make_dataset(str(tmp_path))
    with pytest.warns(DataWarning, match=r"foo\.png"):
        ds = make_dataset(str(tmp_path), skip_bad_images=True)
    assert len(ds.images) == 1


def test_folders_without_images_give_clear_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=rf"{empty}.*\.png.*\.jpg"):
        make_dataset(empty)
    text = tmp_path / "text"
    text.mkdir()
    (text / "notes.txt").write_text("no pictures here")
    with pytest.raises(ValueError, match=rf"{text}.*\.png"):
        make_dataset(str(text))
    missing = tmp_path / "nowhere"
    with pytest.raises(DataFolderNotFoundError, match=str(missing)) as info:
        make_dataset(str(missing))
    assert isinstance(info.value, ValueError) and isinstance(info.value, FileNotFoundError)
    (tmp_path / "one.png").write_bytes(b"")
    with pytest.raises(ValueError, match="not a folder"):
        make_dataset(tmp_path / "one.png")


def test_bad_sizes_and_options(folder):
    with pytest.raises(ValueError, match="not divisible by scale 4"):
        PairedImageDataset.from_folder(folder, hr_size=30, scale=4)
    with pytest.raises(ValueError, match="small"):
        PairedImageDataset.from_folder(folder, small="crop")
    with pytest.raises(ValueError, match="patches_per_image"):
        PairedImageDataset.from_folder(folder, patches_per_image=0)
    with pytest.raises(ValueError, match="epoch"):
        PairedImageDataset.from_folder(folder).set_epoch(-1)


def test_folder_search_is_recursive_case_insensitive_and_sorted(folder):
    (folder / "hr_photos").mkdir()  # not the prepared-pairs layout: that needs lr_<digits> and hr_<digits>
    ds = make_dataset(folder)
    assert isinstance(ds, PairedImageDataset)
    assert [n.rsplit("/", 1)[-1] for n in ds.names] == ["a.png", "c.bmp", "b.JPG"]


def test_builtin_splits(recwarn):
    train, val = make_dataset("builtin"), make_dataset("builtin", split="val", flips=False)
    assert tuple(train.names) == BUILTIN_SPLIT["train"] and tuple(val.names) == BUILTIN_SPLIT["val"]
    assert not recwarn.list  # every built-in photo is RGB and larger than 64×64
    x, y0 = val[0]
    assert x.shape == (3, 16, 16) and y0.shape == (3, 64, 64)


def make_prepared(root, n=3, lr=16, hr=64):
    for sub in (f"lr_{lr}", f"hr_{hr}", f"sr_{lr}_{hr}"):
        (root / sub).mkdir(parents=True)
    for k in range(n):
        big = photo(hr, hr, k)
        big.save(root / f"hr_{hr}" / f"{k:05d}.png")
        downscale_pil(big, hr // lr).save(root / f"lr_{lr}" / f"{k:05d}.png")
        big.save(root / f"sr_{lr}_{hr}" / f"{k:05d}.png")
    return root


def test_prepared_pairs_layout(tmp_path):
    root = make_prepared(tmp_path / "prepared")
    ds = make_dataset(root, hr_size=64, scale=4, flips=False)
    assert isinstance(ds, PreparedPairsDataset)
    assert (ds.scale, ds.hr_size, ds.lr_size, len(ds)) == (4, 64, 16, 3)
    x, y0 = ds[1]
    assert torch.equal(x, to_tensor(Image.open(root / "lr_16" / "00001.png")))
    assert torch.equal(y0, to_tensor(Image.open(root / "hr_64" / "00001.png")))

    aug = PreparedPairsDataset(root, flips=True, color_augment=True, seed=5)
    assert same(aug[0], aug[0])
    for i in range(len(aug)):
        # x and y0 receive the same flips and permutation: x is still the downscale of y0
        xa, ya = aug[i]
        assert (xa - to_tensor(downscale_pil(to_image(ya), 4))).abs().max() <= 2 / 127.5
    results = []
    for epoch in range(8):
        aug.set_epoch(epoch)
        results.append(aug[0][1])
    assert any(not torch.equal(results[0], r) for r in results[1:])


def test_prepared_pairs_errors(tmp_path):
    root = make_prepared(tmp_path / "a")
    with pytest.raises(ValueError, match=r"×4 pairs .*scale 8"):
        make_dataset(root, hr_size=64, scale=8)
    with pytest.raises(ValueError, match=r"hr_size 128"):
        make_dataset(root, hr_size=128, scale=4)

    (root / "lr_16" / "00002.png").unlink()
    with pytest.raises(ValueError, match=r"hr_64/00002\.png has no partner .*lr_16/00002\.png"):
        PreparedPairsDataset(root)

    root = make_prepared(tmp_path / "b")
    photo(20, 20).save(root / "lr_16" / "00001.png")
    with pytest.raises(ValueError, match=r"00001\.png"):
        PreparedPairsDataset(root)

    root = make_prepared(tmp_path / "c")
    (root / "lr_32").mkdir()
    with pytest.raises(ValueError, match="exactly one lr_"):
        make_dataset(root)


def test_dataloader_workers_see_the_epoch(folder):
    ds = PairedImageDataset.from_folder(folder, hr_size=32)
    ds.set_epoch(3)
    expected = torch.stack([ds[i][1] for i in range(8)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some platforms warn about fork in a threaded process
        loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
        got = torch.cat([y0 for _, y0 in loader])[:8]
    assert torch.equal(got, expected)
