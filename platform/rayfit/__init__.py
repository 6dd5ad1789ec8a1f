"""rayfit: one epoch loop for PyTorch models, driven by YAML experiment files, tracked in MLflow."""

from rayfit.config import ExperimentConfig, load_experiment
from rayfit.trainer import FitResult, Trainer

__all__ = ["ExperimentConfig", "FitResult", "Trainer", "load_experiment"]
