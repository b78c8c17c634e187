"""``sr3-edu train`` and ``sr3-edu export`` from the command line: options, refusals, kill -9 and resume, export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings

import pytest
import torch
from helpers import MICRO_UNET, ROOT, file_digests, run_sr3, subprocess_env

from sr3_edu.checkpoint import load_model
from sr3_edu.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def micro_args(data, out, *extra: str) -> list[str]:
    return [
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--hr-size",
        "16",
        "--batch-size",
        "4",
        "--unet-config",
        json.dumps(MICRO_UNET),
        "--log-every",
        "1",
        "--sample-every",
        "0",
        *extra,
    ]


def losses(run_dir) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows]


@pytest.fixture
def trained(tmp_path, image_folder):
    """A finished 3-step run (in this process)."""
    out = tmp_path / "run"
    assert main(micro_args(image_folder, out, "--steps", "3", "--save-every", "3")) == 0
    return out


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# ------------------------------------------------------------------------------------------------------------ help
def test_help_explains_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in (
        "--preset", "--data", "--steps", "--batch-size", "--out", "--resume", "--device", "--seed", "--save-every",
        "--log-every", "--sample-every", "--objective", "--lr", "--warmup", "--ema-decay", "--grad-accum",
        "--precision", "--compile", "--color-augment", "--skip-bad-images", "--hr-size", "--scale", "--workers",
        "--keep-every",
    ):  # fmt: skip
        assert flag in text, flag
    assert "default: 16 for tiny, 24 for sr3_16_128" in text  # --batch-size
    assert "default: 200 for tiny, 10000 for sr3_16_128" in text  # --warmup
    assert text.count("default") >= 25
    assert "None" not in text


# ------------------------------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    "extra, code, message",
    [
        (["--steps", "-5"], 1, "steps must be an integer ≥ 1, got -5"),
        (["--preset", "huge"], 2, "argument --preset: invalid choice: 'huge'"),
        (["--objective", "gan"], 2, "argument --objective: invalid choice: 'gan'"),
        (["--steps", "ten"], 2, "argument --steps: invalid int value: 'ten'"),
        (["--unet-config", "{base_channels: 8"], 1, "--unet-config is not valid JSON"),
        (["--hr-size", "18"], 1, "hr_size 18 is not divisible by scale 4"),
    ],
)
def test_bad_flags_exit_non_zero_with_one_line(tmp_path, image_folder, capsys, extra, code, message):
    out = tmp_path / "new_run"
    if code == 2:
        with pytest.raises(SystemExit) as e:
            main(micro_args(image_folder, out, *extra))
        assert e.value.code == 2
    else:
        assert main(micro_args(image_folder, out, *extra)) == 1
    assert message in one_error_line(capsys)
    assert not out.exists()


def test_a_missing_data_folder(tmp_path, capsys):
    out = tmp_path / "new_run"
    assert main(micro_args(tmp_path / "no_such_folder", out, "--steps", "2")) == 1
    err = one_error_line(capsys)
    assert "no_such_folder does not exist" in err
    assert not out.exists()


def test_warnings_are_one_line_each_and_the_printer_is_restored_afterwards(tmp_path, image_folder, capsys):
    from PIL import Image

    Image.new("RGB", (8, 8), (90, 120, 30)).save(image_folder / "small.png")  # under the 16² crop: enlarged, warned
    printer = warnings.showwarning
    assert main(micro_args(image_folder, tmp_path / "run", "--steps", "1")) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "small.png" in line]
    assert len(err) == 1 and err[0].startswith("sr3-edu train: DataWarning: ") and "smaller than the 16×16" in err[0]
    assert warnings.showwarning is printer


def test_an_existing_run_needs_resume_or_another_out(trained, image_folder, capsys):
    before = file_digests(trained)
    assert main(micro_args(image_folder, trained, "--steps", "5")) == 1
    assert "use --resume (resume=True) to go on with it, or another --out" in one_error_line(capsys)
    assert file_digests(trained) == before


def test_resume_with_another_unet_names_both_and_changes_nothing(trained, image_folder, capsys):
    before = file_digests(trained)
    other = json.dumps({**MICRO_UNET, "channel_mults": [1, 2, 2]})
    args = micro_args(image_folder, trained, "--steps", "5", "--resume")
    args[args.index("--unet-config") + 1] = other
    assert main(args) == 1
    err = one_error_line(capsys)
    assert "channel_mults: [1, 2] vs [1, 2, 2]" in err and "differs from the requested one" in err
    assert file_digests(trained) == before


def test_resume_where_there_is_nothing(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "nothing"), "--resume"]) == 1
    assert "nothing to resume" in one_error_line(capsys)
    assert not (tmp_path / "nothing").exists()


def test_resume_of_a_damaged_checkpoint_is_refused(trained, capsys):
    last = trained / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    before = file_digests(trained)
    assert main(["train", "--out", str(trained), "--resume", "--steps", "5"]) == 1
    assert "truncated or not a torch file" in one_error_line(capsys)
    assert file_digests(trained) == before


# ------------------------------------------------------------------------------------------------ kill and resume
@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_bit_for_bit(tmp_path, image_folder):
    args = micro_args(image_folder, "{out}", "--save-every", "1", "--threads", "1")
    at = args.index("{out}")

    def with_out(out, *extra):
        return [*args[:at], str(out), *args[at + 1 :], *extra]

    # 4 photos × 16 crops = 64 items per epoch at 4 per step: the 20 steps cross an epoch boundary.
    ref = run_sr3(*with_out(tmp_path / "straight", "--steps", "20"))
    assert ref.returncode == 0, ref.stderr[-2000:]

    killed = tmp_path / "killed"
    child = subprocess.Popen(
        [sys.executable, "-m", "sr3_edu", *with_out(killed, "--steps", "100000")],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            metrics = killed / "metrics.jsonl"
            if metrics.is_file() and metrics.read_text().count("\n") >= 6:
                break
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    died_at = len(losses(killed)) if (killed / "metrics.jsonl").read_text().endswith("\n") else None
    assert died_at is None or 6 <= died_at < 20, died_at

    resumed = run_sr3(*with_out(killed, "--steps", "20", "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert losses(killed) == losses(tmp_path / "straight")  # every step once, every loss to the last bit
    assert [s for s, _ in losses(killed)] == list(range(1, 21))
    assert not list((killed / "checkpoints").glob("*.tmp*"))


def test_sigterm_saves_the_last_whole_step_and_the_run_resumes_bit_for_bit(tmp_path, image_folder):
    """What a cluster scheduler does before it stops a job: SIGTERM. The run saves, exits, and goes on exactly."""
    args = micro_args(image_folder, "{out}", "--save-every", "1000", "--threads", "1")
    at = args.index("{out}")

    def with_out(out, *extra):
        return [*args[:at], str(out), *args[at + 1 :], *extra]

    ref = run_sr3(*with_out(tmp_path / "straight", "--steps", "12"))
    assert ref.returncode == 0, ref.stderr[-2000:]
    stopped = tmp_path / "stopped"
    child = subprocess.Popen(
        [sys.executable, "-m", "sr3_edu", *with_out(stopped, "--steps", "100000")],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            metrics = stopped / "metrics.jsonl"
            if metrics.is_file() and metrics.read_text().count("\n") >= 4:
                break
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGTERM)
        _, stderr = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 130, stderr[-2000:]
    assert "interrupted: saved step" in stderr
    step = torch.load(stopped / "checkpoints" / "last.pt", weights_only=True)["step"]
    assert 4 <= step < 12  # no periodic save was due (every 1000): this one came from the signal

    resumed = run_sr3(*with_out(stopped, "--steps", "12", "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert losses(stopped) == losses(tmp_path / "straight")


# ---------------------------------------------------------------------------------------------------------- export
def test_export_writes_a_small_fp16_model_with_metadata(trained, tmp_path, capsys):
    out = tmp_path / "model.pt"
    assert main(["export", "--checkpoint", str(trained / "checkpoints" / "last.pt"), "--out", str(out)]) == 0
    obj = torch.load(out, weights_only=True)
    assert obj["kind"] == "model" and obj["objective"] == "sr3" and obj["scale"] == 4
    assert {t.dtype for t in obj["weights"].values() if t.is_floating_point()} == {torch.float16}
    assert obj["inference"]["steps"] == 100 and obj["inference"]["variance"] == "paper"
    assert obj["inference"]["schedule"] == {"kind": "linear", "T": 2000, "beta_start": 1e-6, "beta_end": 1e-2}
    meta = obj["meta"]
    assert meta["steps"] == 3 and meta["train_seconds"] > 0 and meta["images_seen"] == 12
    assert "train" in meta["command"] and "--hr-size" in meta["command"]
    assert meta["hardware"][0]["torch"] == torch.__version__ and meta["hardware"][0]["threads"] >= 1
    assert meta["hardware"][0]["device"]
    assert meta["data"]["split"] == "whole folder" and meta["data"]["images"] == [f"img{i}.png" for i in range(4)]
    model, info = load_model(out)
    ema, _ = load_model(trained / "checkpoints" / "last.pt")
    for name, t in model.state_dict().items():  # the EMA weights, rounded to fp16
        assert torch.equal(t, ema.state_dict()[name].half().float())
    assert info.meta["steps"] == 3 and info.inference["steps"] == 100
    assert "wrote" in capsys.readouterr().out


def test_export_options_and_refusals(trained, tmp_path, capsys):
    ckpt = str(trained / "checkpoints" / "last.pt")
    out = tmp_path / "model.pt"
    assert (
        main(
            ["export", "--checkpoint", ckpt, "--out", str(out), "--fp32", "--steps", "25", "--variance", "posterior"]
            + ["--start", "bicubic", "--gamma-start", "0.4", "--clip-y0", "on"]
        )
        == 0
    )
    obj = torch.load(out, weights_only=True)
    assert next(iter(obj["weights"].values())).dtype == torch.float32
    inference = obj["inference"]
    assert (inference["steps"], inference["variance"]) == (25, "posterior")
    assert (inference["start"], inference["gamma_start"], inference["clip_y0"]) == ("bicubic", 0.4, True)
    capsys.readouterr()
    before = file_digests(tmp_path)

    assert main(["export", "--checkpoint", ckpt, "--out", str(out)]) == 1
    assert "already exists; pass --force" in one_error_line(capsys)
    assert main(["export", "--checkpoint", str(out), "--out", str(tmp_path / "m2.pt")]) == 1
    assert "is a 'model' file, but a 'train' file is needed" in one_error_line(capsys)
    assert main(["export", "--checkpoint", ckpt, "--out", str(tmp_path / "m3.pt"), "--steps", "0"]) == 1
    assert "--steps must be between 1 and the training schedule's T = 2000" in one_error_line(capsys)
    assert main(["export", "--checkpoint", ckpt, "--out", ckpt, "--force"]) == 1
    assert "is the checkpoint itself" in one_error_line(capsys)
    assert main(["export", "--checkpoint", ckpt, "--out", str(tmp_path / "m4.pt"), "--gamma-start", "1.5"]) == 1
    assert "gamma_start is a noise level" in one_error_line(capsys)
    assert main(["export", "--checkpoint", ckpt, "--out", str(tmp_path / "m5.pt"), "--betas", "0.1", "1e-4"]) == 1
    assert "0 < β_1 ≤ β_n < 1" in one_error_line(capsys)
    linear_bicubic = ["--betas", "1e-4", "0.1", "--start", "bicubic"]
    assert main(["export", "--checkpoint", ckpt, "--out", str(tmp_path / "m6.pt"), *linear_bicubic]) == 1
    assert "needs --start noise" in one_error_line(capsys)
    assert file_digests(tmp_path) == before

    linear = ["--steps", "3000", "--betas", "1e-6", "0.01"]  # a linear chain may be longer than the training T
    assert main(["export", "--checkpoint", ckpt, "--out", str(tmp_path / "lin.pt"), *linear]) == 0
    assert torch.load(tmp_path / "lin.pt", weights_only=True)["inference"]["betas"] == [1e-6, 0.01]
    (tmp_path / "lin.pt").unlink()

    assert main(["export", "--checkpoint", ckpt, "--out", str(out), "--force"]) == 0
    assert torch.load(out, weights_only=True)["inference"]["steps"] == 100


def test_parametrisation_flag_sets_the_unet_field_keeps_other_overrides_and_resume_refuses_a_change(
    tmp_path, image_folder, capsys
):
    out = tmp_path / "run"
    assert main(micro_args(image_folder, out, "--steps", "2", "--parametrisation", "v")) == 0
    model, info = load_model(out / "checkpoints" / "last.pt")
    assert info.parametrisation == "v" and model.config.base_channels == MICRO_UNET["base_channels"]
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--steps", "3", "--parametrisation", "eps"]) == 1
    assert "parametrisation" in one_error_line(capsys)
    assert main(["train", "--out", str(out), "--resume", "--steps", "3", "--parametrisation", "v"]) == 0


def test_a_run_from_before_the_parametrisation_field_resumes_as_the_eps_network(tmp_path, image_folder):
    out = tmp_path / "run"
    assert main(micro_args(image_folder, out, "--steps", "2", "--parametrisation", "eps")) == 0
    last = out / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    del ckpt["unet"]["parametrisation"]  # as written before the field existed
    ckpt["config"]["unet_overrides"].pop("parametrisation")
    torch.save(ckpt, last)
    assert main(["train", "--out", str(out), "--resume", "--steps", "3"]) == 0
    assert load_model(last)[1].parametrisation == "eps"
