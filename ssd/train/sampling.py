"""Data order: a seeded permutation per epoch, sharded across ranks, and a seed per sample,
so that a run resumed from any checkpoint sees the very batches an unbroken run would."""

from __future__ import annotations

import logging
import math
import signal
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ssd.config import TrainConfig
from ssd.data.dataset import collate_detections
from ssd.train.distributed import DistEnv

log = logging.getLogger(__name__)


class EpochSampler(Sampler[tuple[int, int]]):
    """Seeded permutation of ``n`` samples for one epoch, sharded across ranks, from ``start``.

    Yields ``(epoch, index)`` so that :class:`SeededDataset` can seed each sample.
    """

    def __init__(
        self, n: int, seed: int, epoch: int, env: DistEnv, shuffle: bool = True, start: int = 0
    ) -> None:
        self.n, self.seed, self.epoch, self.env = n, seed, epoch, env
        self.shuffle, self.start = shuffle, start
        self.per_rank = math.ceil(n / env.world_size)

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = self.per_rank * self.env.world_size
        order += order[: total - len(order)]  # pad like DistributedSampler
        return order[self.env.rank :: self.env.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in self._order()[self.start :]:
            yield self.epoch, i

    def __len__(self) -> int:
        return self.per_rank - self.start


class SeededDataset(Dataset[Any]):
    """Seeds torch's RNG per ``(seed, epoch, index)`` before the wrapped sample's transforms."""

    def __init__(self, base: Dataset[Any], seed: int) -> None:
        self.base, self.seed = base, seed

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        torch.manual_seed((self.seed * 1_000_003 + epoch * 10_007 + index) % (2**63))
        return self.base[index]


def _ignore_stop_signals(worker_id: int) -> None:
    """Loader workers leave SIGINT / SIGTERM to the training process (Ctrl-C reaches the
    whole process group); they end with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_loader(
    dataset: Dataset[Any], t: TrainConfig, epoch: int, env: DistEnv, start: int, pin: bool
) -> DataLoader[Any]:
    """Batches of epoch ``epoch`` from sample ``start`` of this rank's share."""
    sampler = EpochSampler(len(dataset), t.seed, epoch, env, True, start)  # type: ignore[arg-type]
    return DataLoader(
        SeededDataset(dataset, t.seed),
        batch_size=t.batch_size,
        sampler=sampler,
        num_workers=t.num_workers,
        collate_fn=collate_detections,
        pin_memory=pin,
        drop_last=True,
        worker_init_fn=_ignore_stop_signals if t.num_workers else None,
    )
