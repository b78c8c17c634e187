"""The benchmark scripts run and report sane numbers (their timings are never checked: the CPU is shared)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"

TABLE_COLUMNS = [
    "config",
    "variant",
    "params M (ref)",
    "fwd GFLOP/img (ref)",
    "train img/s (ref)",
    "train GFLOP/s (ref)",
    "train ×ref",
    "peak RSS MiB",
    "sample s/step/img (ref)",
    "sample ×ref",
    "s/img @100 steps",
    "others' cores",
    "CPU share train/sample",
]
POSITIVE_FIELDS = [
    "params",
    "gflop_fwd_per_img",
    "train_step_s",
    "train_img_per_s",
    "train_gflop_per_s",
    "peak_rss_train_mib",
    "peak_rss_mib",
    "sample_s_per_step_img",
    "s_per_img_at_default_steps",
    "train_cpu_share",
    "sample_cpu_share",
    "train_busy_gflop_per_s",
    "sample_busy_s_per_step_img",
]


def run(*args, timeout=120):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def header_and_row(stdout: str, config: str) -> tuple[list[str], list[str]]:
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    rows = [c for c in cells if c[0] == config]
    assert cells and rows, f"no table row for {config!r} in:\n{stdout}"
    return cells[0], rows[0]


def test_cpu_benchmark_quick_reports_every_column_with_positive_numbers(tmp_path):
    out = tmp_path / "bench.json"
    proc = run(BENCH / "bench_cpu.py", "--quick", "--configs", "micro", "--threads", "1", "--json", out)
    assert proc.returncode == 0, proc.stderr

    header, row = header_and_row(proc.stdout, "micro")
    assert header == TABLE_COLUMNS
    assert len(row) == len(header)
    assert row[1] == "contiguous"

    result = json.loads(out.read_text())
    assert result["options"]["quick"] is True and result["options"]["threads"] == 1
    (r,) = result["results"]
    assert r["config"] == "micro" and r["batch"] == 2 and r["size"] == 16
    for key in POSITIVE_FIELDS:
        assert isinstance(r[key], (int, float)) and math.isfinite(r[key]) and r[key] > 0, (key, r[key])
    # the table and the JSON hold the same measurement
    assert float(row[3]) == pytest.approx(r["gflop_fwd_per_img"], rel=5e-3)
    # 3 × forward FLOPs per image at the measured rate
    assert r["train_gflop_per_s"] == pytest.approx(3 * r["gflop_fwd_per_img"] * r["train_img_per_s"])
    assert r["train_img_per_s"] == pytest.approx(r["batch"] / r["train_step_s"])
    assert r["s_per_img_at_default_steps"] == pytest.approx(100 * r["sample_s_per_step_img"])
    assert r["peak_rss_mib"] >= r["peak_rss_train_mib"] >= r["rss_baseline_mib"] > 0
    assert r["others_cores"] is None or r["others_cores"] >= 0
    # no reference row for the toy config, so no speed-up is claimed
    assert "train_speedup_vs_ref" not in r and row[6] == "–"


def test_flop_count_matches_the_u_nets_own_convolutions():
    """The FLOP column is FlopCounterMode's count: check it against a hand count of a one-conv model."""
    sys.path.insert(0, str(BENCH))
    try:
        import common
    finally:
        sys.path.remove(str(BENCH))
    import torch

    conv = torch.nn.Conv2d(6, 4, 3, padding=1)
    flops = common.forward_flops(conv, torch.zeros(2, 6, 8, 8))
    # 2 FLOPs per multiply-add: 2 · B · H · W · C_out · C_in · k²
    assert flops == 2 * 2 * 8 * 8 * 4 * 6 * 9


def test_cpu_benchmark_refuses_an_unknown_config():
    proc = run(BENCH / "bench_cpu.py", "--configs", "ref65", timeout=60)
    assert proc.returncode == 2
    assert "unknown config" in proc.stderr and "ref64" in proc.stderr


def test_gpu_benchmark_says_clearly_that_there_is_no_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: this test checks the message on machines without one")
    proc = run(BENCH / "bench_gpu.py", timeout=60)
    assert proc.returncode == 3
    assert "no CUDA device" in proc.stderr and "bench_cpu.py" in proc.stderr


def test_gpu_check_script_is_valid_bash_and_exits_without_cuda(tmp_path):
    import torch

    assert subprocess.run(["bash", "-n", BENCH / "gpu_check.sh"]).returncode == 0
    if torch.cuda.is_available():
        return
    proc = subprocess.run(
        ["bash", BENCH / "gpu_check.sh"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path), "PYTHON": sys.executable},
        timeout=60,
    )
    assert proc.returncode == 3
    assert "no CUDA device" in proc.stdout
    assert "no CUDA device" in (tmp_path / "gpu_check.log").read_text()


@pytest.mark.slow
def test_cpu_benchmark_variants_label_their_rows_and_sweep_the_sampling_batch(tmp_path):
    out = tmp_path / "bench.json"
    args = ["--quick", "--configs", "micro", "--threads", "1", "--channels-last", "--bf16", "--sample-batches", "1,3"]
    proc = run(BENCH / "bench_cpu.py", *args, "--json", out)
    assert proc.returncode == 0, proc.stderr
    _, row = header_and_row(proc.stdout, "micro")
    assert row[1] == "channels_last, bf16 sampler"
    assert "| config | variant | batch 1 | batch 3 |" in proc.stdout
    (r,) = json.loads(out.read_text())["results"]
    assert set(r["sample_batch_sweep"]) == {"1", "3"}
    assert set(r["sample_batch_sweep_busy"]) == {"1", "3"}
    assert all(v > 0 for v in [*r["sample_batch_sweep"].values(), *r["sample_batch_sweep_busy"].values()])


@pytest.mark.slow
def test_cpu_benchmark_compiled_sampler_reports_its_compile_time(tmp_path):
    out = tmp_path / "bench.json"
    proc = run(BENCH / "bench_cpu.py", "--quick", "--configs", "micro", "--compile", "--json", out, timeout=900)
    assert proc.returncode == 0, proc.stderr
    (r,) = json.loads(out.read_text())["results"]
    assert r["variant"] == "contiguous, compiled sampler"
    assert r["compile_s"] > 0 and r["sample_s_per_step_img"] > 0
    assert "First call of the compiled sampler step" in proc.stdout


@pytest.mark.slow
def test_gpu_benchmark_code_runs_end_to_end_on_the_cpu(tmp_path):
    """--device cpu runs every phase of bench_gpu.py with a toy size, so the GPU script is tested without a GPU."""
    out = tmp_path / "gpu.json"
    args = ["--device", "cpu", "--preset", "tiny", "--size", "16", "--scale", "4", "--batches", "2"]
    args += ["--train-steps", "1", "--warmup", "1", "--sample-batch", "1", "--sample-steps", "2", "--no-compile"]
    proc = run(BENCH / "bench_gpu.py", *args, "--json", out, timeout=900)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    phases = result["phases"]
    assert phases["fit"]["batch"] == 2
    assert phases["fast"]["img_per_s"] > 0 and phases["eager_fp32"]["img_per_s"] > 0
    assert phases["sample"]["output_finite"] is True and phases["sample"]["steps"] == 2
    assert phases["sample"]["eager"]["s_per_step"] > 0 and phases["sample"]["compiled"] == {"skipped": "--no-compile"}
    assert result["gflop_fwd_per_img"] > 0


def test_ablation_table_measures_each_run_and_bicubic(tmp_path):
    """Two micro models (an ε- and a v-network, untrained): the v-form's gain is √(1−γ)-like, the ε-form's is 0."""
    import torch
    from helpers import subprocess_env

    from sr3_edu.checkpoint import model_file, save_atomic
    from sr3_edu.unet import SR3UNet

    for kind in ("eps", "v"):
        net = SR3UNet(base_channels=16, channel_mults=(1, 2), num_res_blocks=1, attn_levels=(), parametrisation=kind)
        save_atomic(model_file(net, objective="sr3", scale=4), tmp_path / f"{kind}.pt")
    out = subprocess.run(
        [sys.executable, str(BENCH / "ablation.py"), "--run", f"eps={tmp_path / 'eps.pt'}",
         "--run", f"v={tmp_path / 'v.pt'}", "--crop", "32", "--steps", "4", "--seeds", "1",
         "--json", str(tmp_path / "a.json"), "--plot", str(tmp_path / "a.png")],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=subprocess_env(),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Algorithm 2 from pure noise" in out.stdout and "bicubic" in out.stdout and "CPU:" in out.stdout
    rows = json.loads((tmp_path / "a.json").read_text())["runs"]
    assert rows["eps"]["gain"] == pytest.approx([0.0] * 5, abs=1e-6)  # an untrained ε-net outputs 0
    assert rows["v"]["gain"] == pytest.approx([math.sqrt(1 - g) for g in (1e-4, 1e-3, 1e-2, 0.1, 0.5)], rel=1e-3)
    assert (tmp_path / "a.png").stat().st_size > 10_000
    assert torch.isfinite(torch.tensor(rows["v"]["psnr_y"]))
