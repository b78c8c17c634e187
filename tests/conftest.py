"""Shared pytest fixtures: one torch thread, a small image folder. Plain helpers are in helpers.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture
def one_thread():
    """Run the test on one torch thread (small models gain nothing from more, and a busy machine loses a lot)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """Four smooth 48×48 RGB photos-to-be (gradients plus a little noise) in a folder."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:48] / 47.0
    for i in range(4):
        base = np.stack([xx, yy, (xx + yy) / 2], axis=-1)[..., np.roll([0, 1, 2], i)]
        a = np.clip(255 * (0.8 * base + 0.2 * rng.random((48, 48, 3))), 0, 255).astype(np.uint8)
        Image.fromarray(a).save(folder / f"img{i}.png")
    return folder
