"""The trainer through its Python API: configuration, the loop, exact resumes, checkpoints, samples."""

from __future__ import annotations

import ast
import inspect
import json
import re
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import MICRO_UNET, file_digests, subprocess_env
from PIL import Image

from sr3_edu import train as train_module
from sr3_edu.checkpoint import CheckpointError, load_model
from sr3_edu.images import downscale
from sr3_edu.train import PRESETS, ConfigError, RunExistsError, TrainConfig, Trainer
from sr3_edu.train.stream import BatchStream

pytestmark = pytest.mark.usefixtures("one_thread")


class Patterns(torch.utils.data.Dataset):
    """Smooth 16×16 colour patterns; item i of epoch e is a pure function of (e, i), like sr3_edu.data's items."""

    def __init__(self, n: int = 6, hr: int = 16, scale: int = 4, fixed: bool = False):
        self.n, self.hr, self.scale, self.fixed, self.epoch = n, hr, scale, fixed, 0
        self.reads = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        self.reads += 1
        g = torch.Generator().manual_seed(0 if self.fixed else 1000 * self.epoch + i)
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, self.hr), torch.linspace(-1, 1, self.hr), indexing="ij")
        a, b = torch.rand(2, generator=g) * 2 - 1
        y0 = torch.stack([xx * (1 if i % 2 else -1), yy * a, xx * yy * b]) * 0.8  # (3, hr, hr)
        return downscale(y0[None], self.scale)[0], y0


def micro(**overrides) -> TrainConfig:
    """The tiny preset shrunk to a ~0.1M-parameter U-Net on 16×16 crops: milliseconds per step."""
    settings = dict(
        unet_overrides=MICRO_UNET,
        hr_size=16,
        batch_size=4,
        lr=1e-3,
        warmup=5,
        steps=6,
        log_every=1,
        save_every=3,
        sample_every=0,
        sample_steps=4,
        sample_images=2,
    )
    settings.update(overrides)
    return TrainConfig.preset("tiny", **settings)


def run(config: TrainConfig, out: Path, dataset=None, resume: bool = False) -> Trainer:
    with Trainer(config, out, dataset=dataset if dataset is not None else Patterns(), resume=resume) as trainer:
        trainer.train()
    return trainer


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# -------------------------------------------------------------------------------------------------- configuration
def test_every_config_field_has_a_docstring():
    tree = ast.parse(textwrap.dedent(inspect.getsource(TrainConfig)))
    body = tree.body[0].body
    fields = [(n.target.id, body[i + 1]) for i, n in enumerate(body) if isinstance(n, ast.AnnAssign)]
    assert len(fields) == len(TrainConfig.__dataclass_fields__)
    undocumented = [
        name for name, nxt in fields if not (isinstance(nxt, ast.Expr) and isinstance(nxt.value.value, str))
    ]
    assert undocumented == []


def test_presets():
    tiny = TrainConfig.preset("tiny")
    assert (tiny.unet, tiny.hr_size, tiny.scale, tiny.batch_size) == ("tiny", 64, 4, 16)
    assert (tiny.lr, tiny.warmup, tiny.ema_decay, tiny.grad_clip, tiny.weight_decay) == (1e-4, 200, 0.999, 1.0, 0.0)
    assert (tiny.T, tiny.beta_start, tiny.beta_end, tiny.objective, tiny.loss_p) == (2000, 1e-6, 1e-2, "sr3", 1)
    paper = TrainConfig.preset("sr3_16_128")
    assert (paper.hr_size, paper.scale, paper.warmup, paper.lr, paper.precision) == (128, 8, 10_000, 1e-4, "auto")
    unet = paper.unet_config()
    assert (unet.base_channels, unet.channel_mults, unet.num_res_blocks, unet.dropout) == (128, (1, 2, 4, 8, 8), 3, 0.2)
    assert set(PRESETS) == {"tiny", "sr3_16_128"}
    assert TrainConfig.preset("tiny", steps=7).steps == 7 and PRESETS["tiny"].steps != 7  # presets stay untouched


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"steps": -5}, "steps must be an integer ≥ 1, got -5"),
        ({"batch_size": 0}, "batch_size must be an integer ≥ 1"),
        ({"objective": "gan"}, "objective must be 'sr3' or 'regression'"),
        ({"loss_p": 3}, "loss_p must be 1 (L1) or 2 (L2)"),
        ({"hr_size": 66}, "hr_size 66 is not divisible by scale 4"),
        ({"hr_size": 68}, "hr_size 68 must be divisible by 8"),
        ({"ema_decay": 1.0}, "ema_decay must be in [0, 1)"),
        ({"lr": 0.0}, "lr must be positive"),
        ({"device": "tpu"}, "device must be 'auto', 'cpu'"),
        ({"unet": "huge"}, "unknown U-Net preset 'huge'"),
        ({"unet_overrides": {"width": 3}}, "unknown U-Net field 'width'"),
        ({"sample_steps": 5000}, "sample_steps (5000) cannot exceed T (2000)"),
        ({"colour": 1}, "TrainConfig has no field 'colour'"),
    ],
)
def test_bad_settings_are_refused_with_the_option_named(overrides, message):
    with pytest.raises(ConfigError) as e:
        TrainConfig.preset("tiny", **overrides)
    assert message in str(e.value)


@pytest.mark.parametrize("amx", [True, False])
def test_the_trainer_layout_follows_the_machine_rule_unless_fp32_or_forced(tmp_path, monkeypatch, amx):
    from sr3_edu.train import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "channels_last_training", lambda device, precision: amx and precision != "fp32")
    layouts = {}
    for name, overrides in {"auto": {}, "fp32": {"precision": "fp32"}, "forced": {"channels_last": True}}.items():
        with Trainer(micro(**overrides), tmp_path / name, dataset=Patterns()) as t:
            layouts[name] = t.memory_format
    assert layouts["auto"] == (torch.channels_last if amx else torch.contiguous_format)
    assert layouts["fp32"] == torch.contiguous_format  # plain fp32 is contiguous, whatever the machine
    assert layouts["forced"] == torch.channels_last


def test_the_trainer_and_the_sampler_keep_freed_memory_on_a_cpu(tmp_path, monkeypatch):
    from sr3_edu import pipeline
    from sr3_edu.train import trainer as trainer_module

    calls = []
    for module in (trainer_module, pipeline):
        monkeypatch.setattr(module, "reuse_freed_memory", lambda m=module.__name__: calls.append(m))
    with Trainer(micro(), tmp_path / "run", dataset=Patterns()) as t:
        pipeline.FastNetwork(t.ema)
    assert calls == ["sr3_edu.train.trainer", "sr3_edu.pipeline"]


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown training preset 'big'; choose one of tiny, sr3_16_128"):
        TrainConfig.preset("big")


def test_cuda_on_a_machine_without_one_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(ConfigError, match="sees no CUDA GPU; use --device cpu"):
        Trainer(micro(device="cuda"), tmp_path / "run", dataset=Patterns())
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------------------------------- data order
def test_the_stream_visits_each_epoch_as_a_permutation():
    stream = BatchStream(n=10, seed=3, start=0, batch=4)
    keys = [k for batch, _ in zip(stream, range(10)) for k in batch]  # 40 positions = 4 epochs
    for e in range(4):
        epoch_keys = keys[10 * e : 10 * e + 10]
        assert {k[0] for k in epoch_keys} == {e}
        assert sorted(k[1] for k in epoch_keys) == list(range(10))
    assert [k[1] for k in keys[:10]] != [k[1] for k in keys[10:20]]  # a new order every epoch


def test_a_stream_started_midway_replays_the_rest_exactly():
    full = [b for b, _ in zip(BatchStream(7, 0, 0, 3), range(8))]
    resumed = [b for b, _ in zip(BatchStream(7, 0, 9, 3), range(5))]
    assert resumed == full[3:]


def test_ranks_split_the_global_batch_without_overlap():
    single = [b for b, _ in zip(BatchStream(9, 1, 0, 4), range(6))]
    ranks = [[b for b, _ in zip(BatchStream(9, 1, 0, 2, rank=r, world=2), range(6))] for r in range(2)]
    for step in range(6):
        assert ranks[0][step] + ranks[1][step] == single[step]


# --------------------------------------------------------------------------------------------------------- the loop
@pytest.mark.slow
@pytest.mark.parametrize("objective", ["sr3", "regression"])
def test_loss_decreases_when_overfitting_a_few_images(tmp_path, objective):
    config = micro(objective=objective, steps=80, batch_size=8, lr=2e-3, warmup=10, save_every=0)
    run(config, tmp_path, dataset=Patterns(n=4, fixed=True))
    losses = [m["loss"] for m in metrics(tmp_path)]
    assert len(losses) == 80
    assert statistics.mean(losses[-15:]) < 0.5 * statistics.mean(losses[:10])


def test_metrics_lines_and_warm_up(tmp_path):
    run(micro(steps=7, warmup=4, log_every=2), tmp_path)
    lines = metrics(tmp_path)
    assert [m["step"] for m in lines] == [2, 4, 6, 7]  # every log_every steps, and the last one
    assert set(lines[0]) == {"step", "loss", "lr", "grad_norm", "images_per_s", "wall_time"}
    # lr_t = lr · min(1, t / warmup) for step t = 1, 2, …
    assert [m["lr"] for m in lines] == pytest.approx([1e-3 * 2 / 4, 1e-3, 1e-3, 1e-3])
    assert all(m["images_per_s"] > 0 for m in lines)
    assert [m["wall_time"] for m in lines] == sorted(m["wall_time"] for m in lines)
    assert json.loads((tmp_path / "config.json").read_text())["steps"] == 7


def test_resume_is_bit_exact_across_an_epoch_boundary_with_dropout(tmp_path):
    # 6 items and batches of 4: epochs end mid-batch; dropout exercises the global RNG as well.
    config = micro(steps=9, unet_overrides={**MICRO_UNET, "dropout": 0.2})
    straight = run(config, tmp_path / "a")
    run(micro(steps=4, unet_overrides=config.unet_overrides), tmp_path / "b")
    resumed = run(config, tmp_path / "b", resume=True)
    assert [m["loss"] for m in metrics(tmp_path / "a")] == [m["loss"] for m in metrics(tmp_path / "b")]
    assert resumed.step == straight.step == 9 and resumed.samples_seen == straight.samples_seen == 36
    for a, b in zip(straight.raw.state_dict().values(), resumed.raw.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(straight.ema.state_dict().values(), resumed.ema.state_dict().values()):
        assert torch.equal(a, b)


def test_checkpoint_layout(tmp_path):
    trainer = run(micro(steps=5, save_every=5), tmp_path)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert (ckpt["format"], ckpt["kind"], ckpt["objective"], ckpt["scale"], ckpt["step"]) == (
        "sr3-edu",
        "train",
        "sr3",
        4,
        5,
    )
    for key in ("model", "ema", "optimizer", "scheduler", "config", "unet", "rng", "data", "meta", "train_seconds"):
        assert key in ckpt
    assert set(ckpt["rng"]) >= {"python", "numpy", "torch"}
    data = ckpt["data"]
    assert (data["samples_seen"], data["epoch"], data["index_in_epoch"], data["dataset_len"]) == (20, 3, 2, 6)
    assert ckpt["config"]["unet_overrides"] == MICRO_UNET and ckpt["unet"]["base_channels"] == 16
    assert ckpt["scheduler"]["last_epoch"] == 5 and len(ckpt["optimizer"]["state"]) > 0
    assert ckpt["meta"]["segments"][0]["to_step"] == 5
    # load_model takes the EMA weights, which differ from the raw ones
    model, info = load_model(tmp_path / "checkpoints" / "last.pt")
    assert info.step == 5
    for name, t in model.state_dict().items():
        assert torch.equal(t, trainer.ema.state_dict()[name])
    assert any(not torch.equal(a, b) for a, b in zip(trainer.raw.parameters(), trainer.ema.parameters()))


def test_kept_checkpoints(tmp_path):
    run(micro(steps=7, save_every=2, keep_every=3), tmp_path)
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["last.pt", "step_0000003.pt", "step_0000006.pt"]
    assert torch.load(tmp_path / "checkpoints" / "step_0000003.pt", weights_only=True)["step"] == 3
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["step"] == 7


def test_sample_grid_rows_bicubic_sample_hr(tmp_path):
    trainer = run(micro(steps=4, sample_every=2), tmp_path)
    pngs = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert pngs == ["step_0000002.png", "step_0000004.png"]
    with Image.open(tmp_path / "samples" / pngs[-1]) as im:
        assert im.size == (2 * 16, 3 * 16)  # 2 validation images across; bicubic, sample, HR down
        grid = torch.from_numpy(np.array(im.convert("RGB"))).float()  # (3·16, 2·16, 3)
    x_lr, y0 = trainer.val_batch
    hr_row = ((y0.clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1)  # (n, H, W, 3)
    assert torch.equal(grid[32:48, 0:16], hr_row[0]) and torch.equal(grid[32:48, 16:32], hr_row[1])


def test_regression_objective_trains_and_samples(tmp_path):
    run(micro(objective="regression", steps=3, sample_every=3), tmp_path)
    assert (tmp_path / "samples" / "step_0000003.png").is_file()
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["objective"] == "regression"


def test_dataloader_workers_give_the_same_run(tmp_path):
    run(micro(steps=4, num_workers=0), tmp_path / "main")
    run(micro(steps=4, num_workers=2), tmp_path / "workers")
    assert [m["loss"] for m in metrics(tmp_path / "main")] == [m["loss"] for m in metrics(tmp_path / "workers")]


def test_activation_checkpointing_trains_the_same_run(tmp_path):
    run(micro(steps=3), tmp_path / "plain")
    trainer = run(micro(steps=3, activation_checkpointing=True), tmp_path / "checkpointed")
    assert trainer.raw.activation_checkpointing and not trainer.ema.activation_checkpointing
    plain = [m["loss"] for m in metrics(tmp_path / "plain")]
    checkpointed = [m["loss"] for m in metrics(tmp_path / "checkpointed")]
    assert checkpointed == pytest.approx(plain, rel=1e-5, abs=1e-7)


def test_grad_accumulation_consumes_micro_batches(tmp_path):
    trainer = run(micro(steps=3, grad_accum=2), tmp_path)
    assert trainer.samples_seen == 3 * 2 * 4


def test_train_step_is_the_step_train_runs(tmp_path):
    data = Patterns()
    batch = tuple(torch.stack(t) for t in zip(*(data[i] for i in range(4))))  # (x_lr, y0), batch_size 4
    steps = []
    for name in ("a", "b"):
        with Trainer(micro(ema_decay=0.5), tmp_path / name, dataset=data) as t:
            before = {k: v.clone() for k, v in t.raw.state_dict().items()}
            loss, grad_norm, lr = t.train_step(batch)
            steps.append((t, before, loss))
    (a, before, loss), (b, _, loss_b) = steps
    assert (a.step, a.samples_seen) == (1, 4) and torch.isfinite(loss) and float(grad_norm) > 0
    assert lr == pytest.approx(1e-3 / 5)  # the first step of a 5-step warm-up
    assert torch.equal(loss, loss_b)  # the same batch at the same step: the same update, bit for bit
    after, ema = a.raw.state_dict(), a.ema.state_dict()
    assert any(not torch.equal(after[k], before[k]) for k in after)
    for k, v in after.items():
        if v.is_floating_point():
            torch.testing.assert_close(ema[k], 0.5 * before[k] + 0.5 * v)  # θ_ema ← d·θ_ema + (1 − d)·θ, d = 0.5
            assert torch.equal(v, b.raw.state_dict()[k])
    # with grad_accum = 2 the same 4 pairs are two micro-batches of 2 (each with its own noise draws): one step
    with Trainer(micro(batch_size=2, grad_accum=2), tmp_path / "c", dataset=data) as c:
        loss_c, _, _ = c.train_step(batch)
        with pytest.raises(ValueError, match="does not split into grad_accum = 2"):
            c.train_step(tuple(t[:3] for t in batch))
    assert (c.step, c.samples_seen) == (1, 4) and torch.isfinite(loss_c)


# ------------------------------------------------------------------------------------------ resume and refusals
def test_metrics_written_after_the_checkpoint_are_dropped_on_resume(tmp_path):
    run(micro(steps=3, save_every=3), tmp_path)
    with open(tmp_path / "metrics.jsonl", "a") as f:  # as if killed after logging steps 4–5 but before saving
        f.write(
            json.dumps({"step": 4, "loss": 9.0}) + "\n" + json.dumps({"step": 5, "loss": 9.0}) + '\n{"step": 6, "lo'
        )
    run(micro(steps=5, save_every=3), tmp_path, resume=True)
    lines = metrics(tmp_path)
    assert [m["step"] for m in lines] == [1, 2, 3, 4, 5] and 9.0 not in [m["loss"] for m in lines]


def test_an_existing_run_is_not_overwritten(tmp_path):
    run(micro(steps=3), tmp_path)
    before = file_digests(tmp_path)
    with pytest.raises(RunExistsError, match="use --resume .* or another --out"):
        Trainer(micro(steps=3), tmp_path, dataset=Patterns())
    assert file_digests(tmp_path) == before


def test_resuming_with_another_unet_names_both(tmp_path):
    run(micro(steps=3), tmp_path)
    before = file_digests(tmp_path)
    other = micro(steps=5, unet_overrides={**MICRO_UNET, "base_channels": 8})
    with pytest.raises(CheckpointError) as e:
        Trainer(other, tmp_path, dataset=Patterns(), resume=True)
    msg = str(e.value)
    assert "base_channels: 16 vs 8" in msg and "'base_channels': 8" in msg and "'base_channels': 16" in msg
    with pytest.raises(CheckpointError, match="scale 4 but this run asks for 2"):
        Trainer(micro(steps=5, scale=2), tmp_path, dataset=Patterns(scale=2), resume=True)
    assert file_digests(tmp_path) == before


def test_resume_without_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        Trainer(micro(), tmp_path / "empty", dataset=Patterns(), resume=True)
    assert not (tmp_path / "empty").exists()


def test_data_of_the_wrong_scale_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="y0 must be x_lr's size times the scale"):
        Trainer(micro(), tmp_path, dataset=Patterns(scale=2))


def test_ctrl_c_saves_the_last_whole_step(tmp_path):
    class Interrupting(Patterns):
        def __getitem__(self, i):
            if self.armed and self.reads >= 4 * 5:  # during the 6th step's batch
                raise KeyboardInterrupt
            return super().__getitem__(i)

    data = Interrupting()
    data.armed = False
    with Trainer(micro(steps=50, save_every=100), tmp_path, dataset=data) as trainer:
        data.armed, data.reads = True, 0
        with pytest.raises(KeyboardInterrupt):
            trainer.train()
    ckpt = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 5 and ckpt["samples_seen"] == 20


def test_a_nan_loss_stops_without_saving(tmp_path):
    class Broken(Patterns):
        def __getitem__(self, i):
            x, y = super().__getitem__(i)
            return x, y * float("nan")

    with pytest.raises(FloatingPointError, match="the loss became nan at step 3; not saving"):
        run(micro(steps=6, save_every=3), tmp_path, dataset=Broken())
    assert not (tmp_path / "checkpoints" / "last.pt").exists()


# --------------------------------------------------------------------------------------------- the copy-paste block
def docstring_block() -> str:
    blocks = re.findall(r"```python\n(.*?)```", train_module.__doc__, flags=re.S)
    assert len(blocks) == 1
    return blocks[0]


@pytest.mark.slow
def test_the_copy_paste_block_runs_verbatim(tmp_path):
    block = docstring_block()
    assert 15 <= len(block.strip().splitlines()) <= 20
    # The prelude only shrinks the "tiny" preset (a few steps of a very small U-Net); the block runs as printed.
    prelude = textwrap.dedent(f"""
        import dataclasses
        import sr3_edu.train as T
        T.PRESETS["tiny"] = dataclasses.replace(
            T.PRESETS["tiny"], unet_overrides={MICRO_UNET!r}, hr_size=16, batch_size=2, steps=3,
            sample_every=3, sample_steps=3, sample_images=2, threads=1,
        )
    """)
    script = tmp_path / "train_my_sr3.py"
    script.write_text(prelude + "\n# ---- the block from sr3_edu/train/__init__.py ----\n" + block)
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "my_sr3"
    assert "trained 3 steps" in result.stdout
    assert (run_dir / "checkpoints" / "last.pt").is_file() and (run_dir / "samples" / "step_0000003.png").is_file()
