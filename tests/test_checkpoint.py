"""Checkpoint files: atomic writes, safe loading, and clear refusals of anything else."""

from __future__ import annotations

import hashlib
import os

import pytest
import torch

from sr3_edu import checkpoint
from sr3_edu.checkpoint import CheckpointError, load_checkpoint, load_model, model_file, save_atomic
from sr3_edu.unet import SR3UNet

pytestmark = pytest.mark.usefixtures("one_thread")


class Payload:
    """A custom class: pickling it makes a file that weights_only loading must refuse."""

    def __init__(self):
        self.x = 1


def small_model() -> SR3UNet:
    torch.manual_seed(0)
    model = SR3UNet(base_channels=16, channel_mults=(1, 2), num_res_blocks=1, attn_levels=(1,))
    for p in model.parameters():  # the zero-initialised output layers would hide a weights mix-up
        torch.nn.init.normal_(p, std=0.02)
    return model


def good_file(tmp_path):
    path = tmp_path / "good.pt"
    save_atomic({"format": "sr3-edu", "version": 1, "kind": "train", "step": 7, "w": torch.arange(5.0)}, path)
    return path


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_save_atomic_round_trip_loads_under_weights_only(tmp_path):
    path = good_file(tmp_path)
    obj = torch.load(path, weights_only=True)
    assert obj["step"] == 7 and torch.equal(obj["w"], torch.arange(5.0))
    assert load_checkpoint(path, kind="train")["step"] == 7
    assert [p.name for p in tmp_path.iterdir()] == ["good.pt"]  # no temporary file left behind


def test_a_save_killed_midway_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = good_file(tmp_path)
    before = digest(path)
    real_save = torch.save

    def dies_midway(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.seek(f.tell() // 2)
        f.truncate()  # half of the new file is on disk when the "kill" comes
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"format": "sr3-edu", "version": 1, "kind": "train", "step": 8, "w": torch.zeros(1000)}, path)
    monkeypatch.undo()
    assert digest(path) == before
    assert load_checkpoint(path)["step"] == 7
    assert [p.name for p in tmp_path.iterdir()] == ["good.pt"]


def test_pickled_payload_is_refused_and_not_run(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "sr3-edu", "version": 1, "kind": "train", "obj": Payload()}, path)
    before = digest(path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    msg = str(e.value)
    assert "pickled Python objects" in msg and str(path) in msg and "Payload" in msg
    assert "\n" not in msg
    assert digest(path) == before


def test_truncated_file_is_refused(tmp_path):
    path = good_file(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or not a torch file") as e:
        load_checkpoint(path)
    assert str(path) in str(e.value)


def test_text_file_is_refused(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match="not a torch file"):
        load_checkpoint(path)


def test_foreign_torch_file_is_refused(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, path)
    with pytest.raises(CheckpointError, match="not a sr3-edu checkpoint"):
        load_checkpoint(path)
    torch.save(torch.zeros(3), path)  # not even a dict
    with pytest.raises(CheckpointError, match="not a sr3-edu checkpoint"):
        load_checkpoint(path)


def test_missing_wrong_kind_and_newer_version_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    path = good_file(tmp_path)
    with pytest.raises(CheckpointError, match="'train' file, but a 'model' file is needed"):
        load_checkpoint(path, kind="model")
    newer = tmp_path / "newer.pt"
    save_atomic({"format": "sr3-edu", "version": checkpoint.VERSION + 1, "kind": "model"}, newer)
    with pytest.raises(CheckpointError, match="newer sr3-edu"):
        load_checkpoint(newer)


@pytest.mark.parametrize("half", [True, False])
def test_model_file_round_trip(tmp_path, half):
    model = small_model()
    path = save_atomic(model_file(model, objective="sr3", scale=4, meta={"steps": 3}, half=half), tmp_path / "m.pt")
    stored = torch.load(path, weights_only=True)["weights"]
    assert next(iter(stored.values())).dtype == (torch.float16 if half else torch.float32)
    loaded, info = load_model(path)
    assert info.objective == "sr3" and info.scale == 4 and info.meta["steps"] == 3
    x, y = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        want, got = model(x, y, torch.tensor([0.3])), loaded(x, y, torch.tensor([0.3]))
    assert next(loaded.parameters()).dtype == torch.float32
    if half:
        assert torch.allclose(got, want, atol=5e-3) and not torch.equal(got, want)
    else:
        assert torch.equal(got, want)


def test_load_model_strict_refuses_a_model_of_another_objective(tmp_path):
    path = save_atomic(model_file(small_model(), objective="regression", scale=4), tmp_path / "r.pt")
    assert load_model(path)[1].objective == "regression"  # objective only picks the shipped file
    assert load_model(path, objective="regression", strict=True)[1].objective == "regression"
    with pytest.raises(ValueError, match="is a 'regression' model, but a 'sr3' one is needed here"):
        load_model(path, strict=True)


def test_load_model_refuses_weights_that_do_not_fit_their_config(tmp_path):
    obj = model_file(small_model(), objective="sr3", scale=4)
    obj["unet"]["base_channels"] = 32
    path = save_atomic(obj, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="do not fit the U-Net config"):
        load_model(path)


def test_no_temporary_file_survives_a_failed_save(tmp_path):
    target = tmp_path / "x.pt"
    with pytest.raises(Exception):  # noqa: B017 - any pickling failure will do
        save_atomic({"f": lambda: 0}, target)
    assert os.listdir(tmp_path) == []
