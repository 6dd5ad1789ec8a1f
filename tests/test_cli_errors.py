"""Bad inputs to the `rayfit` command: each exits 2 with ONE line on stderr, `error: ...`, naming the
field, file or column at fault and what was expected, and writes nothing (no runs/, no mlflow.db,
no mlruns/, no predictions, no change to an existing run folder).

The cases call `rayfit.cli.main` in-process; one test runs the real command in a subprocess to show
that a bad input prints no traceback unless `--debug` is given.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import sys
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from rayfit.backends import exported_model
from rayfit.cli import COMMANDS, EXIT_BAD_INPUT, EXIT_INTERRUPTED, main

from tests.conftest import write_experiment

# Small CSVs: 20 rows, two numeric features a, b and a two-class target y.
ROWS = [(i, i % 3, i % 2) for i in range(20)]
GOOD_CSV = "a,b,y\n" + "".join(f"{a},{b},{y}\n" for a, b, y in ROWS)
TEXT_CSV = "a,city,y\n" + "".join(f"{a},{['Paris', 'Oslo'][y]},{y}\n" for a, _, y in ROWS)
NAN_CSV = GOOD_CSV.replace("\n4,1,0\n", "\n4,nan,0\n")
ONE_CLASS_CSV = "a,b,y\n" + "".join(f"{a},{b},1\n" for a, b, _ in ROWS)
THREE_CLASS_CSV = "a,b,y\n" + "".join(f"{a},{b},{a % 3}\n" for a, b, _ in ROWS)
CSV_DATA = {"data": {"source": "data.csv", "target": "y"}}


@dataclass
class Case:
    id: str
    argv: list[str]
    expect: list[str]  # substrings of the error line
    experiment: dict[str, Any] | None = None  # sections merged over conftest.TINY -> tiny.yaml
    files: dict[str, str | bytes] = field(default_factory=dict)
    prepared: bool = False  # copy in the trained runs (runs/done finished, runs/paused unfinished)
    setup: Callable[[Path], list[str]] | None = None  # changes the folder, returns more `expect`
    backends: tuple[str, ...] = ("torch",)  # where the backend matters, the case runs on each


BOTH = ("torch", "tensorflow")


TRAIN = ["train", "tiny.yaml"]


def corrupt_latest_checkpoint(workdir: Path) -> list[str]:
    """Overwrite the paused run's latest checkpoint with garbage bytes (run.json says paused)."""
    run = workdir / "runs" / "paused"
    assert json.loads((run / "run.json").read_text())["status"] == "paused"
    latest = json.loads((run / "checkpoints" / "index.json").read_text())["checkpoints"][-1]["file"]
    (run / "checkpoints" / latest).write_bytes(b"\x00\xffnot a checkpoint\x80" * 20)
    return [latest, "checkpoint"]


def stopped_early(workdir: Path) -> list[str]:
    """Make the finished run look early-stopped (run.json's stop reason)."""
    status_file = workdir / "runs" / "done" / "run.json"
    status = json.loads(status_file.read_text())
    status_file.write_text(json.dumps(status | {"stop_reason": "early stopping: val_loss did not improve"}))
    return ["early stopping: val_loss"]


def garbage_run_status(workdir: Path) -> list[str]:
    (workdir / "runs" / "done" / "run.json").write_text('{"status": "finished",')
    return []


def corrupt_model_file(workdir: Path) -> list[str]:
    model = exported_model(workdir / "runs" / "done" / "model")
    model.write_bytes(b"garbage")
    return [model.name]


def paused_index(workdir: Path) -> tuple[Path, list[dict[str, Any]]]:
    """The paused run's index.json and its entries."""
    index = workdir / "runs" / "paused" / "checkpoints" / "index.json"
    return index, json.loads(index.read_text())["checkpoints"]


def index_entry(file: str, last: bool = False) -> Callable[[Path], list[str]]:
    """Add an index entry naming `file` (first, where retention deletes it; or last, the one resumed);
    the project's data.csv is the planted target. {workdir} in `file` is the test's folder."""

    def setup(workdir: Path) -> list[str]:
        index, entries = paused_index(workdir)
        name = file.format(workdir=workdir)
        entry = {"file": name, "epoch": 0, "step": 1, "metric": 0.0}
        index.write_text(json.dumps({"checkpoints": entries + [entry] if last else [entry] + entries}))
        return ["index.json", json.dumps(name)]

    return setup


def make_folder(name: str) -> Callable[[Path], list[str]]:
    """A setup that puts a folder where a file is expected."""

    def setup(workdir: Path) -> list[str]:
        (workdir / name).mkdir()
        return [name]

    return setup


def index_symlink_outside(workdir: Path) -> list[str]:
    """A checkpoint-named symlink in the folder that leads to the project's data.csv."""
    index, entries = paused_index(workdir)
    name = "ckpt-epoch0000-step0000001" + Path(entries[-1]["file"]).suffix
    (index.parent / name).symlink_to(workdir / "data.csv")
    index.write_text(json.dumps({"checkpoints": [{"file": name, "epoch": 0, "step": 1, "metric": 0.0}] + entries}))
    return [name, "leads outside"]


def remove_latest_checkpoint(workdir: Path) -> list[str]:
    """Delete the file of the index's latest entry (the index still names it)."""
    index, entries = paused_index(workdir)
    (index.parent / entries[-1]["file"]).unlink()
    return [entries[-1]["file"]]

def write_file(relative: str, text: str) -> Callable[[Path], list[str]]:
    """Replace a file of the prepared runs with `text`."""

    def setup(workdir: Path) -> list[str]:
        (workdir / relative).write_text(text)
        return []

    return setup


def saved_code(field: str, value: str, **kwargs: Any) -> Callable[[Path], list[str]]:
    """Edit the finished run's model/config.yaml to name code, and plant a hubconf.py beside it
    that would write a file if it ever ran (the snapshot shows it did not)."""

    def setup(workdir: Path) -> list[str]:
        folder = workdir / "runs" / "done" / "model"
        (folder / "hubconf.py").write_text("open('ran.txt', 'w').write('code ran')\ndef build(**kw): pass\n")
        config = yaml.safe_load((folder / "config.yaml").read_text())
        section, key = field.split(".")
        config[section][key] = value
        config["model"]["kwargs"] = {k: str(v).format(folder=folder) for k, v in kwargs.items()}
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
        return []

    return setup


def remove_model_config(workdir: Path) -> list[str]:
    (workdir / "runs" / "done" / "model" / "config.yaml").unlink()
    return []


HUB = {"repo_or_dir": "{folder}", "model": "build", "source": "local"}
PREDICT_DONE = ["predict", "done", "--input", "rows.csv", "--output", "pred.csv"]


DUPLICATE_SECTION = "name: tiny\ntrainer: {epochs: 1}\ndata: {source: sklearn:digits}\ntrainer: {epochs: 50}\n"
DUPLICATE_KEY = "name: tiny\ndata:\n  source: sklearn:digits\n  target: y\n  source: data.csv\n"
ALIAS_BOMB = "name: tiny\ndata: {source: sklearn:digits}\nz0: &z0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"z{i}: &z{i} [{', '.join([f'*z{i - 1}'] * 10)}]\n" for i in range(1, 9)
)  # 10^9 values once expanded
DUPLICATE_COLUMN_CSV = "a,y,b,y\n" + "".join(f"{a},{y},{b},{y}\n" for a, b, y in ROWS)
HUGE_CSV = GOOD_CSV.replace("\n4,1,0\n", "\n4,1e308,0\n").replace("\n6,0,0\n", "\n6,-1e308,0\n")
INF_CSV = GOOD_CSV.replace("\n4,1,0\n", "\n4,inf,0\n")
MLFLOW_ON = {"tracking": {"enabled": True}}


CASES = [
    # ---------------------------------------------------------------- the experiment file
    Case("unknown_key", TRAIN, ["trainer.epoch", "did you mean trainer.epochs?"],
         experiment={"trainer": {"epoch": 1}}),
    Case("unknown_section", TRAIN, ["trainr", "did you mean trainer?"], experiment={"trainr": {}}),
    Case("wrong_type", TRAIN, ["trainer.epochs", "integer", "'many'"],
         experiment={"trainer": {"epochs": "many"}}),
    Case("section_not_a_mapping", TRAIN, ["optimizer", "dictionary"], experiment={"optimizer": 5}),
    Case("negative_lr", TRAIN, ["optimizer.lr", "greater than 0", "-0.1"],
         experiment={"optimizer": {"lr": -0.1}}),
    Case("unknown_optimizer", TRAIN, ["optimizer.name", "'adamw'", "'adamx'"],
         experiment={"optimizer": {"name": "adamx"}}),
    Case("fractions_leave_no_training_rows", TRAIN,
         ["data", "val_fraction + test_fraction must be below 1, got 0.5 + 0.5"],
         experiment={"data": {"val_fraction": 0.5, "test_fraction": 0.5}}),
    Case("missing_data_section", ["train", "bare.yaml"], ["bare.yaml", "data", "required"],
         files={"bare.yaml": "name: bare\nmodel: {type: mlp}\n"}),
    Case("bad_yaml", TRAIN, ["tiny.yaml", "not valid yaml", "expected ',' or '}'", "line 3"],
         files={"tiny.yaml": "name: tiny\ndata: {source: sklearn:digits\ntrainer: [1, 2\n"}),
    Case("bad_json", ["train", "seed.json"], ["seed.json", "not valid json", "line 2"],
         files={"seed.json": '{"algorithm_type": "deep_learning",\n "epochs": 1,,}'}),
    Case("top_level_not_a_mapping", TRAIN, ["tiny.yaml", "mapping"], files={"tiny.yaml": "- 1\n- 2\n"}),
    Case("missing_experiment_file", ["train", "nosuch.yaml"], ["nosuch.yaml", "not found"]),
    Case("set_without_equals", [*TRAIN, "--set", "trainer.epochs"], ["--set", "trainer.epochs", "KEY=VALUE"],
         experiment={}),
    Case("set_unparsable_value", [*TRAIN, "--set", "trainer.epochs=[1"],
         ["--set", "trainer.epochs", "not valid YAML", "expected ',' or ']'"],
         experiment={}),
    Case("set_into_a_value", [*TRAIN, "--set", "optimizer.lr.x=1"], ["--set", "lr", "not a section"],
         experiment={}),
    Case("bad_run_name", [*TRAIN, "--set", "name=../escape"], ["name", "pattern", "'../escape'"],
         experiment={}),
    Case("seed_format_unknown_key", ["train", "seed.json"], ["seed.json", "learning_rat", "learning_rate"],
         files={"data.csv": GOOD_CSV, "seed.json": json.dumps({
             "algorithm_type": "deep_learning", "train_data_path": "data.csv", "target_column": "y",
             "epochs": 1, "learning_rat": 0.01})}),
    Case("seed_format_bad_algorithm", ["train", "seed.json"],
         ["seed.json", "algorithm_type", "deep_learning"],
         files={"data.csv": GOOD_CSV, "seed.json": json.dumps({
             "algorithm_type": "xgboost", "train_data_path": "data.csv", "target_column": "y"})}),
    # ---------------------------------------------------------------- data
    Case("missing_data_file", TRAIN, ["data file", "nosuch.csv", "not found"],
         experiment={"data": {"source": "nosuch.csv"}}),
    Case("unsupported_extension", TRAIN, ["data.txt", "'.txt'", ".csv"],
         experiment={"data": {"source": "data.txt"}}, files={"data.txt": GOOD_CSV}),
    Case("unknown_sklearn_dataset", TRAIN, ["sklearn:mnist", "sklearn:digits"],
         experiment={"data": {"source": "sklearn:mnist"}}),
    Case("empty_file", TRAIN, ["data.csv", "empty"], experiment=CSV_DATA, files={"data.csv": ""}),
    Case("header_only", TRAIN, ["data.csv", "no data rows"], experiment=CSV_DATA,
         files={"data.csv": "a,b,y\n"}),
    Case("missing_target_column", TRAIN, ["'label'", "data.csv", "available columns: a, b, y"],
         experiment={"data": {"source": "data.csv", "target": "label"}}, files={"data.csv": GOOD_CSV}),
    Case("missing_feature_column", TRAIN, ["'c'", "data.csv", "not found"],
         experiment={"data": {"source": "data.csv", "target": "y", "features": ["a", "c"]}},
         files={"data.csv": GOOD_CSV}),
    Case("text_feature_without_policy", TRAIN, ["'city'", "data.csv", "not numeric", "data.categorical"],
         experiment=CSV_DATA, files={"data.csv": TEXT_CSV}),
    Case("nan_in_features", TRAIN, ["'b'", "data.csv", "missing values in rows 5", "data.missing"],
         experiment=CSV_DATA, files={"data.csv": NAN_CSV}),
    Case("one_class_target", TRAIN, ["'y'", "data.csv", "one class", "two"],
         experiment=CSV_DATA, files={"data.csv": ONE_CLASS_CSV}),
    Case("binary_task_three_classes", TRAIN, ["'y'", "3 classes", "binary"],
         experiment={"data": {"source": "data.csv", "target": "y", "task": "binary"}},
         files={"data.csv": THREE_CLASS_CSV}),
    Case("categorical_not_a_feature", TRAIN, ["data.categorical", "'y'"],
         experiment={"data": {"source": "data.csv", "target": "y", "categorical": ["y"]}},
         files={"data.csv": GOOD_CSV}),
    Case("batch_larger_than_data", TRAIN, ["trainer.batch_size", "64", "training rows"],
         experiment=CSV_DATA, files={"data.csv": GOOD_CSV}, backends=BOTH),
    Case("image_shape_mismatch", TRAIN, ["data.image_shape", "[1, 4, 4]", "64"],
         experiment={"model": {"type": "cnn"}, "data": {"image_shape": [1, 4, 4]}}, backends=BOTH),
    # ---------------------------------------------------------------- model, optimizer, schedule
    Case("bad_import_path", TRAIN, ["model.type", "nosuch.module"],
         experiment={"model": {"type": "nosuch.module:fn"}}, backends=BOTH),
    Case("unknown_model", TRAIN, ["model.type", "'transformer'", "mlp"],
         experiment={"model": {"type": "transformer"}}, backends=BOTH),
    Case("fp16_on_cpu", TRAIN, ["trainer.precision", "fp16", "bf16"],
         experiment={"trainer": {"precision": "fp16", "device": "cpu"}}, backends=BOTH),
    Case("nesterov_without_momentum", TRAIN, ["optimizer.nesterov", "optimizer.momentum"],
         experiment={"optimizer": {"name": "sgd", "nesterov": True, "momentum": 0}}, backends=BOTH),
    Case("param_group_unknown_module", TRAIN, ["optimizer.param_groups.0.module", "'encoder'"],
         experiment={"optimizer": {"param_groups": [{"module": "encoder", "lr": 0.01}]}}, backends=BOTH),
    # MLflow on: the store must not be created (no mlflow.db, no mlruns/) before this is found.
    Case("unknown_schedule", TRAIN, ["schedule.name", "'cosin'", "cosine"],
         experiment={"schedule": {"name": "cosin"}, "tracking": {"enabled": True}}),
    Case("unsupported_tracking_uri", TRAIN, ["tracking.uri", "'nosuch://x'", "sqlite:///"],
         experiment={"tracking": {"enabled": True, "uri": "nosuch://x"}}),
    Case("storage_uri_pyarrow_cannot_open", TRAIN, ["scaling.storage_path", "'nosuch://bucket'"],
         experiment={"scaling": {"storage_path": "nosuch://bucket"}}),
    # ---------------------------------------------------------------- run folders and checkpoints
    Case("resume_without_checkpoint", [*TRAIN, "--resume"], ["--resume", "no checkpoint", "tiny"],
         experiment={}),
    Case("changed_config_unfinished_run", ["train", "paused.yaml", "--set", "optimizer.lr=0.01"],
         ["paused", "optimizer.lr", "0.01", "--name NAME", "--new for paused-2"], prepared=True, backends=BOTH),
    Case("corrupt_checkpoint", ["train", "paused.yaml"], ["runs/paused/checkpoints", "not a readable"],
         prepared=True, setup=corrupt_latest_checkpoint, backends=BOTH),
    # ---------------------------------------------------------------- --name, --new, --extend
    Case("name_is_a_path", [*TRAIN, "--name", "../x"], ["name", "pattern", "'../x'"], experiment={}),
    Case("name_empty", [*TRAIN, "--name", ""], ["name", "pattern", "''"], experiment={}),
    Case("new_with_a_bad_config", [*TRAIN, "--new"], ["trainer.epochs", "'many'"],
         experiment={"trainer": {"epochs": "many"}}),
    Case("extend_without_a_run", [*TRAIN, "--set", "trainer.epochs=5", "--extend"],
         ["--extend", "no run 'tiny'", "train it first"], experiment={}),
    Case("extend_changes_another_setting",
         ["train", "done.yaml", "--set", "trainer.epochs=3", "--set", "optimizer.lr=0.5", "--extend"],
         ["--extend changes only trainer.epochs", "optimizer.lr", "0.5", "--new"], prepared=True),
    Case("extend_to_as_many_epochs", ["train", "done.yaml", "--extend"],
         ["--extend", "trainer.epochs=1", "more than the 1 epochs"], prepared=True),
    Case("extend_an_unfinished_run", ["train", "paused.yaml", "--set", "trainer.epochs=4", "--extend"],
         ["--extend", "'paused' is not finished", "without --extend"], prepared=True),
    Case("extend_an_early_stopped_run", ["train", "done.yaml", "--set", "trainer.epochs=3", "--extend"],
         ["--extend", "stopped early", "--new"], prepared=True, setup=stopped_early),
    # ---------------------------------------------------------------- rayfit runs
    Case("runs_show_unknown", ["runs", "show", "nosuch"], ["nosuch", "no run of that name", "done, paused"],
         prepared=True),
    Case("runs_show_a_path", ["runs", "show", "../done"], ["'../done'", "expected letters"], prepared=True),
    Case("runs_show_garbage_status", ["runs", "show", "done"], ["runs/done/run.json", "unreadable"],
         prepared=True, setup=garbage_run_status),
    Case("runs_compare_unknown", ["runs", "compare", "done", "nosuch"], ["nosuch", "no run"], prepared=True),
    Case("runs_missing_storage", ["runs", "--storage", "nosuch"], ["--storage nosuch", "no such folder"]),
    Case("evaluate_untrained_experiment", ["evaluate", "tiny.yaml"],
         ["tiny.yaml", "no exported model", "rayfit train tiny.yaml"], experiment={}),
    # ---------------------------------------------------------------- predict and evaluate
    Case("predict_output_exists", ["predict", "done", "--input", "rows.csv", "--output", "out.csv"],
         ["--output", "out.csv", "exists"], prepared=True,
         files={"rows.csv": "pixel_0_0\n0\n", "out.csv": "keep me\n"}),
    Case("predict_unknown_run", ["predict", "nosuch", "--input", "rows.csv", "--output", "pred.csv"],
         ["nosuch", "no finished run", "model.pt"], files={"rows.csv": "a\n1\n"}),
    Case("predict_unfinished_run", ["predict", "paused", "--input", "rows.csv", "--output", "pred.csv"],
         ["paused", "no finished run"], prepared=True, files={"rows.csv": "a\n1\n"}, backends=BOTH),
    Case("evaluate_unknown_run", ["evaluate", "nosuch"], ["nosuch", "no finished run"]),
    Case("evaluate_corrupt_model", ["evaluate", "done"], ["not a readable"], prepared=True,
         setup=corrupt_model_file, backends=BOTH),
    Case("predict_missing_input", ["predict", "done", "--input", "rows.csv", "--output", "pred.csv"],
         ["rows.csv", "not found"], prepared=True),
    Case("predict_input_missing_column", ["predict", "done", "--input", "rows.csv", "--output", "pred.csv"],
         ["'pixel_0_1'", "rows.csv", "not found"], prepared=True, files={"rows.csv": "pixel_0_0\n0\n"}, backends=BOTH),
    # ---------------------------------------------------------------- untrusted run folders
    Case("index_entry_climbs_out", ["train", "paused.yaml"], ["refused entry", "checkpoint file name"],
         prepared=True, files={"data.csv": GOOD_CSV}, setup=index_entry("../../../data.csv")),
    Case("index_entry_absolute", ["train", "paused.yaml"], ["refused entry", "checkpoint file name"],
         prepared=True, files={"data.csv": GOOD_CSV}, setup=index_entry("{workdir}/data.csv")),
    Case("index_latest_outside", ["train", "paused.yaml"], ["refused entry"],
         prepared=True, files={"data.csv": GOOD_CSV}, setup=index_entry("../../done/model/model.pt", last=True)),
    Case("index_entry_with_separator", ["train", "paused.yaml"], ["refused entry"], prepared=True,
         setup=index_entry("sub/ckpt-epoch0000-step0000001.pt")),
    Case("index_symlink_outside", ["train", "paused.yaml"], ["refused entry"],
         prepared=True, files={"data.csv": GOOD_CSV}, setup=index_symlink_outside, backends=BOTH),
    Case("index_not_json", ["train", "paused.yaml"], ["index.json", "not a checkpoint index"],
         prepared=True, setup=write_file("runs/paused/checkpoints/index.json", "{garbage")),
    Case("index_not_a_list", ["train", "paused.yaml"], ["index.json", "'checkpoints' is not a list"],
         prepared=True, setup=write_file("runs/paused/checkpoints/index.json", '{"checkpoints": {"a": 1}}')),
    Case("index_entry_name_disagrees", ["train", "paused.yaml"], ["refused entry", "do not match the file name"],
         prepared=True, setup=index_entry("ckpt-epoch0005-step0000001.pt")),
    Case("run_json_garbage", ["train", "paused.yaml"], ["run.json", "unreadable run status"], prepared=True,
         setup=write_file("runs/paused/run.json", "\x00{not json")),
    Case("run_json_not_a_mapping", ["train", "paused.yaml"], ["run.json", "expected a JSON object"], prepared=True,
         setup=write_file("runs/paused/run.json", "[1, 2]")),
    Case("run_config_not_a_mapping", ["train", "paused.yaml"], ["runs/paused/config.yaml", "mapping"],
         prepared=True, setup=write_file("runs/paused/config.yaml", "- 1\n")),
    Case("index_latest_file_missing", ["train", "paused.yaml"], ["runs/paused/checkpoints"], prepared=True,
         setup=remove_latest_checkpoint, backends=BOTH),
    # ---------------------------------------------------------------- model folders that name code
    Case("predict_saved_model_runs_code", PREDICT_DONE, ["model/config.yaml", "model.type", "'torch.hub:load'",
         "--trust-code"], prepared=True, files={"rows.csv": "pixel_0_0\n0\n"},
         setup=saved_code("model.type", "torch.hub:load", **HUB)),
    Case("evaluate_saved_model_runs_code", ["evaluate", "done"], ["model.type", "'torch.hub:load'", "--trust-code"],
         prepared=True, setup=saved_code("model.type", "torch.hub:load", **HUB), backends=BOTH),
    Case("evaluate_saved_schedule_names_code", ["evaluate", "done"], ["schedule.name", "'os:system'", "--trust-code"],
         prepared=True, setup=saved_code("schedule.name", "os:system")),
    Case("predict_data_info_garbage", PREDICT_DONE, ["data_info.json", "not the data encoding"], prepared=True,
         files={"rows.csv": "pixel_0_0\n0\n"}, setup=write_file("runs/done/model/data_info.json", "[1]")),
    Case("evaluate_data_info_truncated", ["evaluate", "done"], ["data_info.json", "not the data encoding"],
         prepared=True, setup=write_file("runs/done/model/data_info.json", '{"task": "multi')),
    Case("predict_model_config_missing", PREDICT_DONE, ["runs/done/model/config.yaml", "missing"], prepared=True,
         files={"rows.csv": "pixel_0_0\n0\n"}, setup=remove_model_config, backends=BOTH),
    Case("evaluate_model_config_missing", ["evaluate", "done"], ["runs/done/model/config.yaml", "missing"],
         prepared=True, setup=remove_model_config),
    Case("predict_model_config_garbage", PREDICT_DONE, ["runs/done/model/config.yaml", "not valid"], prepared=True,
         files={"rows.csv": "pixel_0_0\n0\n"}, setup=write_file("runs/done/model/config.yaml", "model: [\n")),
    Case("index_entry_not_a_mapping", ["train", "paused.yaml"], ["refused entry 5", "expected keys"],
         prepared=True, setup=write_file("runs/paused/checkpoints/index.json", '{"checkpoints": [5]}')),
    Case("index_metric_not_a_number", ["train", "paused.yaml"], ["refused entry", "metric is not a number"],
         prepared=True, setup=write_file("runs/paused/checkpoints/index.json", json.dumps({"checkpoints": [
             {"file": "ckpt-epoch0001-step0000010.pt", "epoch": 1, "step": 10, "metric": "rm -rf"}]}))),
    # ---------------------------------------------------------------- user code that fails
    Case("model_module_raises", TRAIN, ["model.type", "'raises_on_import'", "RuntimeError: boom"],
         experiment={"model": {"type": "raises_on_import:build"}},
         files={"raises_on_import.py": "raise RuntimeError('boom')\n"}, backends=BOTH),
    Case("model_module_syntax_error", TRAIN, ["model.type", "'bad_syntax'", "SyntaxError", "line 1"],
         experiment={"model": {"type": "bad_syntax:build"}}, files={"bad_syntax.py": "def build(:\n"}),
    Case("model_wrong_arguments", TRAIN, ["model.type", "takes_width:build(n_inputs=..., n_outputs=...)",
         "TypeError", "'n_inputs'"], experiment={"model": {"type": "takes_width:build"}},
         files={"takes_width.py": "def build(width):\n    return width\n"}, backends=BOTH),
    Case("model_returns_not_a_model", TRAIN, ["model.type", "returns_int:build returned int"],
         experiment={"model": {"type": "returns_int:build"}},
         files={"returns_int.py": "def build(**kw):\n    return 3\n"}, backends=BOTH),
    Case("model_not_callable", TRAIN, ["model.type", "not_callable:build", "not a function"],
         experiment={"model": {"type": "not_callable:build"}}, files={"not_callable.py": "build = 5\n"}),
    Case("model_raises_when_built", TRAIN, ["model.type", "build_fails:build(n_inputs=..., n_outputs=..., size)",
         "ValueError: size must be even"], experiment={"model": {"type": "build_fails:build", "kwargs": {"size": 3}}},
         files={"build_fails.py": "def build(n_inputs, n_outputs, size):\n    raise ValueError('size must be even')\n"}),
    Case("model_fails_on_its_first_call", TRAIN,
         ["model.type", "the model of first_call:build on a batch of shape (1, 64) failed", "ValueError"],
         experiment={"model": {"type": "first_call:build"}}, backends=("tensorflow",),
         files={"first_call.py": "import keras\n\nclass Net(keras.Model):\n    def call(self, x):\n"
                "        raise ValueError('wrong width')\n\ndef build(n_inputs, n_outputs):\n    return Net()\n"}),
    Case("schedule_module_raises", TRAIN, ["schedule.name", "'sched_raises'", "ZeroDivisionError"],
         experiment={"schedule": {"name": "sched_raises:lr"}}, files={"sched_raises.py": "1 / 0\n"}),
    # ---------------------------------------------------------------- parsing that hides mistakes (#9)
    Case("duplicate_section", TRAIN, ["tiny.yaml", "not valid yaml", "duplicate key 'trainer' (first at line 2)",
                                      "line 4, column 1"], files={"tiny.yaml": DUPLICATE_SECTION}),
    Case("duplicate_key_in_a_section", TRAIN, ["tiny.yaml", "duplicate key 'source' (first at line 3)", "line 5"],
         files={"tiny.yaml": DUPLICATE_KEY}),
    Case("duplicate_key_json", ["train", "seed.json"], ["seed.json", "not valid json", "duplicate key 'epochs'"],
         files={"data.csv": GOOD_CSV, "seed.json": '{"algorithm_type": "deep_learning", "epochs": 1, '
                '"train_data_path": "data.csv", "target_column": "y", "epochs": 500}'}),
    Case("alias_bomb", TRAIN, ["tiny.yaml", "aliases expand to more than 100000 values"],
         files={"tiny.yaml": ALIAS_BOMB}),
    Case("alias_bomb_in_set", [*TRAIN, "--set", "model.kwargs={a: &a [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1], "
                                                "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], "
                                                "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b,*b,*b,*b,*b,*b,*b,*b,*b,*b,*b], "
                                                "d: [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]}"],
         ["--set", "model.kwargs", "more than 100000 values"], experiment={}),
    Case("duplicate_csv_column", TRAIN, ["column 'y' appears twice", "data.csv", "columns 2 and 4"],
         experiment=CSV_DATA, files={"data.csv": DUPLICATE_COLUMN_CSV}),
    Case("duplicate_val_csv_column", TRAIN, ["column 'y' appears twice", "val.csv"],
         experiment={"data": {"source": "data.csv", "target": "y", "val_source": "val.csv"}},
         files={"data.csv": GOOD_CSV, "val.csv": DUPLICATE_COLUMN_CSV}),
    # ---------------------------------------------------------------- paths users really have (#9)
    Case("experiment_not_utf8", TRAIN, ["tiny.yaml", "not UTF-8", "line 1, byte 8", "save the experiment file as UTF-8"],
         files={"tiny.yaml": "name: t\xe9st\ndata: {source: sklearn:digits}\n".encode("latin-1")}),
    Case("experiment_is_a_folder", ["train", "exp.yaml"], ["is a folder", "experiment file"],
         setup=make_folder("exp.yaml")),
    Case("data_file_is_a_folder", TRAIN, ["data file", "is a folder", "expected a .csv file"],
         experiment=CSV_DATA, setup=make_folder("data.csv")),
    Case("data_file_not_utf8", TRAIN, ["data.csv", "not a readable CSV"], experiment=CSV_DATA,
         files={"data.csv": "a,b,y\n1,\xe9t\xe9,0\n".encode("utf-16")}),
    Case("predict_output_folder_missing", ["predict", "done", "--input", "rows.csv", "--output", "nosuch/pred.csv"],
         ["--output", "nosuch/pred.csv", "the folder nosuch does not exist"], prepared=True,
         files={"rows.csv": "pixel_0_0\n0\n"}),
    Case("predict_input_is_a_folder", ["predict", "done", "--input", "rows.csv", "--output", "pred.csv"],
         ["rows.csv", "is a folder"], prepared=True, setup=make_folder("rows.csv")),
    # ---------------------------------------------------------------- errors found late (#9): MLflow on
    Case("early_stopping_monitor_never_reported", TRAIN,
         ["early_stopping.monitor", "'val_acc'", "did you mean 'val_accuracy'?", "it reports epoch"],
         experiment={**MLFLOW_ON, "early_stopping": {"enabled": True, "monitor": "val_acc"}}, backends=BOTH),
    Case("checkpoint_monitor_never_reported", TRAIN, ["checkpoint.monitor", "'val_los'", "did you mean 'val_loss'?"],
         experiment={**MLFLOW_ON, "checkpoint": {"monitor": "val_los"}}, backends=BOTH),
    Case("plateau_monitor_never_reported", TRAIN, ["schedule.monitor", "'loss'", "did you mean 'val_loss'?"],
         experiment={**MLFLOW_ON, "schedule": {"name": "plateau", "monitor": "loss"}}),
    Case("monitor_of_a_split_that_is_not_there", TRAIN,
         ["early_stopping.monitor", "'val_loss'", "did you mean 'train_loss'?"],
         experiment={**MLFLOW_ON, "data": {"val_fraction": 0.0}, "early_stopping": {"enabled": True}}),
    Case("regression_monitor_on_classification", TRAIN, ["checkpoint.monitor", "'val_r2'", "val_accuracy"],
         experiment={**MLFLOW_ON, "checkpoint": {"monitor": "val_r2"}}),
    Case("schedule_fails_at_first_call", TRAIN,
         ["schedule.name", "'math:sqrt'", "fails at its first position", "TypeError"],
         experiment={**MLFLOW_ON, "schedule": {"name": "math:sqrt"}}),
    Case("accumulate_beyond_an_epoch", TRAIN, ["trainer.accumulate", "21", "only 20 batch(es)", "at most 20"],
         experiment={**MLFLOW_ON, "trainer": {"accumulate": 21}}, backends=BOTH),
    # ---------------------------------------------------------------- values that mean nothing (#9)
    Case("epochs_true", TRAIN, ["trainer.epochs", "expected a number, not true/false"],
         experiment={"trainer": {"epochs": True}}),
    Case("set_epochs_true", [*TRAIN, "--set", "trainer.epochs=true"], ["trainer.epochs", "not true/false"],
         experiment={}),
    Case("hidden_units_true", TRAIN, ["model.hidden_units", "not true/false"],
         experiment={"model": {"hidden_units": [True, 8]}}),
    Case("layer_width_0", TRAIN, ["model.hidden_units.1", "greater than 0", "got 0"],
         experiment={"model": {"hidden_units": [32, 0]}}),
    Case("cnn_channels_0", TRAIN, ["model.channels.0", "greater than 0"],
         experiment={"model": {"type": "cnn", "channels": [0, 8]}}),
    Case("image_shape_0", TRAIN, ["data.image_shape.0", "greater than 0"],
         experiment={"data": {"image_shape": [0, 8, 8]}}),
    Case("momentum_50", TRAIN, ["optimizer.momentum", "less than 1", "50"],
         experiment={"optimizer": {"name": "sgd", "momentum": 50}}),
    Case("beta_1", TRAIN, ["optimizer.betas.1", "less than 1"], experiment={"optimizer": {"betas": [0.9, 1.0]}}),
    Case("infinite_lr", TRAIN, ["optimizer.lr", "finite number", "inf"],
         experiment={"optimizer": {"lr": float("inf")}}),
    Case("set_infinite_lr", [*TRAIN, "--set", "optimizer.lr=.inf"], ["optimizer.lr", "finite number"],
         experiment={}),
    Case("nan_weight_decay", TRAIN, ["optimizer.weight_decay", "finite number", "nan"],
         experiment={"optimizer": {"weight_decay": float("nan")}}),
    Case("infinite_clip_norm", TRAIN, ["trainer.grad_clip_norm", "finite number"],
         experiment={"trainer": {"grad_clip_norm": float("inf")}}),
    Case("huge_feature_values", TRAIN, ["column 'b'", "data.csv", "as large as 1e+308", "cannot be standardized"],
         experiment=CSV_DATA, files={"data.csv": HUGE_CSV}),
    Case("infinite_feature_unscaled", TRAIN, ["column 'b'", "row 5", "infinite or too large", "float32"],
         experiment={"data": {"source": "data.csv", "target": "y", "standardize": False}},
         files={"data.csv": INF_CSV}),
]


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under folder: file bytes, or None for a folder."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """For a backend: a folder with runs/done (finished, 1 epoch) and runs/paused (stopped by
    SIGTERM in epoch 2, so run.json says running), both on digits with MLflow off, plus their
    experiment files. Made once per backend, on first use."""
    from rayfit import Trainer

    folders: dict[str, Path] = {}

    def make(backend: str) -> Path:
        if backend in folders:
            return folders[backend]
        folder = folders[backend] = tmp_path_factory.mktemp(f"trained-{backend}")
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(folder)
            write_experiment(folder, "done", backend=backend, trainer={"epochs": 1, "progress": "none"})
            assert main(["train", "done.yaml"]) == 0
            write_experiment(folder, "paused", backend=backend, trainer={"epochs": 2, "progress": "none"})
            trainer = Trainer("paused.yaml")
            trainer.register_progress_callback(lambda epoch, metrics: os.kill(os.getpid(), signal.SIGTERM))
            assert trainer.fit().interrupted
        assert json.loads((folder / "runs" / "paused" / "run.json").read_text())["status"] == "paused"
        return folder

    return make


@pytest.mark.parametrize(
    "case, backend", [(c, b) for c in CASES for b in c.backends],
    ids=[c.id + ("" if b == "torch" else f"-{b}") for c in CASES for b in c.backends],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    case: Case, backend: str, workdir: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(workdir))  # user modules import from the project, as with python -m rayfit.cli
    if case.prepared:
        shutil.copytree(request.getfixturevalue("trained")(backend), workdir, dirs_exist_ok=True)
    if case.experiment is not None:
        write_experiment(workdir, "tiny", backend=backend, **case.experiment)
    for name, content in case.files.items():
        if isinstance(content, bytes):
            (workdir / name).write_bytes(content)
        else:
            (workdir / name).write_text(content)
    expect = case.expect + (case.setup(workdir) if case.setup else [])
    before = snapshot(workdir)
    capsys.readouterr()

    code = main(case.argv)

    out, err = capsys.readouterr()
    assert code == EXIT_BAD_INPUT, (out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and len(lines[0]) > len("error: "), err
    for text in expect:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    assert out == ""
    after = snapshot(workdir)
    assert sorted(after.keys() - before.keys()) == [], "created"
    assert sorted(before.keys() - after.keys()) == [], "removed"
    assert [k for k in before if before[k] != after[k]] == [], "changed"


def test_command_shows_no_traceback_unless_debug(tmp_path: Path) -> None:
    """The installed command, run as a user runs it: one line without --debug, a traceback with it."""
    (tmp_path / "tiny.yaml").write_text("name: tiny\ndata: {source: sklearn:digits}\noptimizer: {lr: -1}\n")
    command = [sys.executable, "-m", "rayfit.cli"]
    runs = {
        debug: subprocess.Popen(
            [*command, *(["--debug"] if debug else []), "train", "tiny.yaml"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for debug in (False, True)
    }  # both at once: each spends most of its time importing torch, mlflow and ray
    (_, plain_err), (_, debug_err) = (runs[d].communicate(timeout=120) for d in (False, True))

    assert runs[False].returncode == EXIT_BAD_INPUT
    assert "Traceback" not in plain_err
    expected = "error: tiny.yaml: optimizer.lr: Input should be greater than 0, got -1"
    assert plain_err.splitlines() == [expected]
    assert runs[True].returncode != 0
    assert "Traceback (most recent call last)" in debug_err
    assert "ConfigError: tiny.yaml: optimizer.lr" in debug_err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]


@pytest.fixture
def ctrl_c_handlers() -> Iterator[None]:
    """Put back what `main` changes for Ctrl-C: its SIGINT handler (a second Ctrl-C exits the
    process) and its unraisable hook; meanwhile Ctrl-C raises KeyboardInterrupt, even when pytest
    runs as a background job, which ignores SIGINT."""
    handler, hook = signal.getsignal(signal.SIGINT), sys.unraisablehook
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, handler)
    sys.unraisablehook = hook


@pytest.mark.parametrize("debug", [False, True])
def test_ctrl_c_inside_a_compiled_import_is_an_interrupt(
    debug: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ctrl_c_handlers: None
) -> None:
    """pybind11 turns a Ctrl-C during a compiled module's import (scipy's, under sklearn) into
    ImportError("initialization failed") from the KeyboardInterrupt: still `interrupted`, 130. An
    ImportError of its own stays a bug with its traceback."""
    def interrupted_import(args: Any) -> int:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise ImportError("initialization failed") from exc

    def broken_import(args: Any) -> int:
        raise ImportError("No module named 'sklearn'")

    monkeypatch.setitem(COMMANDS, "train", interrupted_import)
    if debug:
        with pytest.raises(ImportError, match="initialization failed"):
            main(["--debug", "train", "tiny.yaml"])
    else:
        assert main(["train", "tiny.yaml"]) == EXIT_INTERRUPTED
        assert capsys.readouterr().err == "interrupted\n"
    monkeypatch.setitem(COMMANDS, "train", broken_import)
    with pytest.raises(ImportError, match="sklearn"):
        main(["train", "tiny.yaml"])


def test_ctrl_c_dropped_in_a_weakref_callback_still_stops_the_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ctrl_c_handlers: None
) -> None:
    """A Ctrl-C that lands in importlib's module-lock callback is printed and dropped by Python
    ("Exception ignored in"); the command raises it again and stops as interrupted, not trains on."""
    def dropped_ctrl_c(args: Any) -> int:
        class ModuleLock:
            pass

        def callback(_: object) -> None:
            raise KeyboardInterrupt  # where the signal's KeyboardInterrupt is raised

        lock = ModuleLock()
        ref = weakref.ref(lock, callback)
        del lock, ref
        for _ in range(200):  # the training that would follow, 2 s
            time.sleep(0.01)
        return 0

    monkeypatch.setitem(COMMANDS, "train", dropped_ctrl_c)
    assert main(["train", "tiny.yaml"]) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "interrupted\n"


@pytest.mark.slow
@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_before_the_loop_prints_one_line_and_writes_nothing(tmp_path: Path, presses: int) -> None:
    """Ctrl-C (once, or twice in quick succession) while `rayfit train` imports and loads data:
    `interrupted`, exit 130, and the folder holds only what it held (no run, no mlflow.db)."""
    write_experiment(tmp_path, "tiny", tracking={"enabled": True})
    before = snapshot(tmp_path)
    run = subprocess.Popen([sys.executable, "-m", "rayfit.cli", "train", "tiny.yaml"], cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           # as from a terminal: a shell's background job (pytest run with &) ignores SIGINT
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(1.0)  # inside the imports of torch and MLflow, which take several seconds
    for _ in range(presses):
        run.send_signal(signal.SIGINT)
        time.sleep(0.3)
    out, err = run.communicate(timeout=60)

    # Ended by the signal, a shell reports 130 too. That happens when a second Ctrl-C lands in the
    # interpreter's last moments, after Python has put the default handler back, and when the one
    # Ctrl-C left an extension's PyRun_String at import: CPython then ends a `python -m` by SIGINT.
    assert run.returncode in (130, -signal.SIGINT), err
    assert err.splitlines() == ["interrupted"]
    assert out == ""
    assert snapshot(tmp_path) == before
