"""Stops the run with a clear error on a non-finite loss, before a bad checkpoint is written."""

from __future__ import annotations

import math

from rayfit.loop import Callback, EpochLoop


class NanGuard(Callback):
    def on_batch_end(self, loop: EpochLoop) -> None:
        loss = loop.backend.last_loss()
        if not math.isfinite(loss):
            state = loop.state
            loop.state.fail(
                f"training loss is {loss} at epoch {state.epoch + 1}, batch {state.batch_in_epoch}; "
                "stopped and kept the last good checkpoint (try a lower optimizer.lr or "
                "trainer.grad_clip_norm)"
            )

    def on_epoch_end(self, loop: EpochLoop, metrics: dict[str, float]) -> None:
        bad = [k for k, v in metrics.items() if k.endswith("loss") and not math.isfinite(v)]
        if bad:
            loop.state.fail(f"{bad[0]} is {metrics[bad[0]]} at epoch {loop.state.epoch}; stopped")
