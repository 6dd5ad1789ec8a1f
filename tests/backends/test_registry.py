"""One registry names every backend's parts: each loads, each backend meets the TrainingBackend
contract, and the config accepts exactly the registered names."""

from __future__ import annotations

import pytest

from rayfit.backends import MODEL_FILES, build_backend
from rayfit.backends.contract import TrainingBackend
from rayfit.backends.registry import BACKENDS
from rayfit.config import load_experiment
from rayfit.data import load_dataset
from rayfit.errors import ConfigError


def test_each_backend_meets_the_contract(make_experiment, backend: str) -> None:
    cfg = load_experiment(make_experiment(backend=backend))
    built = build_backend(cfg, load_dataset(cfg.data, cfg.trainer.seed))
    assert isinstance(built, TrainingBackend)  # runtime_checkable: every method and attribute is there
    assert built.world_size == 1 and built.global_batch == cfg.trainer.batch_size


def test_each_entrys_parts_load(backend: str) -> None:
    entry = BACKENDS[backend]
    assert callable(entry.load("predictor")) and isinstance(entry.load("backend"), type)
    assert set(entry.load("exporter").FORMATS) <= {"onnx", "torchscript", "savedmodel"}
    assert entry.load("ray_trainer").__name__.endswith("Trainer")
    assert MODEL_FILES[backend] == entry.model_file


def test_the_config_takes_the_registered_names(make_experiment) -> None:
    with pytest.raises(ConfigError, match="backend: Input should be 'torch' or 'tensorflow'"):
        load_experiment(make_experiment(backend="jax"))
