"""The same command line under torchrun: two CPU processes (gloo), replicas in lock-step, a checkpoint that resumes
in a single process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from helpers import MICRO_UNET, ROOT, run_sr3, subprocess_env

from sr3_edu.train.state import params_digest
from sr3_edu.unet import SR3UNet


def train_args(data, out, *extra: str) -> list[str]:
    return [
        "train", "--data", str(data), "--out", str(out), "--hr-size", "16", "--batch-size", "4",
        "--unet-config", json.dumps(MICRO_UNET), "--log-every", "1", "--sample-every", "2", "--sample-steps", "3",
        "--threads", "1", *extra,
    ]  # fmt: skip


def steps_logged(out) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_stay_identical_and_their_checkpoint_resumes_alone(tmp_path, image_folder):
    out = tmp_path / "ddp"
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "sr3_edu"]
    result = subprocess.run(
        [*launch, *train_args(image_folder, out, "--steps", "4", "--save-every", "2")],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "terminate called" not in result.stderr and "Traceback" not in result.stderr

    # Each process hashed its own weights at the end: DDP kept them identical.
    replicas = json.loads((out / "ddp_replicas.json").read_text())
    assert sorted(r["rank"] for r in replicas) == [0, 1]
    assert replicas[0]["model"] == replicas[1]["model"] and replicas[0]["ema"] == replicas[1]["ema"]

    # Rank 0 alone logged, sampled and saved: each step once.
    assert steps_logged(out) == [1, 2, 3, 4]
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_0000002.png", "step_0000004.png"]
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 4 and ckpt["meta"]["world_size"] == 2
    assert ckpt["samples_seen"] == 4 * 2 * 4  # steps · processes · batch per process
    assert not any(k.startswith("module.") for k in ckpt["model"])  # the unwrapped U-Net's names
    model = SR3UNet.from_config(ckpt["unet"])
    model.load_state_dict(ckpt["model"])
    assert params_digest(model) == replicas[0]["model"]
    assert "torchrun --nproc_per_node 2 -m sr3_edu train" in ckpt["meta"]["segments"][0]["command"]

    # The same run goes on in one process from where the two left off.
    alone = run_sr3("train", "--out", str(out), "--resume", "--steps", "6")
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert steps_logged(out) == [1, 2, 3, 4, 5, 6]
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 6 and ckpt["samples_seen"] == 32 + 2 * 4
    assert [s["world_size"] for s in ckpt["meta"]["segments"]] == [2, 1]
