"""The shared epoch loop: framework-free (no torch, TF, Ray or MLflow imports)."""

from rayfit.loop.callback import Callback
from rayfit.loop.events import Event
from rayfit.loop.loop import Backend, EpochLoop, TrainingFailed
from rayfit.loop.state import LoopState

__all__ = ["Backend", "Callback", "EpochLoop", "Event", "LoopState", "TrainingFailed"]
