"""The command line a new user expects: --version, help with examples, --name/--new/--extend,
predict --probabilities, evaluate's report, quiet output, and answers that do not wait on imports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from rayfit.cli import COMMANDS, EXIT_BAD_INPUT, build_parser, main

from tests.conftest import checkpoint_arrays, run_commands, write_experiment
from tests.test_cli_errors import snapshot

COMMAND = [sys.executable, "-m", "rayfit.cli"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder with tiny.yaml (digits, 2 epochs, MLflow off) and its finished run."""
    return run_commands(tmp_path_factory.mktemp("cli"), [["train", "tiny.yaml"]],
                        tiny={"trainer": {"epochs": 2, "progress": "none"}})


@pytest.fixture
def project(trained: Path, workdir: Path) -> Path:
    shutil.copytree(trained, workdir, dirs_exist_ok=True)
    return workdir


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"rayfit {version('rayfit')}\n"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help_with_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "\nexamples:\n" in text and f"  rayfit {command} " in text
    assert "--verbose" in text and "--debug" in text


def test_global_flags_go_before_or_after_the_command() -> None:
    parse = build_parser().parse_args
    assert parse(["-v", "runs"]).verbose and parse(["runs", "-v"]).verbose
    assert parse(["runs", "show", "x", "--verbose"]).verbose
    assert not parse(["runs"]).verbose and not parse(["runs"]).debug
    assert parse(["--debug", "evaluate", "x"]).debug and parse(["evaluate", "x", "--debug"]).debug


def test_name_chooses_the_run_folder(project: Path) -> None:
    assert main(["train", "tiny.yaml", "--name", "mine", "--set", "trainer.epochs=1"]) == 0
    saved = yaml.safe_load((project / "runs" / "mine" / "config.yaml").read_text())
    assert saved["name"] == "mine" and saved["trainer"]["epochs"] == 1


def test_new_trains_numbered_runs_and_leaves_the_first_alone(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(project / "runs" / "tiny")
    for number, lr in ((2, 0.01), (3, 0.02)):
        capsys.readouterr()
        assert main(["train", "tiny.yaml", "--set", f"optimizer.lr={lr}", "--set", "trainer.epochs=1", "--new"]) == 0
        assert f"new run: tiny-{number}\n" in capsys.readouterr().err
        saved = yaml.safe_load((project / "runs" / f"tiny-{number}" / "config.yaml").read_text())
        assert saved["name"] == f"tiny-{number}" and saved["optimizer"]["lr"] == lr
    assert snapshot(project / "runs" / "tiny") == before


def test_refusals_name_the_flags_that_take_the_next_step(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["train", "tiny.yaml", "--set", "optimizer.lr=0.01"]) == EXIT_BAD_INPUT
    changed = capsys.readouterr().err
    assert "--name NAME" in changed and "--new for tiny-2" in changed
    assert main(["train", "tiny.yaml", "--set", "trainer.epochs=4"]) == EXIT_BAD_INPUT
    assert "with --extend" in capsys.readouterr().err
    assert main(["train", "tiny.yaml"]) == 0  # finished: says how to go on, changes nothing
    assert "--set trainer.epochs=N --extend" in capsys.readouterr().out


def test_extend_goes_on_from_the_last_checkpoint_as_if_never_stopped(project: Path) -> None:
    """2 epochs, then --extend to 4, ends with bitwise the weights of a straight 4-epoch run."""
    run = project / "runs" / "tiny"
    history = json.loads((run / "history.json").read_text())
    assert main(["train", "tiny.yaml", "--set", "trainer.epochs=4", "--extend"]) == 0
    assert main(["train", "tiny.yaml", "--set", "trainer.epochs=4", "--name", "straight"]) == 0

    extended = json.loads((run / "history.json").read_text())
    assert [row["epoch"] for row in extended] == [1, 2, 3, 4] and extended[:2] == history
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "finished" and status["stop_reason"] == "reached the last epoch (4)"
    assert yaml.safe_load((run / "config.yaml").read_text())["trainer"]["epochs"] == 4
    straight = project / "runs" / "straight"
    for a, b in zip(checkpoint_arrays(last_checkpoint(run)), checkpoint_arrays(last_checkpoint(straight))):
        np.testing.assert_array_equal(a, b)
    # the extended run is now a 4-epoch run: resuming or extending it further compares to that
    assert main(["train", "tiny.yaml", "--set", "trainer.epochs=4"]) == 0


def last_checkpoint(run: Path) -> Path:
    from rayfit.callbacks.checkpoint import CheckpointIndex

    return CheckpointIndex(run / "checkpoints").latest


def test_predict_probabilities_add_a_column_per_class(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sklearn.datasets import load_digits

    rows = load_digits(as_frame=True).data.head(30)
    rows.to_csv(project / "rows.csv", index=False)
    assert main(["predict", "tiny", "--input", "rows.csv", "--output", "out.csv", "--probabilities"]) == 0
    written = pd.read_csv(project / "out.csv")
    prob_columns = [f"prob_{label}" for label in range(10)]
    assert list(written.columns) == [*rows.columns, "predicted_target", *prob_columns]
    probs = written[prob_columns].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert (probs.argmax(axis=1) == written["predicted_target"].to_numpy()).all()
    assert main(["predict", "tiny", "--input", "rows.csv", "--output", "plain.csv"]) == 0
    plain = pd.read_csv(project / "plain.csv")
    assert plain["predicted_target"].tolist() == written["predicted_target"].tolist()


def test_evaluate_prints_the_report_or_json(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["evaluate", "tiny", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    stored = json.loads((project / "runs" / "tiny" / "run.json").read_text())["test_metrics"]
    assert {"test_f1_macro", "test_f1_weighted", "test_top3_accuracy", "test_log_loss"} <= stored.keys()
    for key, value in stored.items():  # what training recorded is what evaluate finds again
        assert report[key] == pytest.approx(value, rel=1e-5), key
    assert report["labels"] == list(range(10))
    matrix = np.array(report["confusion_matrix"])
    assert matrix.shape == (10, 10) and np.trace(matrix) / matrix.sum() == pytest.approx(report["test_accuracy"])
    assert main(["evaluate", "tiny"]) == 0
    text = capsys.readouterr().out
    assert "test_top3_accuracy" in text and "confusion matrix (rows: true, columns: predicted)" in text


def test_evaluate_finds_a_run_by_its_experiment_file(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["evaluate", "tiny.yaml", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["labels"] == list(range(10))
    write_experiment(project, "other")
    assert main(["evaluate", "other.yaml"]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err == (
        f"error: other.yaml: its run {project / 'runs' / 'other'} has no exported model; "
        "train it: rayfit train other.yaml\n"
    )


def imported_after(argv: list[str], cwd: Path) -> tuple[int, set[str]]:
    """Run `rayfit ARGV` in a fresh interpreter: its exit code and which heavy packages it imported."""
    probe = (
        "import sys; from rayfit.cli import main; code = main(sys.argv[1:]); "
        "heavy = {'torch', 'mlflow', 'ray', 'sklearn', 'scipy', 'tensorflow'}; "
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}), code)"
    )
    done = subprocess.run([sys.executable, "-c", probe, *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    names, code = done.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    return int(code), set(json.loads(names.replace("'", '"')))


def test_a_bad_config_is_refused_before_any_heavy_import(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("name: bad\ndata: {source: sklearn:digits}\noptimizer: {lr: -1}\n")
    assert imported_after(["train", "bad.yaml"], tmp_path) == (EXIT_BAD_INPUT, set())
    assert imported_after(["train", "bad.yaml", "--new", "--name", "x"], tmp_path) == (EXIT_BAD_INPUT, set())


def test_predict_imports_no_mlflow_ray_or_sklearn(project: Path) -> None:
    pd.DataFrame(np.zeros((3, 64)), columns=[f"pixel_{i // 8}_{i % 8}" for i in range(64)]).to_csv(
        project / "rows.csv", index=False
    )
    code, heavy = imported_after(["predict", "tiny", "--input", "rows.csv", "--output", "p.csv"], project)
    assert code == 0 and heavy == {"torch"}


QUIET_LINES = ("Creating initial MLflow database tables", "Skip logging GPU metrics", "alembic",
               "Started monitoring system metrics", "Stopping system metrics monitoring")


@pytest.mark.slow
def test_library_info_lines_show_only_with_verbose(tmp_path: Path) -> None:
    """Two real trainings with MLflow on (each creates its store): quiet, and with -v."""
    runs = {}
    for verbose in (False, True):
        folder = tmp_path / ("verbose" if verbose else "quiet")
        folder.mkdir()
        write_experiment(folder, "tiny", trainer={"epochs": 1, "progress": "none"},
                         tracking={"enabled": True, "system_metrics_s": 0.5})
        flags = ["-v"] if verbose else []
        env = {**os.environ, "RAYFIT_CACHE": str(folder / "cache")}  # its empty store is built anew
        runs[verbose] = subprocess.Popen([*COMMAND, *flags, "train", "tiny.yaml"], cwd=folder, env=env,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    (quiet_out, quiet_err), (verbose_out, verbose_err) = (runs[v].communicate(timeout=300) for v in (False, True))
    assert runs[False].returncode == 0 and runs[True].returncode == 0, quiet_err + verbose_err
    quiet = quiet_out + quiet_err
    assert [line for line in QUIET_LINES if line in quiet] == []
    assert "training stopped: reached the last epoch (1)" in quiet_err  # rayfit's own lines stay
    verbose = verbose_out + verbose_err
    assert "Creating initial MLflow database tables" in verbose
    assert "Started monitoring system metrics" in verbose
