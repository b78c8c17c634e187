"""resolve_device: the one reading of --device that every command shares."""

import pytest
import torch
from PIL import Image

from sr3_edu.cli import main
from sr3_edu.devices import resolve_device


def test_auto_is_a_gpu_when_there_is_one_else_the_cpu():
    device = resolve_device("auto")
    if torch.cuda.is_available():
        assert device == torch.device("cuda", 0)
        assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)
    elif not torch.backends.mps.is_available():
        assert device == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_an_unknown_or_absent_device_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown device 'tpu9'"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA GPU; use --device cpu or auto"):
            resolve_device("cuda:1")
    if not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match="MPS is not available"):
            resolve_device("mps")


def test_every_command_reports_a_bad_device_the_same_way(tmp_path, capsys):
    img = tmp_path / "in.png"
    Image.new("RGB", (8, 8), "red").save(img)
    for args in (
        ["upscale", "--input", str(img), "--output", str(tmp_path / "o.png")],
        ["evaluate", "--regression", "none"],
        ["search"],
    ):
        assert main([*args, "--device", "tpu9"]) == 1
        assert "unknown device 'tpu9'" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()
