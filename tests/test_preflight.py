"""Checks made when a session is built, before anything is written: monitor names against the
metrics the run reports, schedules at their first position, the model on two rows, accumulate
against the batches of an epoch. None of them may change weights or RNG state."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pytest
import torch

from rayfit import Trainer
from rayfit.config import load_experiment
from rayfit.errors import ConfigError
from rayfit.preflight import reported_metrics
from rayfit.run_folder import RunFolder
from rayfit.session import Session

from tests.conftest import write_experiment


def session_for(folder: Path, device: torch.device | None = None, **sections) -> Session:
    cfg = load_experiment(write_experiment(folder, "tiny", **sections))
    return Session(cfg, RunFolder.for_config(cfg), device=device)


def user_module(folder: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> str:
    """Write `source` as a module importable from `folder` under a fresh name; returns the name."""
    name = f"user_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(folder))
    return name


@pytest.mark.parametrize("data", [{"source": "sklearn:digits"}, {"source": "sklearn:diabetes"}],
                         ids=["classification", "regression"])
def test_reported_metrics_are_those_of_a_real_epoch(workdir: Path, data: dict) -> None:
    result = Trainer(write_experiment(workdir, "real", data=data, trainer={"epochs": 1})).fit()
    session = session_for(workdir, data=data)
    assert reported_metrics(session) == sorted(result.history[0])


@pytest.mark.parametrize("sections, field, hint", [
    ({"early_stopping": {"enabled": True, "monitor": "val_acc"}}, "early_stopping.monitor", "val_accuracy"),
    ({"schedule": {"name": "plateau", "monitor": "valloss"}}, "schedule.monitor", "val_loss"),
    ({"checkpoint": {"monitor": "val_accuracyy"}}, "checkpoint.monitor", "val_accuracy"),
])
def test_a_monitor_the_run_never_reports_is_refused(workdir: Path, sections: dict, field: str, hint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        session_for(workdir, **sections)
    message = str(caught.value)
    assert message.startswith(f"{field}: ")
    assert f"did you mean {hint!r}?" in message
    assert "it reports epoch, epoch_time_s, learning_rate" in message


def test_val_metrics_are_not_offered_without_a_validation_split(workdir: Path) -> None:
    with pytest.raises(ConfigError, match="early_stopping.monitor: 'val_loss'.*did you mean 'train_loss'"):
        session_for(workdir, data={"val_fraction": 0.0},
                    early_stopping={"enabled": True, "monitor": "val_loss"})
    session_for(workdir, data={"val_fraction": 0.0})  # the default checkpoint monitor is fine


def test_accumulate_beyond_an_epoch_is_refused(workdir: Path) -> None:
    # digits: 1257 training rows in batches of 64 -> 20 batches
    with pytest.raises(ConfigError, match=r"^trainer.accumulate: 21 .* only 20 batch\(es\) of 64; set it to at most 20$"):
        session_for(workdir, trainer={"accumulate": 21})
    session_for(workdir, trainer={"accumulate": 20})


def test_a_schedule_that_fails_at_its_first_position_is_refused(workdir: Path, monkeypatch) -> None:
    name = user_module(workdir, monkeypatch, """
        def boom(t, base_lr, history):
            return {"lr": base_lr}[history[-1]]
        def nan(t, base_lr, history):
            return float("nan")
    """)
    with pytest.raises(ConfigError, match=f"^schedule.name: '{name}:boom' fails at its first position: IndexError"):
        session_for(workdir, schedule={"name": f"{name}:boom"})
    with pytest.raises(ConfigError, match=f"'{name}:nan' gives learning rate nan .* finite number >= 0"):
        session_for(workdir, schedule={"name": f"{name}:nan"})


def test_a_model_that_cannot_take_the_rows_is_refused(workdir: Path, monkeypatch) -> None:
    name = user_module(workdir, monkeypatch, """
        import torch.nn as nn
        def too_wide(n_inputs, n_outputs):
            return nn.Linear(n_inputs + 1, n_outputs)
        def three_outputs(n_inputs, n_outputs):
            return nn.Linear(n_inputs, 3)
    """)
    with pytest.raises(ConfigError) as caught:
        session_for(workdir, model={"type": f"{name}:too_wide"})
    assert str(caught.value).startswith(
        f"model.type: '{name}:too_wide' fails on a batch of 2 rows with 64 inputs: RuntimeError: ")
    with pytest.raises(ConfigError, match=r"returns outputs of shape \(2, 3\) for 2 rows; expected 10 outputs"):
        session_for(workdir, model={"type": f"{name}:three_outputs"})
    # on the driver's meta device nothing runs, so nothing fails
    session_for(workdir, device=torch.device("meta"), model={"type": f"{name}:too_wide"})


def test_the_forward_changes_no_rng_state_and_no_weights(workdir: Path, monkeypatch) -> None:
    """A model that draws random numbers even in eval mode: the check puts torch's RNG back."""
    name = user_module(workdir, monkeypatch, """
        import torch
        import torch.nn as nn
        class Noisy(nn.Module):
            def __init__(self, n_inputs, n_outputs):
                super().__init__()
                self.linear = nn.Linear(n_inputs, n_outputs)
            def forward(self, x):
                return self.linear(x + torch.rand_like(x))
        def build(n_inputs, n_outputs):
            return Noisy(n_inputs, n_outputs)
    """)
    session = session_for(workdir, model={"type": f"{name}:build"})
    from rayfit import preflight

    rng, weights = torch.random.get_rng_state(), session.backend.get_weights()
    preflight.check(session)
    assert torch.equal(torch.random.get_rng_state(), rng)
    after = session.backend.get_weights()
    assert all(torch.equal(after[k], weights[k]) for k in weights)
    assert session.backend.model.training  # put back in train mode
