"""Calls user functions `fn(epoch, metrics)` after each epoch (Trainer.register_progress_callback)."""

from __future__ import annotations

from collections.abc import Callable

from rayfit.loop import Callback, EpochLoop

EpochFn = Callable[[int, dict[str, float]], None]


class EpochHook(Callback):
    def __init__(self, functions: list[EpochFn]) -> None:
        self.functions = functions

    def on_epoch_end(self, loop: EpochLoop, metrics: dict[str, float]) -> None:
        for fn in self.functions:
            fn(loop.state.epoch, dict(metrics))
