"""The global-batch layout both backends train with, in plain numbers: global batch i is rows
perm[i*G:(i+1)*G] of the epoch's permutation (G = batch_size x ranks) and each rank takes its
contiguous part, so N ranks match one process with an N-times larger batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

# Recorded in checkpoints: 2 since both backends take the epoch's order from epoch_permutation
# (torch drew it with torch.randperm before); a checkpoint of another order cannot resume exactly.
BATCH_ORDER = 2


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of epoch `epoch`: a function of (seed, epoch) only, so resume needs no state."""
    return np.random.default_rng(seed * 1_000_003 + epoch).permutation(n).astype(np.int64)


def batches_per_epoch(train_samples: int, global_batch: int, world_size: int) -> int:
    """Global batches in an epoch; a last one with fewer rows than ranks is dropped (every rank
    needs a row)."""
    full, tail = divmod(train_samples, global_batch)
    return full + (1 if tail >= world_size else 0)


def share(n: int, rank: int, world_size: int) -> slice:
    """Rank `rank`'s contiguous part of n rows, as torch.tensor_split cuts them (the first n % world
    parts one row longer)."""
    size, extra = divmod(n, world_size)
    start = rank * size + min(rank, extra)
    return slice(start, start + size + (1 if rank < extra else 0))


Rows = TypeVar("Rows", bound=Sequence)
Out = TypeVar("Out")


def in_batches(forward: Callable[[Rows], Out], x: Rows, batch: int, join: Callable[[list[Out]], Out]) -> Out:
    """join(forward(each slice of `batch` rows of x)): evaluation and prediction in bounded memory
    for any number of rows."""
    return join([forward(x[i : i + batch]) for i in range(0, len(x), batch)])


def own_rank_state(ranks: list[Any], rank: int, world_size: int) -> Any:
    """This rank's entry of a checkpoint's per-rank states; a resume with another number of
    ranks (elastic) reuses rank 0's: the run goes on, not bitwise exactly."""
    return ranks[rank] if len(ranks) == world_size else ranks[0]
