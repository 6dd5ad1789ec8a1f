"""TrainingBackend: everything a run uses from a framework backend, written down once.

The loop's own needs are loop.Backend (steps, metrics, state); a Session, preflight, evaluate and
the Ray worker also use the rank layout, the base learning rates, forward passes and the export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from rayfit.loop import Backend


@runtime_checkable
class TrainingBackend(Backend, Protocol):
    """A framework backend as build_backend returns it: one process, or one rank of a group."""

    device: Any  # the framework's own: a torch.device, a TF device string
    rank: int
    world_size: int
    global_batch: int  # rows per optimizer step over all ranks (batch_size x world_size)
    base_learning_rates: list[float]  # one per parameter group, before any schedule

    def outputs(self, x: Any) -> Any: ...  # model outputs for encoded rows, in eval mode
    def export(self, folder: Path) -> Path: ...  # write the model file; returns its path
    def load_export(self, folder: Path) -> None: ...  # take the weights of an exported model
