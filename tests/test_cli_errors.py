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
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rayfit.backends import exported_model
from rayfit.cli import EXIT_BAD_INPUT, main

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
    """Overwrite the paused run's latest checkpoint with garbage bytes (run.json says running)."""
    run = workdir / "runs" / "paused"
    assert json.loads((run / "run.json").read_text())["status"] == "running"
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
    Case("tensorflow_streaming", TRAIN, ["data.streaming", "torch backend only"],
         experiment={"data": {"streaming": True}}, backends=("tensorflow",)),
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
        assert json.loads((folder / "runs" / "paused" / "run.json").read_text())["status"] == "running"
        return folder

    return make


@pytest.mark.parametrize(
    "case, backend", [(c, b) for c in CASES for b in c.backends],
    ids=[c.id + ("" if b == "torch" else f"-{b}") for c in CASES for b in c.backends],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    case: Case, backend: str, workdir: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
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
