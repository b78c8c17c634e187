"""The benchmark scripts run and report sane numbers (their timings are never checked: the CPU is shared)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sr3_edu.devices import channels_last_training, resolve_precision, reuse_freed_memory

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"

TABLE_COLUMNS = [
    "config",
    "implementation",
    "variant",
    "params M",
    "fwd GFLOP/img",
    "train img/s",
    "train GFLOP/s",
    "peak RSS MiB",
    "sample s/step/img",
    "sample GFLOP/s",
    "train/sample % of matmul",
    "s/img @100 steps",
    "others' cores train/sample",
    "CPU share train/sample",
]
RATIO_COLUMNS = [
    "config",
    "variant (sr3-edu)",
    "train img/s ×ref",
    "train GFLOP/s ×ref",
    "sample speed ×ref",
    "sample GFLOP/s ×ref",
    "busy train GFLOP/s ×ref",
    "busy sample speed ×ref",
    "params ours/ref",
    "fwd GFLOP/img ours/ref",
]
POSITIVE_FIELDS = [
    "params",
    "gflop_fwd_per_img",
    "train_step_s",
    "train_img_per_s",
    "train_gflop_per_s",
    "rss_baseline_mib",
    "peak_rss_train_mib",
    "peak_rss_mib",
    "sample_s_per_step_img",
    "s_per_img_at_default_steps",
    "train_cpu_share",
    "sample_cpu_share",
    "train_busy_gflop_per_s",
    "sample_busy_s_per_step_img",
    "sample_gflop_per_s",
    "train_matmul_share",
    "sample_matmul_share",
]
NO_COMPARISON = "No comparison with the reference was made"


def _reference_dir() -> Path | None:
    """The reference the side-by-side test compares with: $JANSPIRY_DIR, else the developers' copy beside the repo."""
    given = os.environ.get("JANSPIRY_DIR")
    folder = Path(given) if given else ROOT.parent / "shared" / "reference" / "janspiry"
    return folder if (folder / "model" / "sr3_modules" / "unet.py").is_file() else None


REFERENCE_DIR = _reference_dir()


def run(*args, timeout=120):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def tables(stdout: str) -> list[list[list[str]]]:
    """Every markdown table of ``stdout``: its rows (header first, the |---| line left out) as lists of cells."""
    found, current = [], []
    for line in stdout.splitlines() + [""]:
        if line.startswith("|"):
            if not line.startswith("|---"):
                current.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif current:
            found.append(current)
            current = []
    return found


def table_with(stdout: str, header: list[str]) -> list[list[str]]:
    matches = [t for t in tables(stdout) if t[0] == header]
    assert matches, f"no table with columns {header} in:\n{stdout}"
    return matches[0]


def row_of(table: list[list[str]], *first_cells: str) -> list[str]:
    rows = [r for r in table[1:] if r[: len(first_cells)] == list(first_cells)]
    assert len(rows) == 1, f"{len(rows)} rows starting with {first_cells} in {table}"
    return rows[0]


def check_side(s: dict, impl: str) -> None:
    """One implementation's figures: all there, positive, and consistent with each other."""
    assert s["impl"] == impl
    for key in POSITIVE_FIELDS:
        assert isinstance(s[key], (int, float)) and math.isfinite(s[key]) and s[key] > 0, (impl, key, s[key])
    # 3 × forward FLOPs per image at the measured rate
    assert s["train_gflop_per_s"] == pytest.approx(3 * s["gflop_fwd_per_img"] * s["train_img_per_s"])
    assert s["s_per_img_at_default_steps"] == pytest.approx(100 * s["sample_s_per_step_img"])
    assert s["sample_gflop_per_s"] == pytest.approx(s["gflop_fwd_per_img"] / s["sample_s_per_step_img"])
    assert s["peak_rss_mib"] >= s["peak_rss_train_mib"] >= s["rss_baseline_mib"] > 0


def default_variant() -> str:
    """The label bench_cpu.py gives sr3-edu's row at the defaults, from the rules in sr3_edu.devices."""
    cpu = torch.device("cpu")
    fast = resolve_precision("auto", cpu)
    train = "channels_last" if channels_last_training(cpu, fast) else "contiguous"
    return f"{fast}, {train}" + ("" if train == "channels_last" else ", sampling channels_last")


def test_cpu_benchmark_quick_reports_every_column_with_positive_numbers(tmp_path):
    out = tmp_path / "bench.json"
    args = ["--quick", "--configs", "micro", "--threads", "1", "--no-reference", "--json", out]
    proc = run(BENCH / "bench_cpu.py", *args)
    assert proc.returncode == 0, proc.stderr

    main = table_with(proc.stdout, TABLE_COLUMNS)
    assert len(main) == 2  # header and sr3-edu's row: nothing else was measured
    row = row_of(main, "micro", "sr3-edu")
    assert len(row) == len(TABLE_COLUMNS)
    # the trainer's and the sampler's defaults on this machine: bf16 where the CPU has native bf16; channels_last
    # for sampling, and for training where the CPU has AMX
    assert row[2] == default_variant() + " (trainer and sampler defaults)"
    # the machine is named above the table: CPU, the flags that pick the kernels, torch, threads
    head = proc.stdout.split("|", 1)[0]
    assert "CPU: " in head and "AVX2 " in head and "AVX-512 " in head and "AVX512_BF16 " in head
    allocator = "freed memory kept" if reuse_freed_memory() else "the system's defaults"  # the worker's rule
    assert f"C allocator: {allocator} (" in head
    assert "AMX-BF16 " in head and "torch " in head and "1 thread(s)" in head

    result = json.loads(out.read_text())
    assert result["options"]["quick"] is True and result["options"]["threads"] == 1
    assert set(result["machine"]["cpu_features"] or {}) <= {"AVX2", "AVX-512", "AVX512_BF16", "AMX-BF16"}
    (r,) = result["results"]
    assert r["config"] == "micro" and r["batch"] == 2 and r["size"] == 16 and r["impls"] == ["ours"]
    check_side(r["ours"], "sr3-edu")
    # the table and the JSON hold the same measurement
    assert float(row[4]) == pytest.approx(r["ours"]["gflop_fwd_per_img"], rel=5e-3)
    assert r["ours"]["train_img_per_s"] == pytest.approx(r["batch"] / r["ours"]["train_step_s"])
    assert r["others_cores"] is None or r["others_cores"] >= 0
    # the machine's matrix-multiply rate in each precision the sides used, and each rate as a share of it
    o = r["ours"]
    assert set(r["matmul_gflop_per_s"]) == {o["train_precision"], o["sample_precision"]}
    for phase in ("train", "sample"):
        rate = r["matmul_gflop_per_s"][o[f"{phase}_precision"]]
        assert rate > 0 and o[f"{phase}_matmul_share"] == pytest.approx(o[f"{phase}_gflop_per_s"] / rate)
    assert row[10] == f"{o['train_matmul_share']:.0%}/{o['sample_matmul_share']:.0%}"
    assert set(r["matmul_side"]) == set(r["matmul_gflop_per_s"])
    assert all(side in (256, 512, 1024, 2048) for side in r["matmul_side"].values())
    rates = ", ".join(f"{p} {v:.3g} ({r['matmul_side'][p]}²)" for p, v in r["matmul_gflop_per_s"].items())
    assert "product of two square matrices" in proc.stdout and f"GFLOP/s (side): micro {rates}." in proc.stdout
    # no reference: said so, and no ratio anywhere
    assert NO_COMPARISON in proc.stdout and "--no-reference" in proc.stdout
    assert not [t for t in tables(proc.stdout) if t[0] == RATIO_COLUMNS]
    assert "ratio" not in r and "ref" not in r and result["reference"] == {"none": "--no-reference was given"}


@pytest.mark.skipif(
    REFERENCE_DIR is None,
    reason="no reference implementation here: set JANSPIRY_DIR to a clone of "
    "Janspiry/Image-Super-Resolution-via-Iterative-Refinement (with the developers' adapter.py) to run it; "
    "CI has none, and the developers' copy is ../shared/reference/janspiry",
)
def test_cpu_benchmark_times_the_reference_side_by_side(tmp_path):
    out = tmp_path / "bench.json"
    args = ["--quick", "--configs", "micro", "--threads", "1", "--reference-dir", REFERENCE_DIR, "--json", out]
    proc = run(BENCH / "bench_cpu.py", *args)
    assert proc.returncode == 0, proc.stderr
    assert NO_COMPARISON not in proc.stdout
    assert "Janspiry/Image-Super-Resolution-via-Iterative-Refinement" in proc.stdout

    main = table_with(proc.stdout, TABLE_COLUMNS)
    ours, ref = row_of(main, "micro", "sr3-edu"), row_of(main, "micro", "Janspiry")
    assert ref[2] == "fp32, contiguous (as its own code runs)"
    assert ours[12] == ref[12]  # one load figure for both: they ran in turns

    result = json.loads(out.read_text())
    assert result["reference"]["dir"] == str(REFERENCE_DIR.resolve())
    (r,) = result["results"]
    assert r["impls"] == ["ours", "ref"]
    check_side(r["ours"], "sr3-edu")
    check_side(r["ref"], "Janspiry")
    assert r["ours"]["params"] != r["ref"]["params"]  # two different U-Nets were built, not one twice
    # the ratios are this run's own figures divided
    o, f = r["ours"], r["ref"]
    assert r["ratio"]["train_img_per_s"] == pytest.approx(o["train_img_per_s"] / f["train_img_per_s"])
    assert r["ratio"]["train_gflop_per_s"] == pytest.approx(o["train_gflop_per_s"] / f["train_gflop_per_s"])
    assert r["ratio"]["sample_speed"] == pytest.approx(f["sample_s_per_step_img"] / o["sample_s_per_step_img"])
    assert r["ratio"]["sample_gflop_per_s"] == pytest.approx(o["sample_gflop_per_s"] / f["sample_gflop_per_s"])
    assert f["train_precision"] == f["sample_precision"] == "fp32"  # the reference's share is of the fp32 rate
    ratios = row_of(table_with(proc.stdout, RATIO_COLUMNS), "micro")
    assert float(ratios[2]) == pytest.approx(r["ratio"]["train_img_per_s"], abs=6e-3)
    assert float(ratios[4]) == pytest.approx(r["ratio"]["sample_speed"], abs=6e-3)
    assert float(ratios[5]) == pytest.approx(r["ratio"]["sample_gflop_per_s"], abs=6e-3)


def test_cpu_benchmark_names_a_reference_folder_it_cannot_use(tmp_path):
    missing = tmp_path / "no-such-clone"
    proc = run(BENCH / "bench_cpu.py", "--quick", "--configs", "micro", "--reference-dir", missing, timeout=60)
    assert proc.returncode == 2
    assert str(missing) in proc.stderr and "no such folder" in proc.stderr
    assert "Janspiry/Image-Super-Resolution-via-Iterative-Refinement" in proc.stderr
    assert "|" not in proc.stdout  # nothing was measured

    (tmp_path / "empty").mkdir()
    proc = run(BENCH / "bench_cpu.py", "--quick", "--configs", "micro", "--reference-dir", tmp_path / "empty")
    assert proc.returncode == 2
    assert str(tmp_path / "empty") in proc.stderr and "model/sr3_modules/unet.py" in proc.stderr


def test_reference_folder_comes_from_the_option_the_environment_or_the_default(tmp_path):
    sys.path.insert(0, str(BENCH))
    try:
        import common
    finally:
        sys.path.remove(str(BENCH))
    absent = tmp_path / "absent"
    reference, why = common.resolve_reference(None, env={}, default=absent)
    assert reference is None and str(absent) in why and "--reference-dir" in why

    clone = tmp_path / "clone"
    for name in common.REFERENCE_FILES:
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        (clone / name).write_text("")
    (clone / "adapter.py").write_text("")
    reference, _ = common.resolve_reference(None, env={"JANSPIRY_DIR": str(clone)}, default=absent)
    assert reference.dir == clone.resolve() and reference.source == "$JANSPIRY_DIR"
    assert reference.adapter == (clone / "adapter.py").resolve()
    # the option wins over the environment; a named folder that is not there is an error, not a quiet fallback
    with pytest.raises(common.ReferenceDirError, match="absent"):
        common.resolve_reference(absent, env={"JANSPIRY_DIR": str(clone)}, default=absent)
    (clone / "adapter.py").unlink()
    with pytest.raises(common.ReferenceDirError, match="adapter.py"):
        common.resolve_reference(clone, env={}, default=absent)


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


def test_matmul_rate_grows_its_matrices_until_one_product_takes_long_enough(monkeypatch):
    """The ceiling the % of matmul column divides by: 2·side³ FLOPs over the median product time, at the first side
    (256, 512, …, 2048) whose product takes the time asked for."""
    sys.path.insert(0, str(BENCH))
    try:
        import common
    finally:
        sys.path.remove(str(BENCH))

    clock = iter(float(i) for i in range(1000))  # each perf_counter call one second later: a product takes 1 s
    monkeypatch.setattr(common.time, "perf_counter", lambda: next(clock))
    rate, side = common.matmul_gflop_per_s("fp32", repeats=3, enough_s=1.0)
    assert side == 256 and rate == pytest.approx(2 * 256**3 / 1e9)
    rate, side = common.matmul_gflop_per_s("fp32", repeats=3, enough_s=2.0)  # never long enough: up to the largest
    assert side == common.MATMUL_SIDE == 2048 and rate == pytest.approx(2 * 2048**3 / 1e9)


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
    args = ["--quick", "--configs", "micro", "--threads", "1", "--no-reference", "--channels-last"]
    args += ["--precision", "bf16", "--sample-batches", "1,3"]
    proc = run(BENCH / "bench_cpu.py", *args, "--json", out)
    assert proc.returncode == 0, proc.stderr
    row = row_of(table_with(proc.stdout, TABLE_COLUMNS), "micro", "sr3-edu")
    assert row[2] == "bf16, channels_last"
    assert "| config | variant | batch 1 | batch 3 |" in proc.stdout
    (r,) = json.loads(out.read_text())["results"]
    assert set(r["sample_batch_sweep"]) == {"1", "3"}
    assert set(r["sample_batch_sweep_busy"]) == {"1", "3"}
    assert all(v > 0 for v in [*r["sample_batch_sweep"].values(), *r["sample_batch_sweep_busy"].values()])


@pytest.mark.slow
def test_cpu_benchmark_compiled_sampler_reports_its_compile_time(tmp_path):
    out = tmp_path / "bench.json"
    args = ["--quick", "--configs", "micro", "--no-reference", "--compile", "--json", out]
    proc = run(BENCH / "bench_cpu.py", *args, timeout=900)
    assert proc.returncode == 0, proc.stderr
    (r,) = json.loads(out.read_text())["results"]
    assert r["variant"] == default_variant() + " (trainer and sampler defaults), compiled sampler"
    assert r["compile_s"] > 0 and r["ours"]["sample_s_per_step_img"] > 0
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


def test_layout_benchmark_times_both_layouts_and_names_the_rule_it_backs():
    proc = run(BENCH / "bench_layout.py", "--quick", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    head = ["step", "s channels_last", "s contiguous", "channels_last ×", "img/s channels_last", "img/s contiguous"]
    table = table_with(proc.stdout, head)
    assert [r[0] for r in table[1:]] == ["micro", "shipped model, one call on a 64² tile"]
    assert all(float(c) > 0 for r in table[1:] for c in r[1:])
    cpu = torch.device("cpu")
    rule = "channels_last" if channels_last_training(cpu, resolve_precision("auto", cpu)) else "contiguous"
    assert f"the trainer's channels_last='auto' here: {rule}; the sampler's: channels_last" in proc.stdout
    assert "CPU: " in proc.stdout.split("|", 1)[0]


def test_upsample_conv_benchmark_times_both_forms_on_every_up_block_and_on_whole_steps():
    proc = run(BENCH / "bench_upsample_conv.py", "--quick", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    head = ["what", "ms transposed (the package)", "ms two-step", "transposed ×"]
    ops, steps = [t for t in tables(proc.stdout) if t[0] == head]
    # the up blocks of the shipped model on a 64² tile (1/8, 1/4, 1/2 of its side) and of the micro network
    shapes = ["(1, 128, 8, 8)", "(1, 64, 16, 16)", "(1, 64, 32, 32)", "(2, 16, 8, 8)"]
    kinds = [
        f"{layout}, {what}" for layout in ("channels_last", "contiguous") for what in ("forward", "forward + backward")
    ]
    assert [r[0].split(": ", 1)[1] for r in ops[1:]] == [f"{s} {k}" for s in shapes for k in kinds]
    assert [r[0] for r in steps[1:]] == [
        "shipped model, one call on a 64² tile, sampler call",
        "micro network, one call on 2 × 16², sampler call",
        "micro training step (`Trainer.train_step`, batch 2)",
    ]
    for row in ops[1:] + steps[1:]:
        new, old, ratio = (float(c) for c in row[1:])
        assert new > 0 and old > 0 and ratio == pytest.approx(old / new, rel=0.02, abs=0.01)
    assert "CPU: " in proc.stdout.split("|", 1)[0]


def test_upsample_conv_benchmark_puts_the_two_step_form_in_the_up_blocks_and_back():
    sys.path.insert(0, str(BENCH))
    try:
        import bench_upsample_conv as bench
    finally:
        sys.path.remove(str(BENCH))
    from sr3_edu import blocks

    own = blocks.upsample_conv
    block = blocks.ResBlock(4, 4, emb_dim=8, dropout=0.0, resample="up")
    x, emb = torch.randn(1, 4, 3, 3), torch.randn(1, 8)
    calls = []
    with bench.form("two-step"):
        assert blocks.upsample_conv is bench.two_step
        blocks.upsample_conv = lambda *a: calls.append(a) or bench.two_step(*a)  # the block looks it up at each call
        block(x, emb)
    assert len(calls) == 1 and blocks.upsample_conv is own  # put back, even after a change inside
    with bench.form("transposed"):
        assert blocks.upsample_conv is own


def test_step_costs_benchmark_times_allocator_settings_dropout_masks_group_norm_layouts_and_weight_casts():
    proc = run(BENCH / "bench_step_costs.py", "--quick", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    alloc = table_with(
        proc.stdout,
        [
            "step",
            "kept (the default): s / faults / sys s / peak MiB",
            "system: s / faults / sys s / peak MiB",
            "kept ×",
        ],
    )
    assert [r[0] for r in alloc[1:]] == ["micro training step", "shipped model, one call on a 64² tile"]
    for row in alloc[1:]:
        for cell in row[1:3]:
            s, faults, sys_s, rss = (float(v.replace(",", "")) for v in cell.split(" / "))
            assert s > 0 and faults >= 0 and sys_s >= 0 and rss > 100
        assert float(row[3]) > 0
    drop = table_with(proc.stdout, ["step", "ms sr3_edu.blocks.Dropout", "ms F.dropout", "Dropout ×"])
    dtype = "bfloat16" if resolve_precision("auto", torch.device("cpu")) == "bf16" else "float32"
    assert [r[0] for r in drop[1:]] == [
        f"one dropout, (2, 8, 16, 16) {dtype}",
        "micro training step (dropout 0)",
        "micro training step (dropout 0, channels_last)",
    ]
    assert all(float(c) > 0 for r in drop[1:] for c in r[1:])
    head = ["what", "ms sr3_edu.blocks.GroupNorm", "ms nn.GroupNorm's forward", "GroupNorm ×"]
    norm = table_with(proc.stdout, head)
    assert [r[0] for r in norm[1:]] == [
        f"one GroupNorm, (1, 8, 8, 8) channels_last {dtype}, 4 ch/group",
        "shipped model, one call on a 64² tile",
        "micro network, one call on 2 × 16²",
        "micro training step in channels_last (`Trainer.train_step`, batch 2)",
    ]
    assert all(float(c) > 0 for r in norm[1:] for c in r[1:])
    if dtype == "float32":
        assert "nothing is cast" in proc.stdout
    else:
        head = ["what", "ms cast once (fixed_weights)", "ms autocast every call", "cast once ×"]
        cast = table_with(proc.stdout, [*head, "ms entering (copy and cast)"])
        assert [r[0] for r in cast[1:]] == [r[0] for r in norm[2:4]]  # the same two sampler calls
        assert all(float(c) > 0 for r in cast[1:] for c in r[1:])
    assert "CPU: " in proc.stdout.split("|", 1)[0]


@pytest.mark.slow
def test_compile_benchmark_times_both_sides_after_a_first_call_that_compiles():
    proc = run(BENCH / "bench_compile.py", "--quick", "--threads", "1", timeout=900)
    assert proc.returncode == 0, proc.stderr
    head = [
        "step",
        "s eager",
        "s compiled",
        "compiled ×",
        "first compiled call s",
        "max abs difference",
        "others' cores",
    ]
    table = table_with(proc.stdout, head)
    assert [r[0] for r in table[1:]] == [
        "shipped model, 8² → 32², one refinement step (`super_resolve`, 2 a turn)",
        "micro training step (`Trainer.train_step`, batch 2)",
    ]
    for what, eager, compiled, ratio, first, delta, others in table[1:]:
        assert float(eager) > 0 and float(compiled) > 0
        assert float(ratio) == pytest.approx(float(eager) / float(compiled), rel=0.02, abs=0.01)
        # the first call compiles, so it takes longer than a compiled step after it
        assert float(first) > float(compiled)
        assert 0 <= float(delta) < 0.1, what  # the same computation, rounded differently
        assert others == "–" or float(others) >= 0
    assert "CPU: " in proc.stdout.split("|", 1)[0]


def test_compile_benchmark_refuses_a_side_the_shipped_model_cannot_take():
    proc = run(BENCH / "bench_compile.py", "--side", "100")
    assert proc.returncode == 2
    assert "--side must be a positive multiple of 32" in proc.stderr


def profile_step_module():
    sys.path.insert(0, str(BENCH))
    try:
        import profile_step
    finally:
        sys.path.remove(str(BENCH))
    return profile_step


def test_step_profile_sums_every_op_into_its_kind_and_the_shares_make_the_whole_in_both_layouts():
    proc = run(BENCH / "profile_step.py", "--quick", "--threads", "1", "--layouts", "contiguous,channels_last")
    assert proc.returncode == 0, proc.stderr
    table = table_with(proc.stdout, ["kind of op", "micro contiguous ms per step", "micro contiguous share",
                                     "micro channels_last ms per step", "micro channels_last share"])  # fmt: skip
    kinds = [r[0] for r in table[1:]]
    assert kinds[:2] == ["convolution, backward", "convolution, forward"] and kinds[-2:] == [
        "everything else",
        "all ops",
    ]
    for layout, col in (("contiguous", 1), ("channels_last", 3)):
        label = f"micro {layout}"
        ms = {r[0]: float(r[col]) for r in table[1:]}
        assert ms["convolution, forward"] > 0 and ms["convolution, backward"] > 0
        assert ms["GroupNorm, forward and backward"] > 0
        assert sum(v for k, v in ms.items() if k != "all ops") == pytest.approx(ms["all ops"], abs=0.1 * len(ms))
        assert sum(int(r[col + 1].rstrip(" %")) for r in table[1:-1]) == pytest.approx(100, abs=len(kinds))
        assert f"{label}: `Trainer.train_step`, batch 2, {layout}, " in proc.stdout and "CPU: " in proc.stdout
    if not torch.backends.mkldnn.is_available():  # a torch build without oneDNN: no log to read
        assert "oneDNN ran no primitives" in proc.stdout
        return
    dnn_head = ["oneDNN primitive", "micro contiguous ms per step", "micro contiguous share of the step"]
    dnn_head += ["micro channels_last ms per step", "micro channels_last share of the step"]
    dnn = table_with(proc.stdout, dnn_head)
    assert [r[0] for r in dnn[1:]] == [*profile_step_module().ONEDNN_ROWS, "all oneDNN primitives"]
    for col in (1, 3):
        ms = [float(r[col]) for r in dnn[1:]]
        assert ms[-1] > 0 and sum(ms[:-1]) == pytest.approx(ms[-1], abs=0.1 * len(ms))
    # every logged convolution direction names the kernels oneDNN chose for it
    for layout in ("contiguous", "channels_last"):
        assert f"- micro {layout}, convolution, forward: " in proc.stdout


def test_onednn_log_is_summed_per_step_by_what_each_primitive_did_and_names_its_kernels():
    lines = [
        "onednn_verbose,v1,info,cpu,runtime:OpenMP,nthr:2",
        "onednn_verbose,v1,primitive,create:cache_miss,cpu,convolution,jit_bf16:avx512_core_bf16,forward_training,,9.0",
        "onednn_verbose,v1,primitive,exec,cpu,convolution,jit_bf16:avx512_core_bf16,forward_training,src:bf16,mb8,1.5",
        "onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx512_core_bf16,forward_inference,src,mb8,0.5",
        "onednn_verbose,v1,primitive,exec,cpu,convolution,jit_bf16:avx512_core_bf16,backward_weights,src,mb8,3.0",
        "onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_bwd:avx512_core_bf16,backward_data,src,mb8,2.0",
        "onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:bf16 dst:bf16,,,8x32x64x64,0.25",
        "onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:bf16 dst:bf16,,,8x32x64x64,0.75",
        "onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx512_core_bf16,undef,src,,,4x64:64x32,0.125",
        "onednn_verbose,v1,primitive,exec,cpu,deconvolution,brg_deconv:avx2,forward_training,src,,,mb8,0.5",
        "onednn_verbose,v1,primitive,exec,cpu,deconvolution,conv:any+jit:avx2,backward_weights,src,,,mb8,0.25",
        "onednn_verbose,v1,primitive,exec,cpu,pooling,jit:avx512_core,forward_training,src,,,mb8,1.0",
        "an unrelated line the network printed",
        "onednn_verbose,v1,primitive,exec,cpu,convolution,truncated",
    ]
    ps = profile_step_module()
    ms, kernels = ps.parse_onednn_log(lines, steps=2)
    assert ms == {
        "convolution, forward": 1.25,  # a deconvolution is the up blocks' transposed convolution
        "convolution, backward to the weights": 1.625,
        "convolution, backward to the data": 1.0,
        "reorders (layout changes)": 0.5,
        "matmul": 0.0625,
        "other primitives": 0.5,
    }
    assert kernels["convolution, forward"] == {
        "jit_bf16:avx512_core_bf16": 1,
        "brg_conv_fwd:avx512_core_bf16": 1,
        "brg_deconv:avx2": 1,
    }
    assert kernels["reorders (layout changes)"] == {"jit:uni": 2}
    assert ps.onednn_row("convolution", "backward") == "convolution, backward to the data"


def test_step_profile_names_the_kind_of_each_op():
    kind_of = profile_step_module().kind_of
    assert kind_of("aten::convolution_backward") == "convolution, backward"
    assert kind_of("aten::mkldnn_convolution") == "convolution, forward"
    assert kind_of("aten::native_group_norm_backward") == "GroupNorm, forward and backward"
    assert kind_of("aten::silu_backward") == "SiLU, forward and backward"
    assert kind_of("aten::_fused_adamw_") == "AdamW, gradient clipping, EMA"
    assert kind_of("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention and linear layers"
    assert kind_of("aten::copy_") == "layout and dtype copies"
    assert kind_of("aten::add") == "other element-wise ops"
    assert kind_of("aten::upsample_bicubic2d") == "everything else"


def test_step_profile_refuses_an_unknown_layout():
    proc = run(BENCH / "profile_step.py", "--layouts", "contiguous,nhwc")
    assert proc.returncode == 2
    assert "unknown layout 'nhwc'; choose from auto, contiguous, channels_last" in proc.stderr


@pytest.mark.parametrize(
    "script", ["bench_layout.py", "bench_step_costs.py", "profile_step.py", "bench_upsample_conv.py"]
)
@pytest.mark.parametrize(("configs", "message"), [("ref64,nope", "unknown config 'nope'"), (",", "no config given")])
def test_benchmarks_refuse_an_unknown_or_empty_config_list(script, configs, message):
    proc = run(BENCH / script, "--configs", configs)
    assert proc.returncode == 2
    assert f"{message}; choose from ref64, ref128, tiny, micro" in proc.stderr
