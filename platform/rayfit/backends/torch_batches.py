"""Where a TorchBackend's in-memory batches come from: tensors on the device, sliced by the shared
batch layout. Streamed rows come from stream_batches.StreamBatches, whose interface this shares:
train batches of an epoch by index, evaluation batches of a split as this rank should score
them, and `reduce`, whether the ranks' evaluation sums must be added up.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from rayfit.backends.batch_layout import batches_per_epoch, epoch_permutation, share
from rayfit.data import Prepared

Batch = tuple[torch.Tensor, torch.Tensor]


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
        self.batches_per_epoch = batches_per_epoch(self.train_samples, self.global_batch, world_size)
        self._perm = torch.arange(0)

    def has_split(self, split: str) -> bool:
        return len(self.splits[split][1]) > 0

    def begin_epoch(self, epoch: int) -> None:
        self._perm = torch.from_numpy(epoch_permutation(self.train_samples, self.seed, epoch)).to(self.device)

    def train_batch(self, index: int) -> Batch:
        x_all, y_all = self.splits["train"]
        rows = self._perm[index * self.global_batch : (index + 1) * self.global_batch]
        rows = rows[share(len(rows), self.rank, self.world_size)]
        return x_all[rows], y_all[rows]

    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        x, y = self.splits[split]
        mine = share(len(y), self.rank, self.world_size)
        x, y = x[mine], y[mine]
        for start in range(0, len(y), batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]
