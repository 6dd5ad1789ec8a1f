"""The shared global-batch layout: each rank's share is torch.tensor_split's, the epoch's batch
count drops only a tail smaller than the ranks, and a resume with other ranks falls back to rank 0."""

from __future__ import annotations

import pytest
import torch

from rayfit.backends.batch_layout import batches_per_epoch, own_rank_state, share


@pytest.mark.parametrize("n, world", [(10, 3), (7, 4), (5, 1), (3, 3), (2, 4)])
def test_share_cuts_as_tensor_split(n: int, world: int) -> None:
    rows = torch.arange(n)
    assert [rows[share(n, r, world)].tolist() for r in range(world)] == [
        part.tolist() for part in rows.tensor_split(world)]


@pytest.mark.parametrize("samples, global_batch, world, expected", [
    (100, 10, 1, 10), (101, 10, 1, 11), (81, 40, 2, 2), (82, 40, 2, 3), (80, 40, 2, 2)])
def test_batches_per_epoch_drops_a_tail_smaller_than_the_ranks(samples, global_batch, world, expected) -> None:
    assert batches_per_epoch(samples, global_batch, world) == expected


def test_own_rank_state_falls_back_to_rank_0_when_the_ranks_changed() -> None:
    assert own_rank_state(["a", "b"], 1, 2) == "b"
    assert own_rank_state(["a", "b"], 2, 3) == "a" and own_rank_state(["a", "b"], 0, 1) == "a"
