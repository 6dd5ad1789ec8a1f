"""Reports each epoch's metrics to Ray Train, with the checkpoint rank 0 just wrote, so Ray can
restart a failed worker group from it. Every rank reports at the same points (Ray's barrier)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import ray.train

from rayfit.callbacks.checkpoint import Checkpointing
from rayfit.loop import Callback, EpochLoop

CHECKPOINT_STEM = "checkpoint"  # + the backend's checkpoint_suffix


class RayReport(Callback):
    """Runs after Checkpointing: a save at this step goes to Ray with the report."""

    def __init__(self, checkpointing: Checkpointing) -> None:
        self.checkpointing = checkpointing

    def on_batch_end(self, loop: EpochLoop) -> None:
        if self._saved_now(loop):  # a mid-epoch (every_steps) checkpoint
            self._report(loop, {"epoch": float(loop.state.epoch), "step": float(loop.state.step)})

    def on_epoch_end(self, loop: EpochLoop, metrics: dict[str, float]) -> None:
        self._report(loop, {**metrics, "step": float(loop.state.step)})

    def _saved_now(self, loop: EpochLoop) -> bool:
        saved = self.checkpointing.last_saved
        return saved is not None and saved[0] == loop.state.step

    def _report(self, loop: EpochLoop, metrics: dict[str, Any]) -> None:
        saved = self.checkpointing.last_saved
        path = saved[1] if saved is not None and saved[0] == loop.state.step else None
        if path is None:
            ray.train.report(metrics)
            return
        # Ray copies the folder to its storage during report; a hard link avoids a local copy.
        folder = tempfile.mkdtemp(prefix="rayfit-ckpt-")
        try:
            target = Path(folder) / (CHECKPOINT_STEM + path.suffix)
            try:
                os.link(path, target)
            except OSError:
                shutil.copyfile(path, target)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
