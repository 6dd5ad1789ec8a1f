"""`rayfit runs`: list, show and compare real run folders; folders that were tampered with are
one line (show) or one row (list), never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rayfit.cli import EXIT_BAD_INPUT, main
from rayfit.errors import CheckpointError, ConfigError
from rayfit.runs_view import compare_runs, find_run, list_runs, plain_table, read_run, show_run

from tests.conftest import run_commands


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/a (2 epochs, lr 0.003) and runs/b (1 epoch, lr 0.01), both finished, MLflow off."""
    commands = [["train", "a.yaml"],
                ["train", "a.yaml", "--name", "b", "--set", "optimizer.lr=0.01", "--set", "trainer.epochs=1"]]
    return run_commands(tmp_path_factory.mktemp("runs-view"), commands,
                        a={"trainer": {"epochs": 2, "progress": "none"}})


@pytest.fixture
def runs(project: Path, workdir: Path) -> Path:
    """A copy of the project's runs/ in this test's working folder, free to tamper with."""
    shutil.copytree(project / "runs", workdir / "runs")
    return workdir / "runs"


def test_list_has_a_row_per_run_with_status_epochs_and_best(runs: Path) -> None:
    headers, rows = list_runs(runs)
    assert headers[:5] == ["name", "status", "epochs", "best", "started"]
    by_name = {row[0]: row for row in rows}
    assert sorted(by_name) == ["a", "b"]
    history = json.loads((runs / "a" / "history.json").read_text())
    best = min(row["val_loss"] for row in history)
    assert by_name["a"][1:4] == ["finished", "2/2", f"{best:.4g} val_loss"]
    assert by_name["b"][2] == "1/1"


def test_cli_lists_plain_columns_in_a_pipe(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs"]) == 0
    listed = capsys.readouterr().out
    assert main(["runs", "list", "--storage", str(runs)]) == 0  # the same, named explicitly
    assert capsys.readouterr().out == listed
    lines = listed.splitlines()
    assert lines[0].split()[:3] == ["name", "status", "epochs"] and "│" not in listed  # no rich box
    assert [line.split()[:3] for line in lines[1:]] == [["a", "finished", "2/2"], ["b", "finished", "1/1"]]


def test_show_prints_settings_history_test_metrics_and_files(runs: Path) -> None:
    run = find_run(runs, "a")
    parts = show_run(run)
    assert parts[0].startswith("run a: finished, 2/2 epochs")
    tables = {p[0][0]: p for p in parts if isinstance(p, tuple)}
    settings = dict(tables["setting"][1])
    assert settings["optimizer.lr"] == "0.003" and settings["trainer.epochs"] == "2"
    assert [row[0] for row in tables["epoch"][1]] == ["1", "2"]
    status = json.loads((runs / "a" / "run.json").read_text())
    assert dict(tables["test metric"][1])["test_accuracy"] == f"{status['test_metrics']['test_accuracy']:.4g}"
    assert dict(tables["files"][1])["model"] == str(runs / "a" / "model")


def test_compare_shows_only_what_differs_and_metrics_side_by_side(runs: Path) -> None:
    diff, metrics = compare_runs(find_run(runs, "a"), find_run(runs, "b"))
    assert diff[0] == ["setting", "a", "b"]
    assert diff[1] == [["name", "a", "b"], ["optimizer.lr", "0.003", "0.01"], ["trainer.epochs", "2", "1"]]
    rows = {row[0]: row[1:] for row in metrics[1]}
    assert rows["epoch"] == ["2", "1"]
    assert "best val_loss (min)" in rows and "test_accuracy" in rows


def test_cli_show_and_compare(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "show", "b"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("run b: finished, 1/1 epochs") and "optimizer.lr        0.01" in out
    assert main(["runs", "compare", "a", "b"]) == 0
    assert "optimizer.lr    0.003  0.01" in capsys.readouterr().out


@pytest.mark.parametrize("file, content, expect", [
    ("run.json", "{not json", "unreadable"),
    ("run.json", "[1, 2]", "expected a JSON object"),
    ("run.json", b"\xff\xfe\x00", "unreadable"),
    ("config.yaml", "a: [1", "unreadable"),
    ("config.yaml", "- 1\n", "expected a mapping"),
    ("history.json", '{"epoch": 1}', "expected a list of per-epoch objects"),
])
def test_a_tampered_run_is_one_line(
    runs: Path, capsys: pytest.CaptureFixture[str], file: str, content: str | bytes, expect: str
) -> None:
    path = runs / "b" / file
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    with pytest.raises(CheckpointError, match=expect):
        read_run(runs / "b")

    assert main(["runs", "show", "b"]) == EXIT_BAD_INPUT
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith(f"error: runs/b/{file}: ")
    assert main(["runs"]) == 0  # the list goes on: the other run, and a row saying what is wrong
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["a"].split()[1] == "finished"
    assert rows["b"].split()[1] == "unreadable" and file in rows["b"]


def test_names_are_never_paths(runs: Path) -> None:
    (runs.parent / "outside").mkdir()
    (runs.parent / "outside" / "run.json").write_text("{}")
    for name in ("../outside", "/etc", "a/../b", ".hidden"):
        with pytest.raises(ConfigError, match="expected letters, digits"):
            find_run(runs, name)
    with pytest.raises(ConfigError, match="no run of that name in runs; runs there: a, b"):
        find_run(Path("runs"), "c")


def test_empty_or_missing_storage(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs"]) == 0
    assert capsys.readouterr().out == "no runs in runs/ yet; train one with: rayfit train EXPERIMENT\n"
    assert main(["runs", "--storage", "nosuch"]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err == "error: --storage nosuch: no such folder\n"
    assert not (workdir / "runs").exists()


def test_plain_table_pads_columns() -> None:
    assert plain_table(["a", "bb"], [["xxx", "y"]]).splitlines() == ["a    bb", "xxx  y"]
