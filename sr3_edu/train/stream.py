"""The training data: an endless, exactly resumable stream of batches, and the fixed validation batch.

Stream position q holds item perm_e[q mod N] of epoch e = q div N, where perm_e = randperm(N) is seeded by
(seed, e). A checkpoint stores only q (``samples_seen``); starting the stream there replays exactly the batches an
uninterrupted run draws from there on, for any number of processes.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from .config import ConfigError, TrainConfig
from .seeds import DATA, mix_seeds

__all__ = [
    "BatchStream",
    "EpochIndexed",
    "permutation_seed",
    "stream_position",
    "make_loader",
    "make_dataset",
    "validation_batch",
]


def permutation_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s order: it visits ``randperm(N, Generator().manual_seed(permutation_seed))``."""
    return mix_seeds(seed, DATA, epoch)


class BatchStream:
    """Batches of (epoch, index) keys read from an endless stream of per-epoch permutations.

    Each micro-batch consumes world · batch positions; rank r takes its own contiguous slice of them. A yielded
    batch holds ``accum`` consecutive micro-batches of this rank, one optimizer step's worth, in order.
    """

    def __init__(self, n: int, seed: int, start: int, batch: int, rank: int = 0, world: int = 1, accum: int = 1):
        self.n, self.seed, self.start, self.batch, self.rank, self.world = n, seed, start, batch, rank, world
        self.accum = accum
        self._epoch, self._perm = -1, None

    def permutation(self, epoch: int) -> list[int]:
        """perm_e, the order in which epoch ``epoch`` visits the items."""
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(permutation_seed(self.seed, epoch))
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g).tolist()
        return self._perm

    def key(self, q: int) -> tuple[int, int]:
        """The (epoch, index) at stream position ``q``."""
        epoch, pos = divmod(q, self.n)
        return epoch, self.permutation(epoch)[pos]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        q = self.start
        while True:
            keys = []
            for m in range(self.accum):
                first = q + (m * self.world + self.rank) * self.batch
                keys += [self.key(p) for p in range(first, first + self.batch)]
            yield keys
            q += self.accum * self.world * self.batch


class EpochIndexed(torch.utils.data.Dataset):
    """``dataset[(epoch, index)]``: sets the epoch, then reads the item (works inside DataLoader workers too)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


def stream_position(samples_seen: int, dataset_len: int, seed: int) -> dict[str, Any]:
    """How far along the stream a run is, spelled out for a checkpoint's reader."""
    epoch, index = divmod(samples_seen, dataset_len)
    return {
        "samples_seen": samples_seen,
        "epoch": epoch,
        "index_in_epoch": index,
        "dataset_len": dataset_len,
        "permutation_seed": permutation_seed(seed, epoch),
        "order": "epoch e visits torch.randperm(dataset_len, Generator().manual_seed(permutation_seed))",
    }


def make_loader(
    dataset, config: TrainConfig, start: int, rank: int, world: int, device: torch.device
) -> Iterator[tuple[Tensor, Tensor]]:
    """Optimizer steps' batches (x_lr, y0) of ``batch_size · grad_accum`` pairs, from stream position ``start``."""
    cuda = device.type == "cuda"
    workers = config.num_workers if config.num_workers is not None else (4 if cuda else 0)
    stream = BatchStream(len(dataset), config.seed, start, config.batch_size, rank, world, accum=config.grad_accum)
    loader = torch.utils.data.DataLoader(
        EpochIndexed(dataset),
        batch_sampler=stream,
        num_workers=workers,
        pin_memory=cuda,
        # the loader's own seed draw must not touch the global RNG
        generator=torch.Generator().manual_seed(mix_seeds(config.seed, DATA)),
    )
    return iter(loader)


def make_dataset(config: TrainConfig, split: str):
    """``sr3_edu.data.make_dataset`` for ``config.data``; augmentations only for the "train" split."""
    from ..data import make_dataset as make

    train = split == "train"
    return make(
        config.data,
        hr_size=config.hr_size,
        scale=config.scale,
        split=split,
        seed=config.seed,
        flips=config.flips and train,
        color_augment=config.color_augment and train,
        skip_bad_images=config.skip_bad_images,
    )


def validation_batch(config: TrainConfig, dataset, user_supplied: bool) -> tuple[Tensor, Tensor]:
    """A fixed batch: the built-in "val" photos; for a folder or a given data set, its first items of epoch 0.

    It also checks the data set's items: (x_lr, y0) pairs of one size, y0 ``config.scale`` times x_lr's.
    """
    source = dataset
    if config.data == "builtin" and not user_supplied:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            source = make_dataset(config, "val")
    n = min(max(config.sample_images, 1), len(source))
    view = EpochIndexed(source)
    items = [view[(0, i)] for i in range(n)]
    try:
        x_lr, y0 = (torch.stack(t) for t in zip(*items))  # (n, 3, h, w), (n, 3, H, W)
    except (TypeError, RuntimeError, ValueError) as e:
        raise ConfigError(f"data set items must be (x_lr, y0) tensor pairs of one size ({e})") from e
    s = config.scale
    if x_lr.dim() != 4 or y0.dim() != 4 or y0.shape[-2:] != (x_lr.shape[-2] * s, x_lr.shape[-1] * s):
        raise ConfigError(
            f"data set items are x_lr {tuple(x_lr.shape[1:])} and y0 {tuple(y0.shape[1:])}, "
            f"but scale is {s}: "
            f"y0 must be x_lr's size times the scale"
        )
    return x_lr, y0
