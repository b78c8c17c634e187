"""Train SR3 (Algorithm 1) or the regression baseline: a loop that fits on one screen, checkpoints that lose nothing.

Copy-paste training (a fresh script; "builtin" trains on the photos shipped with the package, a path on a folder):

```python
from sr3_edu.data import make_dataset
from sr3_edu.train import TrainConfig, Trainer

config = TrainConfig.preset("tiny")  # every field is documented in TrainConfig
dataset = make_dataset(
    "builtin",  # or the path of a folder of photos
    hr_size=config.hr_size,
    scale=config.scale,
    seed=config.seed,
)
out_dir = "runs/my_sr3"
# Ctrl-C saves a checkpoint; run the script again with resume=True to go on from it.
with Trainer(config, out_dir, dataset=dataset, resume=False) as trainer:
    model = trainer.train()  # the EMA weights; samples/ shows progress
print(f"trained {trainer.step} steps; export with: python -m sr3_edu export --checkpoint {out_dir}/checkpoints/last.pt")
```

From the command line: ``python -m sr3_edu train --preset tiny --data builtin --out runs/tiny`` (``--help`` lists
every option). A run directory holds ``config.json``, ``metrics.jsonl`` (one JSON object per logged step),
``samples/step_XXXXXXX.png`` (a fixed validation batch: bicubic | sample | HR rows) and ``checkpoints/last.pt``.

**Resuming is exact.** Every random number of a step is drawn from generators seeded with (seed, step, rank), and
the data order is an endless stream of per-epoch permutations seeded with (seed, epoch); a checkpoint stores how far
along that stream the run is. So on the CPU a run killed at any instant and resumed with ``--resume`` produces the
same losses, bit for bit, as a run that was never interrupted, given the same number of CPU threads (on a GPU, up
to the non-determinism of its kernels).
This needs data items that are a pure function of (seed, epoch, index), as `sr3_edu.data` makes them.
In Python, ``Trainer.resume(config, out_dir)`` (or ``Trainer(config, out_dir, resume=True)``) goes on with a run.

**Several GPUs**: ``torchrun --nproc_per_node N -m sr3_edu train ...`` (the same options) runs DistributedDataParallel;
``batch_size`` is per process, so the global batch is N · batch_size · grad_accum. Rank 0 alone logs, samples and
saves; a checkpoint saved under torchrun resumes in a single process (the data stream goes on where it stopped).

What the paper specifies and what it does not (§4 "Training Details"): Adam, lr 1e-4 (1e-5 for the regression
baseline), a linear warm-up of 10k steps, batch 256, 1M steps, dropout 0.2 for 16→128 only. It does not mention an
exponential moving average of the weights; DDPM, which SR3 builds on, used one with decay 0.9999. This trainer keeps
one too (0.999 in the tiny preset, whose runs are short); the sample grids and exported models use the EMA weights.

Where each part is (one idea a module):

* `sr3_edu.train.config`: `TrainConfig`, every option of a run with its documentation, the presets, their checks;
* `sr3_edu.train.trainer`: the `Trainer`: Algorithm 1's step (`Trainer.train_step`), the loop (`Trainer.train`);
* `sr3_edu.train.progress`: what a run shows as it goes: the progress bar, metrics.jsonl, the sample grids;
* `sr3_edu.train.stream`: the exactly resumable data order (`BatchStream`) and the fixed validation batch;
* `sr3_edu.train.seeds`: the seed of every random draw, from (seed, purpose, step, rank);
* `sr3_edu.train.state`: the checkpoint dict, every RNG state, the checks on resume, the run folder's hygiene;
* `sr3_edu.train.provenance`: what a checkpoint records about how it was made (hardware, data, launches);
* `sr3_edu.train.distributed`: torchrun and DistributedDataParallel;
* `sr3_edu.train.signals`: SIGTERM handled like Ctrl-C, so a stopped job saves its last whole step;
* `sr3_edu.commands.train`: ``sr3-edu train``, its flags generated from `TrainConfig`'s field docstrings.
"""

from __future__ import annotations

from .config import PRESETS, ConfigError, TrainConfig
from .provenance import format_duration, hardware
from .state import RunExistsError
from .trainer import Trainer

__all__ = [
    "TrainConfig",
    "PRESETS",
    "Trainer",
    "ConfigError",
    "RunExistsError",
    "format_duration",
    "hardware",
]
