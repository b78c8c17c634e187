"""The `Trainer`: Algorithm 1 of the SR3 paper as a loop that fits on one screen, with checkpoints that lose nothing.

Algorithm 1 (Training a denoising model f_θ), one optimizer step:
    (x, y_0) ~ p(x, y);  γ ~ p(γ);  ε ~ N(0, I)
    take a gradient step on  ∇_θ ‖f_θ(x, √γ·y_0 + √(1−γ)·ε, γ) − ε‖_p^p
`sr3_edu.diffusion.loss` computes the loss; this module runs the steps, the EMA and the saves;
`sr3_edu.train.progress` draws the sample grids and writes the log.
"""

from __future__ import annotations

import copy
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import diffusion
from ..checkpoint import save_atomic
from ..devices import channels_last_training, resolve_device, resolve_precision, reuse_freed_memory
from ..regression import regression_loss
from ..unet import SR3UNet, UNetConfig
from . import distributed, state
from .config import ConfigError, TrainConfig
from .progress import append_metrics, progress_bar, save_sample_grid
from .provenance import describe_data, new_segment
from .seeds import INIT, NOISE, STEP, mix_seeds
from .signals import sigterm_as_interrupt
from .stream import make_dataset, make_loader, stream_position, validation_batch

__all__ = ["Trainer"]


class Trainer:
    """Trains ``SR3UNet`` on (x_lr, y0) pairs; see the package docstring and `TrainConfig`.

    ``dataset``: any map-style data set of ``(x_lr, y0)`` float tensors in [−1, 1], (3, h, w) and (3, h·s, w·s);
    None builds ``make_dataset(config.data, ...)``. For exact resumes its items must be a pure function of the index
    (and of the epoch given to an optional ``set_epoch``). A new trainer refuses an ``out_dir`` that already holds a
    run; `Trainer.resume` (or ``resume=True``) goes on with it from ``out_dir/checkpoints/last.pt``.
    Under torchrun (``WORLD_SIZE`` > 1) it runs DistributedDataParallel. Use it as a context manager, or call
    `close` at the end (it also shuts the process group down cleanly).
    """

    def __init__(self, config: TrainConfig, out_dir: str | os.PathLike, dataset=None, *, resume: bool = False):
        self._open(config, out_dir, dataset, resume=resume, checkpoint=None)

    @classmethod
    def resume(
        cls, config: TrainConfig, out_dir: str | os.PathLike, dataset=None, *, checkpoint: state.CheckpointSource = None
    ) -> Trainer:
        """A trainer that goes on with the run in ``out_dir``, from step and data position to every RNG.

        ``checkpoint``: None (``out_dir/checkpoints/last.pt``), the path of another training checkpoint, or a
        checkpoint dict already read with `sr3_edu.checkpoint.load_checkpoint` (the command line reads it first to
        take the run's own settings). ``Trainer(config, out_dir, dataset, resume=True)`` is the same as
        ``Trainer.resume(config, out_dir, dataset)``.
        """
        trainer = cls.__new__(cls)
        trainer._open(config, out_dir, dataset, resume=True, checkpoint=checkpoint)
        return trainer

    def _open(self, config: TrainConfig, out_dir, dataset, *, resume: bool, checkpoint) -> None:
        self.config = cfg = config.validate()
        self.out = Path(out_dir)
        self.ckpt_dir = self.out / "checkpoints"
        self.rank, self.world, self.local_rank = distributed.process_ranks()
        self.is_main = self.rank == 0
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        try:
            self.device = resolve_device(cfg.device, self.local_rank)
        except ValueError as e:
            raise ConfigError(str(e)) from e
        if self.device.type == "cpu":
            reuse_freed_memory()  # every step frees and re-allocates the same activations

        # Everything that can fail on bad input happens before the first file is written.
        ckpt, ckpt_path = state.load_resume_checkpoint(self.out, checkpoint) if resume else (None, None)
        if not resume:
            state.refuse_existing_run(self.out)
        unet_config = cfg.unet_config()
        if ckpt is not None:
            state.check_compatible(ckpt, cfg, unet_config, ckpt_path)
        self.user_dataset = dataset is not None
        self.dataset = dataset if dataset is not None else make_dataset(cfg, "train")
        if len(self.dataset) == 0:
            raise ConfigError("the training data set is empty")
        self.val_batch = validation_batch(cfg, self.dataset, self.user_dataset)

        self.ddp = distributed.start(self.device, self.world)
        self._build(unet_config)
        self.step, self.samples_seen, self.seconds_before = 0, 0, 0.0
        self.segments: list[dict[str, Any]] = []
        if ckpt is not None:
            self._restore(ckpt)
        self._segment_start = self.seconds_before
        self.segments.append(new_segment(cfg.command, self.step, self.world, self.device))

        self.model: torch.nn.Module = self.raw
        if cfg.compile:
            self.model = torch.compile(self.model)
        if self.ddp:
            self.model = distributed.wrap(self.model, self.device)
        if self.is_main:
            state.prepare_run_folder(self.out, cfg, self.step)
        self._seconds_at = None
        self._updating = False

    def _build(self, unet_config: UNetConfig) -> None:
        """f_θ, its EMA, AdamW with the warm-up, the noise schedule (β_t, α_t, γ_t), and how they run."""
        cfg, cuda = self.config, self.device.type == "cuda"
        torch.manual_seed(mix_seeds(cfg.seed, INIT))
        self.precision = resolve_precision(cfg.precision, self.device)
        auto_cl = cfg.channels_last == "auto" and channels_last_training(self.device, cfg.precision)
        use_cl = cfg.channels_last is True or auto_cl
        self.memory_format = torch.channels_last if use_cl else torch.contiguous_format
        self.raw = SR3UNet.from_config(unet_config).to(self.device, memory_format=self.memory_format)
        self.ema = copy.deepcopy(self.raw).eval().requires_grad_(False)
        self.raw.activation_checkpointing = bool(cfg.activation_checkpointing)  # the EMA never trains: it stays off
        # The fused AdamW kernel on a GPU and on a CPU too: for the 16→128 preset on 2 CPU cores the default kernel took
        # a quarter of the step, and the fused one a third of that time.
        self.optimizer = torch.optim.AdamW(
            self.raw.parameters(),
            lr=cfg.lr,
            betas=(0.9, 0.999),
            weight_decay=cfg.weight_decay,
            fused=self.device.type in ("cuda", "cpu"),
        )
        self.lr_schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.schedule = cfg.schedule()
        self.amp = self.precision == "bf16"
        self.noise_gen = torch.Generator(device=self.device if cuda else "cpu")

    # ---------------------------------------------------------------------------------------------- the loop
    def train(self) -> SR3UNet:
        """Train until ``config.steps``; return the EMA model. Ctrl-C or SIGTERM (what schedulers send before they stop
        a job) saves ``last.pt`` (single process) first, then stops."""
        cfg = self.config
        batches = make_loader(self.dataset, cfg, self.samples_seen, self.rank, self.world, self.device)
        bar = progress_bar(cfg.steps, self.step, disable=not self.is_main)
        self._seconds_at = t_log = time.perf_counter()
        images, saved_at, loss = 0, self.step, None
        with sigterm_as_interrupt():
            try:
                while self.step < cfg.steps:
                    batch = next(batches)  # (x_lr, y0): batch_size · grad_accum pairs of this process
                    loss, grad_norm, lr = self.train_step(batch)
                    images += self.world * batch[0].shape[0]
                    bar.update(1)
                    last = self.step == cfg.steps
                    if self.step % cfg.log_every == 0 or last:
                        now = time.perf_counter()
                        self._log(loss, lr, grad_norm, images / (now - t_log), bar)
                        t_log, images = now, 0
                    if self.is_main and cfg.sample_every and (self.step % cfg.sample_every == 0 or last):
                        self.sample_grid()
                    if _every(self.step, cfg.save_every) or _every(self.step, cfg.keep_every) or last:
                        self._check_finite(loss)
                        self.save()
                        saved_at = self.step
            except KeyboardInterrupt:
                finite = loss is None or bool(torch.isfinite(loss))
                if not (self.ddp or self._updating) and self.step > saved_at and finite:
                    self.save()
                    print(f"\ninterrupted: saved step {self.step} to {self.ckpt_dir / 'last.pt'}", file=sys.stderr)
                raise
            finally:
                bar.close()
                self.seconds_before = self.train_seconds()
                self._seconds_at = None
        if self.ddp:
            distributed.check_replicas({"model": self.raw, "ema": self.ema}, self.rank, self.world, self.out)
        return self.ema

    def train_step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, float]:
        """One optimizer step on ``batch`` = (x_lr, y0), ``batch_size · grad_accum`` pairs (split into ``grad_accum``
        micro-batches): Algorithm 1's loss (or the regression's), backward, gradient clipping, the optimizer and the
        warm-up, then the EMA. Returns (the loss, a 0-d tensor; the gradient norm before clipping; the lr used).
        The noise of the step depends on (seed, step, rank) only, so the same batch at the same step gives the same
        update. This is the step `train` runs and the benchmarks time."""
        cfg = self.config
        if batch[0].shape[0] % cfg.grad_accum:
            raise ValueError(
                f"a batch of {batch[0].shape[0]} pairs does not split into grad_accum = {cfg.grad_accum} equal "
                "micro-batches; give batch_size · grad_accum pairs"
            )
        self._seed_step()
        loss_sum = torch.zeros((), device=self.device)
        chunks = zip(*(t.chunk(cfg.grad_accum) for t in batch))
        for micro, (x_lr, y0) in enumerate(chunks):
            x_lr, y0 = (t.to(self.device, non_blocking=True, memory_format=self.memory_format) for t in (x_lr, y0))
            with distributed.no_sync(self.model, micro < cfg.grad_accum - 1), self._autocast():
                loss = self._loss(x_lr, y0) / cfg.grad_accum  # scalar, Algorithm 1 (or the L1 regression loss)
            loss.backward()
            loss_sum += loss.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.raw.parameters(), cfg.grad_clip or float("inf"))
        lr = self.optimizer.param_groups[0]["lr"]
        self._updating = True  # from here to step += 1 the weights are half-updated: no save on Ctrl-C
        self.optimizer.step()
        self.lr_schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._update_ema()
        self.step += 1
        self.samples_seen += self.world * batch[0].shape[0]
        self._updating = False
        return loss_sum, grad_norm, lr

    def _loss(self, x_lr: Tensor, y0: Tensor) -> Tensor:
        """Algorithm 1's ‖f_θ(x, √γ·y_0 + √(1−γ)·ε, γ) − ε‖_p^p, or the regression baseline's ‖f_θ(x) − y_0‖_p^p."""
        cfg = self.config
        if cfg.objective == "regression":
            return regression_loss(self.model, x_lr, y0, p=cfg.loss_p)
        return diffusion.loss(
            self.model, x_lr, y0, self.schedule, p=cfg.loss_p, generator=self.noise_gen, offset_noise=cfg.offset_noise
        )

    @torch.no_grad()
    def _update_ema(self) -> None:
        d = self.config.ema_decay
        for e, p in zip(self.ema.parameters(), self.raw.parameters()):
            # θ_ema ← d·θ_ema + (1 − d)·θ
            e.lerp_(p.detach(), 1 - d)
        for e, b in zip(self.ema.buffers(), self.raw.buffers()):
            e.copy_(b)

    def _lr_factor(self, step: int) -> float:
        # lr_t = lr · min(1, (t + 1) / warmup): linear warm-up, then constant (the paper, §4)
        return min(1.0, (step + 1) / self.config.warmup) if self.config.warmup else 1.0

    def _seed_step(self) -> None:
        """Noise levels γ, noise ε and dropout of this step depend on (seed, step, rank) only: resumes are exact."""
        torch.manual_seed(mix_seeds(self.config.seed, STEP, self.step, self.rank))
        self.noise_gen.manual_seed(mix_seeds(self.config.seed, NOISE, self.step, self.rank))

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    # ----------------------------------------------------------------------------------------- logging, samples
    def train_seconds(self) -> float:
        """Seconds spent training, summed over every resume of this run."""
        running = time.perf_counter() - self._seconds_at if self._seconds_at is not None else 0.0
        return self.seconds_before + running

    def _log(self, loss: Tensor, lr: float, grad_norm: Tensor, images_per_s: float, bar) -> None:
        """Append the step's record to metrics.jsonl (rank 0) and show its loss, the mean over processes, on ``bar``."""
        record = {
            "step": self.step,
            "loss": distributed.mean_over_ranks(loss),  # json writes repr(float): every bit survives
            "lr": lr,  # the learning rate this step used
            "grad_norm": float(grad_norm),
            "images_per_s": images_per_s,
            "wall_time": self.train_seconds(),
        }
        if self.is_main:
            append_metrics(self.out / "metrics.jsonl", record)
        bar.set_postfix(loss=f"{record['loss']:.4f}", img_s=f"{images_per_s:.1f}", refresh=False)

    def sample_grid(self, path: str | os.PathLike | None = None) -> Path:
        """Super-resolve the fixed validation batch with the EMA weights; save rows bicubic | sample | HR as a PNG.

        SR3 samples with Algorithm 2 on the training schedule respaced to ``sample_steps``; the regression baseline
        is one forward pass."""
        path = Path(path) if path is not None else self.out / "samples" / f"step_{self.step:07d}.png"
        return save_sample_grid(
            path, self.ema, self.val_batch, self.config, self.schedule, self.device, self._autocast()
        )

    # ------------------------------------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> dict[str, Any]:
        """The training checkpoint as a plain dict (see `sr3_edu.checkpoint`); every value survives weights_only."""
        seconds = self.train_seconds()
        self.segments[-1].update(to_step=self.step, seconds=seconds - self._segment_start)
        data = stream_position(self.samples_seen, len(self.dataset), self.config.seed)
        data.update(describe_data(self.config, self.dataset, self.user_dataset))
        return state.make_checkpoint(
            self.config,
            raw=self.raw,
            ema=self.ema,
            optimizer=self.optimizer,
            lr_schedule=self.lr_schedule,
            step=self.step,
            samples_seen=self.samples_seen,
            train_seconds=seconds,
            data=data,
            segments=self.segments,
            world=self.world,
        )

    def save(self) -> Path | None:
        """Write ``checkpoints/last.pt`` (and a kept ``step_XXXXXXX.pt`` when due). Rank 0 only."""
        if not self.is_main:
            return None
        obj = self.checkpoint()
        path = save_atomic(obj, self.ckpt_dir / "last.pt")
        if _every(self.step, self.config.keep_every):
            save_atomic(obj, self.ckpt_dir / f"step_{self.step:07d}.pt")
        return path

    def _restore(self, ckpt: dict[str, Any]) -> None:
        self.raw.load_state_dict(ckpt["model"])
        self.ema.load_state_dict(ckpt["ema"])
        state.restore_optimizer(self.optimizer, self.lr_schedule, ckpt, self.config, self._lr_factor)
        self.step = int(ckpt["step"])
        self.samples_seen = int(ckpt["samples_seen"])
        self.seconds_before = float(ckpt["train_seconds"])
        self.segments = list(ckpt.get("meta", {}).get("segments", []))
        state.set_rng_state(ckpt["rng"])
        if self.is_main:
            state.warn_if_data_changed(ckpt, len(self.dataset), stacklevel=4)  # _open, __init__/resume, the caller

    def _check_finite(self, loss_sum: Tensor) -> None:
        if not bool(torch.isfinite(loss_sum)):
            raise FloatingPointError(
                f"the loss became {loss_sum.item()} at step {self.step}; not saving. The last good checkpoint is "
                f"{self.ckpt_dir / 'last.pt'}: resume from it with a lower --lr or a longer --warmup"
            )

    # ---------------------------------------------------------------------------------------------------- closing
    def close(self) -> None:
        """Drop the DDP wrapper, wait for every process, then shut the process group down."""
        if self.ddp:
            self.model = self.raw  # the DDP wrapper's communication hooks go before the group does
            distributed.stop()
            self.ddp = False

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _every(step: int, n: int) -> bool:
    return bool(n) and step % n == 0
