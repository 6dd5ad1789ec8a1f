"""Where a TorchBackend's batches come from: tensors held in memory, or rows streamed by Ray Data.

Both give the train batches of an epoch by index and the evaluation batches of a split as this
rank should score them; `reduce` says whether the ranks' evaluation sums must be added up.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any

import torch

from rayfit.data import Prepared
from rayfit.data.streaming import StreamedData

log = logging.getLogger("rayfit")
Batch = tuple[torch.Tensor, torch.Tensor]


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of epoch `epoch`: a function of (seed, epoch) only, so resume needs no state."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)


class MemoryBatches:
    """Splits held as tensors on the device. Global batch i is rows perm[i*G:(i+1)*G] of the epoch's
    permutation (G = batch_size x ranks) and each rank takes its contiguous part, so N ranks match
    one process with an N-times larger batch. Each rank scores its share of an eval split."""

    reduce = True

    def __init__(
        self, data: Prepared, device: torch.device, y_dtype: torch.dtype,
        batch_size: int, seed: int, rank: int, world_size: int,
    ) -> None:
        self.device, self.seed, self.rank, self.world_size = device, seed, rank, world_size
        self.splits = {
            split: (
                torch.as_tensor(x, dtype=torch.float32, device=device),
                torch.as_tensor(y, dtype=y_dtype, device=device),
            )
            for split, x, y in (
                ("train", data.x_train, data.y_train),
                ("val", data.x_val, data.y_val),
                ("test", data.x_test, data.y_test),
            )
        }
        self.train_samples = len(data.x_train)
        self.global_batch = batch_size * world_size
        # a last global batch with fewer rows than ranks is dropped: every rank needs a row
        full, tail = divmod(self.train_samples, self.global_batch)
        self.batches_per_epoch = full + (1 if tail >= world_size else 0)
        self._perm = torch.arange(0)

    def has_split(self, split: str) -> bool:
        return len(self.splits[split][1]) > 0

    def begin_epoch(self, epoch: int) -> None:
        self._perm = epoch_permutation(self.train_samples, self.seed, epoch).to(self.device)

    def train_batch(self, index: int) -> Batch:
        x_all, y_all = self.splits["train"]
        rows = self._perm[index * self.global_batch : (index + 1) * self.global_batch]
        if self.world_size > 1:
            rows = rows.tensor_split(self.world_size)[self.rank]
        return x_all[rows], y_all[rows]

    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        x, y = self.splits[split]
        if self.world_size > 1:
            x, y = x.tensor_split(self.world_size)[self.rank], y.tensor_split(self.world_size)[self.rank]
        for start in range(0, len(y), batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]


class StreamBatches:
    """Rows streamed by Ray Data in blocks: Ray Train splits the train rows equally over the ranks
    and each rank shuffles its rows within a buffer (seeded by the epoch); every rank scores the
    whole of an eval split, so evaluation sums need no reduction."""

    reduce = False

    def __init__(
        self, data: StreamedData, device: torch.device, y_dtype: torch.dtype,
        batch_size: int, seed: int, world_size: int, shuffle_buffer: int,
    ) -> None:
        self.data, self.rows, self.device, self.y_dtype = data, data.rows, device, y_dtype
        self.batch_size, self.seed, self.shuffle_buffer = batch_size, seed, shuffle_buffer
        per_rank = data.rows["train"] // world_size  # an equal split drops the remainder
        self.train_samples = per_rank * world_size
        self.batches_per_epoch = math.ceil(per_rank / batch_size)
        self._batches: Iterator[dict[str, torch.Tensor]] = iter(())
        self._next = 0

    def has_split(self, split: str) -> bool:
        return self.rows[split] > 0

    def _iterate(self, split: str, batch_size: int, **options: Any) -> Iterator[dict[str, torch.Tensor]]:
        if self.data.shard is None:
            raise RuntimeError("streamed data has no Ray Data iterator in this process")
        return iter(
            self.data.shard(split).iter_torch_batches(
                batch_size=batch_size, dtypes={"x": torch.float32, "y": self.y_dtype},
                device=self.device, **options,
            )
        )

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
            batch = next(self._batches)
            self._next += 1
        return batch["x"], batch["y"]

    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        for batch in self._iterate(split, batch_size):
            yield batch["x"], batch["y"]
