"""Experiment files: defaults, dotted overrides (typed by YAML), suggestions for unknown keys."""

from __future__ import annotations

import dataclasses
import os

import pytest

from rayfit.backends.registry import BACKENDS
from rayfit.config import ScalingConfig, load_experiment
from rayfit.errors import ConfigError


def test_overrides_are_typed_and_create_sections(make_experiment):
    cfg = load_experiment(
        make_experiment(),
        ["trainer.epochs=7", "model.hidden_units=[8, 4]", "early_stopping.enabled=true",
         "optimizer.lr=1e-2", "schedule.name=cosine", "name=other", "trainer.precision=32"],
    )
    assert cfg.trainer.epochs == 7 and cfg.model.hidden_units == [8, 4]
    assert cfg.early_stopping.enabled is True and cfg.optimizer.lr == 0.01
    assert cfg.schedule.name == "cosine" and cfg.name == "other"
    assert cfg.trainer.precision == "32"  # YAML reads 32 as an int
    assert cfg.data.source == "sklearn:digits"  # untouched keys keep the file's values
    assert cfg.flat()["trainer.epochs"] == 7


def test_name_defaults_to_the_file_stem(workdir):
    (workdir / "my_exp.yaml").write_text("data: {source: 'sklearn:iris'}\n")
    cfg = load_experiment(workdir / "my_exp.yaml")
    assert cfg.name == "my_exp" and cfg.optimizer.name == "adam" and cfg.scaling.num_workers == "auto"


@pytest.mark.parametrize(
    "scaling, env, workers",
    [
        ({}, {}, 0),  # a laptop: in this process
        ({}, {"RAY_ADDRESS": "ray://head:10001"}, 1),  # under `ray job submit`: Ray Train
        ({"address": "127.0.0.1:6379"}, {}, 1),
        ({"use_gpu": True}, {}, 1),
        ({"num_workers": 1}, {}, 1),  # an explicit count is kept
    ],
)
def test_auto_workers_use_ray_train_only_when_there_is_a_cluster_or_gpu(scaling, env, workers, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    resolved = ScalingConfig(**scaling).resolved()
    assert resolved.num_workers == workers and resolved.distributed == (workers > 0)


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.epocs=3", "unknown key trainer.epocs; did you mean trainer.epochs?"),
        ("optimzer.lr=1", "unknown key optimzer; did you mean optimizer?"),
        ("trainer.batch_size=many", "trainer.batch_size: Input should be a valid integer"),
        ("optimizer.lr=-0.1", "optimizer.lr: Input should be greater than 0, got -0.1"),
        ("backend=jax", "backend: Input should be 'torch' or 'tensorflow', got 'jax'"),
        # values that mean nothing (#9)
        ("trainer.epochs=true", "trainer.epochs: expected a number, not true/false, got True"),
        ("trainer.seed=false", "trainer.seed: expected a number, not true/false, got False"),
        ("scaling.num_workers=[true, 2]", "scaling.num_workers: expected a number, not true/false, got [True, 2]"),
        ("optimizer.lr=.inf", "optimizer.lr: Input should be a finite number, got inf"),
        ("early_stopping.baseline=.nan", "early_stopping.baseline: Input should be a finite number, got nan"),
        ("optimizer.momentum=50", "optimizer.momentum: Input should be less than 1, got 50"),
        ("optimizer.betas=[0.9, 1.0]", "optimizer.betas.1: Input should be less than 1, got 1.0"),
        ("model.hidden_units=[64, 0]", "model.hidden_units.1: Input should be greater than 0, got 0"),
        # Ray cannot place a worker that asks for nothing; it said so only after 3 restarts
        ("scaling.resources_per_worker={CPU: 0}",
         "scaling.resources_per_worker: expected at least one resource above 0, for example {CPU: 0.5}"),
        ("scaling.resources_per_worker={CPU: -1}", "scaling.resources_per_worker: expected amounts of 0 or more"),
    ],
)
def test_errors_name_the_field(make_experiment, override, message):
    with pytest.raises(ConfigError) as caught:
        load_experiment(make_experiment(), [override])
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_backend_by_override_and_what_it_cannot_do(make_experiment):
    assert load_experiment(make_experiment()).backend == "torch"
    assert load_experiment(make_experiment(), ["backend=tensorflow"]).backend == "tensorflow"
    assert load_experiment(make_experiment(), ["backend=tensorflow", "scaling.num_workers=2"]).scaling.num_workers == 2
    assert load_experiment(make_experiment(), ["backend=tensorflow", "data.streaming=true"]).data.streaming


def test_a_backend_the_registry_marks_as_not_streaming_is_refused_streamed_data(make_experiment, monkeypatch):
    monkeypatch.setitem(BACKENDS, "tensorflow", dataclasses.replace(BACKENDS["tensorflow"], streams=False))
    with pytest.raises(ConfigError, match=r"data.streaming: streams rows to the torch backend only"):
        load_experiment(make_experiment(), ["backend=tensorflow", "data.streaming=true"])



def test_true_false_stays_fine_where_a_field_takes_it(make_experiment):
    cfg = load_experiment(make_experiment(), ["data.standardize=false", "model.kwargs={flag: true}",
                                              "optimizer.momentum=0.9"])
    assert cfg.data.standardize is False and cfg.model.kwargs == {"flag": True} and cfg.optimizer.momentum == 0.9


def test_a_duplicated_section_is_refused_with_its_line(workdir):
    (workdir / "dup.yaml").write_text("data: {source: a.csv}\ntrainer: {epochs: 1}\ntrainer: {epochs: 9}\n")
    with pytest.raises(ConfigError) as caught:
        load_experiment(workdir / "dup.yaml")
    assert str(caught.value) == (f"{workdir / 'dup.yaml'}: not valid yaml: duplicate key 'trainer' (first at "
                                 "line 2); YAML would keep only the last at line 3, column 1")


def test_a_non_utf8_file_names_line_and_byte(workdir):
    (workdir / "latin.yaml").write_bytes("data: {source: a.csv}\nname: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin.yaml: not UTF-8 text \(line 2, byte 32\)"):
        load_experiment(workdir / "latin.yaml")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_an_unreadable_experiment_file_is_named(workdir):
    (workdir / "locked.yaml").write_text("data: {source: a.csv}\n")
    (workdir / "locked.yaml").chmod(0)
    with pytest.raises(ConfigError, match=r"locked.yaml: cannot read the experiment file \(Permission denied\)$"):
        load_experiment(workdir / "locked.yaml")
