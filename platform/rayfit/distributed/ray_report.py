"""Hands rank 0's checkpoints to Ray Train, so Ray can restart a failed worker group from one.

Ray Train V2's controller takes one report per health check (every 2 s by default) and a worker's
next `ray.train.report` blocks until then: reporting every 0.1 s epoch made each epoch take 2 s.
So checkpoints go to Ray at most every REPORT_EVERY_S, uploaded in the background, and the last
one (end of training, early stop, pause) always, synchronously. A restart from an older one redoes
a few epochs and still ends bitwise the same. Epoch metrics reach the caller through the run's
event stream, not through Ray. Every rank reports at the same points (the report is a barrier).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import ray.train

from rayfit.callbacks.checkpoint import Checkpointing
from rayfit.loop import Callback, EpochLoop

CHECKPOINT_STEM = "checkpoint"  # + the backend's checkpoint_suffix
REPORT_EVERY_S = 2.0  # RAY_TRAIN_HEALTH_CHECK_INTERVAL_S's default


class RayReport(Callback):
    """Runs after Checkpointing: a save at this step may go to Ray."""

    def __init__(self, checkpointing: Checkpointing) -> None:
        self.checkpointing = checkpointing
        self.rank = ray.train.get_context().get_world_rank()
        self._last_report = float("-inf")
        self._reported_step = -1

    def on_batch_end(self, loop: EpochLoop) -> None:
        self._maybe_report(loop, final=False)  # a mid-epoch (every_steps) checkpoint

    def on_epoch_end(self, loop: EpochLoop, metrics: dict[str, float]) -> None:
        self._maybe_report(loop, final=loop.state.should_stop or loop.state.epoch == loop.epochs)

    def on_train_end(self, loop: EpochLoop) -> None:
        self._maybe_report(loop, final=True)  # a pause's checkpoint, written at train end

    def _maybe_report(self, loop: EpochLoop, final: bool) -> None:
        saved = self.checkpointing.last_saved
        step = loop.state.step
        if saved is None or saved.step != step or self._reported_step == step:
            return  # nothing new saved at this step (the same on every rank)
        if not final:  # rank 0's clock decides for every rank
            due = self.rank == 0 and time.monotonic() - self._last_report >= REPORT_EVERY_S
            if loop.backend.world_size > 1:
                due = loop.backend.sum_over_ranks([float(due)])[0] > 0
            if not due:
                return
        self._last_report, self._reported_step = time.monotonic(), step
        self.checkpointing.wait()  # the file is written on a background thread
        self._report(saved.path, {"epoch": float(loop.state.epoch), "step": float(step)}, final)

    @staticmethod
    def _report(path: Path | None, metrics: dict[str, float], final: bool) -> None:
        """Rank 0 hands its file over (a hard link in a folder of its own); other ranks report none."""
        if path is None:
            ray.train.report(metrics)
            return
        folder = tempfile.mkdtemp(prefix="rayfit-ckpt-")
        target = Path(folder) / (CHECKPOINT_STEM + path.suffix)
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)
        checkpoint = ray.train.Checkpoint.from_directory(folder)
        if final:  # the run ends after this one: Ray must hold it before the function returns
            try:
                ray.train.report(metrics, checkpoint=checkpoint)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            return
        ray.train.report(  # Ray deletes the folder once it has uploaded it
            metrics, checkpoint=checkpoint,
            checkpoint_upload_mode=ray.train.CheckpointUploadMode.ASYNC,
            delete_local_checkpoint_after_upload=True,
        )
