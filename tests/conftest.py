"""Shared fixtures: a working directory per test and a small, fast experiment file."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

TINY = {
    "data": {"source": "sklearn:digits", "val_fraction": 0.15, "test_fraction": 0.15},
    "model": {"type": "mlp", "hidden_units": [32], "dropout": 0.1},
    "optimizer": {"name": "adam", "lr": 0.003},
    "trainer": {"epochs": 3, "batch_size": 64, "seed": 1, "progress": "log"},
    "tracking": {"enabled": False},
    "scaling": {"num_workers": 0},  # in-process; the Ray Train path has its own tests
}


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def write_experiment(folder: Path, name: str = "tiny", **sections: Any) -> Path:
    """A small digits experiment (3 epochs, MLflow off) with `sections` merged over it."""
    path = Path(folder) / f"{name}.yaml"
    path.write_text(yaml.safe_dump(deep_merge({"name": name, **TINY}, sections)))
    return path


BACKENDS = ["torch", "tensorflow"]
CHECKPOINT_SUFFIX = {"torch": ".pt", "tensorflow": ".npz"}


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's payload, read as its backend wrote it (no code runs on load)."""
    if path.suffix == ".pt":
        from rayfit.backends.torch_backend import load_checked

        return load_checked(path)
    from rayfit.backends.array_file import load_arrays

    return load_arrays(path)


def checkpoint_arrays(path: Path) -> list[Any]:
    """The model's tensors in a checkpoint, as numpy arrays (torch's state dict in its order)."""
    model = read_checkpoint(path)["backend"]["model"]
    return [v.numpy() for v in model.values()] if isinstance(model, dict) else list(model)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend in turn, for tests that hold for both."""
    return request.param


@pytest.fixture(scope="session", autouse=True)
def own_config_dir(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """rayfit's per-user files (the sweep key) in a folder of the test session's, not ~/.config;
    subprocesses inherit it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAYFIT_CONFIG_DIR", str(tmp_path_factory.mktemp("rayfit-config")))
        yield


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a fresh folder, as a user would run in a project folder (runs/ and mlflow.db land here)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store per test session: creating a store costs seconds (schema migrations)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


class ScriptedBackend:
    """A pure-Python backend whose validation metrics follow a script: it drives the
    framework-free loop in tests of loop and callback logic. Its 'weights' are the number of
    optimizer steps taken, so restoring the best weights is visible."""

    def __init__(self, val_losses: list[float], batches_per_epoch: int = 2) -> None:
        self.val_losses = val_losses
        self.batches_per_epoch = batches_per_epoch
        self.train_samples = batches_per_epoch * 10
        self.weights = 0
        self.epoch = 0
        self.lrs = [0.1]

    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def reset_train_metrics(self) -> None: ...

    def fetch_batch(self, batch: int) -> int:
        return batch

    def train_step(self, batch: int, data: int) -> None:
        self.weights += 1

    def train_metrics(self) -> dict[str, float]:
        return {"train_loss": 1.0}

    running_metrics = train_metrics

    def last_loss(self) -> float:
        return 1.0

    def has_split(self, split: str) -> bool:
        return True

    def evaluate(self, split: str) -> dict[str, float]:
        return {"loss": self.val_losses[self.epoch]}

    def learning_rates(self) -> list[float]:
        return self.lrs

    def set_learning_rates(self, lrs: list[float]) -> None:
        self.lrs = list(lrs)

    def memory_metrics(self) -> dict[str, float]:
        return {}

    def get_weights(self) -> int:
        return self.weights

    def set_weights(self, weights: int) -> None:
        self.weights = weights

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights = state["weights"]


@pytest.fixture
def scripted() -> type[ScriptedBackend]:
    return ScriptedBackend


@pytest.fixture
def make_experiment(workdir: Path):
    """write_experiment into the test's working directory: make_experiment(name, **sections)."""

    def make(name: str = "tiny", **sections: Any) -> Path:
        return write_experiment(workdir, name, **sections)

    return make


def run_commands(folder: Path, commands: list[list[str]], **experiments: dict[str, Any]) -> Path:
    """In `folder`: write each experiment (name=sections, see write_experiment), then run each
    `rayfit` command in-process; each must exit 0. For module fixtures that train once."""
    from rayfit.cli import main

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        for name, sections in experiments.items():
            write_experiment(folder, name, **sections)
        for argv in commands:
            assert main(argv) == 0, argv
    return folder


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for a server a test starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
