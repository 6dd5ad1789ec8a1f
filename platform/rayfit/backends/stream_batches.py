"""Rows streamed by Ray Data, as NumPy batches that each backend turns into its own tensors: the
same batches for torch and TensorFlow, so both train on data larger than memory."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import numpy as np

from rayfit.data.streaming import StreamedData

log = logging.getLogger("rayfit")
Batch = TypeVar("Batch")


class StreamBatches(Generic[Batch]):
    """Rows streamed by Ray Data in blocks: Ray Train splits the train rows equally over the ranks
    and each rank shuffles its rows within a buffer (seeded by the epoch); every rank scores the
    whole of an eval split, so evaluation sums need no reduction. `convert(x, y)` makes a
    backend's batch of a block's NumPy arrays."""

    reduce = False

    def __init__(
        self, data: StreamedData, convert: Callable[[np.ndarray, np.ndarray], Batch],
        batch_size: int, seed: int, world_size: int, shuffle_buffer: int,
    ) -> None:
        self.data, self.rows, self.convert = data, data.rows, convert
        self.batch_size, self.seed, self.shuffle_buffer = batch_size, seed, shuffle_buffer
        per_rank = data.rows["train"] // world_size  # an equal split drops the remainder
        self.train_samples = per_rank * world_size
        self.batches_per_epoch = math.ceil(per_rank / batch_size)
        self._batches: Iterator[dict[str, np.ndarray]] = iter(())
        self._next = 0

    def has_split(self, split: str) -> bool:
        return self.rows[split] > 0

    def _iterate(self, split: str, batch_size: int, **options: Any) -> Iterator[dict[str, np.ndarray]]:
        if self.data.shard is None:
            raise RuntimeError("streamed data has no Ray Data iterator in this process")
        return iter(self.data.shard(split).iter_batches(batch_size=batch_size, batch_format="numpy", **options))

    def begin_epoch(self, epoch: int) -> None:
        left = sum(1 for _ in self._batches)  # a shard must be read to its end before the next epoch
        if left:
            log.warning("streamed train shard had %d batch(es) more than expected", left)
        self._batches = self._iterate(
            "train", self.batch_size, local_shuffle_buffer_size=self.shuffle_buffer,
            local_shuffle_seed=self.seed * 1_000_003 + epoch,
        )
        self._next = 0

    def train_batch(self, index: int) -> Batch:
        """Batch `index` of the epoch; a run resumed mid-epoch skips the batches it already trained
        (the same number of rows, but Ray Data's block order may differ: not bitwise exact)."""
        while self._next <= index:
            block = next(self._batches)
            self._next += 1
        return self.convert(block["x"], block["y"])

    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        for block in self._iterate(split, batch_size):
            yield self.convert(block["x"], block["y"])
