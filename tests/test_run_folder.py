"""Run folders that were changed, copied or are in use: a folder with no checkpoint is taken over,
a running name is locked, a copied project resumes and evaluates its own data, and `evaluate`
says when the data no longer gives the run's test split."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from rayfit import Trainer
from rayfit.cli import EXIT_BAD_INPUT, main
from rayfit.config import load_experiment
from rayfit.errors import CheckpointError
from rayfit.paths import resolve_paths
from rayfit.run_folder import RunFolder
from tests.conftest import write_experiment

CSV_ROWS = 120


def write_csv(path: Path, order: np.ndarray | None = None) -> None:
    """120 rows of two numeric features and a class that depends on them."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=CSV_ROWS), rng.normal(size=CSV_ROWS)
    rows = [f"{a[i]:.6f},{b[i]:.6f},{int(a[i] + b[i] > 0)}\n" for i in range(CSV_ROWS)]
    rows = [rows[i] for i in order] if order is not None else rows
    path.write_text("a,b,y\n" + "".join(rows))


def csv_experiment(folder: Path, epochs: int) -> Path:
    write_csv(folder / "data.csv")
    return write_experiment(
        folder, "csvrun", data={"source": "data.csv", "target": "y", "test_fraction": 0.25},
        trainer={"epochs": epochs, "batch_size": 16, "progress": "none"},
    )


def test_a_run_killed_before_its_first_checkpoint_is_taken_over(workdir: Path) -> None:
    experiment = write_experiment(workdir, trainer={"epochs": 1})
    first = resolve_paths(load_experiment(experiment, ["optimizer.lr=50"]))
    RunFolder.for_config(first).start(first)  # what a run killed in its first epoch leaves

    assert main(["train", str(experiment)]) == 0

    run = workdir / "runs" / "tiny"
    assert yaml.safe_load((run / "config.yaml").read_text())["optimizer"]["lr"] == 0.003
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


def test_a_second_run_of_a_running_name_is_refused(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_experiment(workdir)
    with RunFolder(workdir / "runs" / "tiny").lock():
        capsys.readouterr()
        assert main(["train", "tiny.yaml"]) == EXIT_BAD_INPUT
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith("error: run 'tiny' is being trained by another process"), err
        assert [p.name for p in (workdir / "runs").iterdir()] == ["tiny.lock"]
    assert not (workdir / "runs").exists()  # the lock, and the folder made for it, are gone


def test_a_lock_can_be_waited_for(workdir: Path) -> None:
    run = RunFolder(workdir / "runs" / "tiny")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with run.lock():
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        with pytest.raises(CheckpointError, match="is being trained by another process"), run.lock(wait_s=0.3):
            pass
        threading.Timer(0.3, release.set).start()
        with run.lock(wait_s=10):
            assert release.is_set()  # it waited for the holder to let go, then took the lock
    finally:
        release.set()
        holder.join()


HOLD_LOCK = """
import time
from rayfit.run_folder import RunFolder
with RunFolder("runs/tiny").lock():
    print("locked", flush=True)
    time.sleep(600)
"""


@pytest.mark.slow
def test_the_lock_holds_across_processes_and_a_crash_releases_it(workdir: Path) -> None:
    write_experiment(workdir, trainer={"epochs": 1})
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK], cwd=workdir, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        second = subprocess.run([sys.executable, "-m", "rayfit.cli", "train", "tiny.yaml"], cwd=workdir,
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == EXIT_BAD_INPUT
        assert second.stderr.splitlines() == [
            f"error: run 'tiny' is being trained by another process ({workdir / 'runs' / 'tiny.lock'} is locked); "
            "wait for it to end, or choose another run name (--set name=...)"]
        assert [p.name for p in (workdir / "runs").iterdir()] == ["tiny.lock"]
    finally:
        holder.kill()  # SIGKILL: no clean-up runs, the OS drops the lock
        holder.wait()

    assert main(["train", "tiny.yaml"]) == 0
    assert sorted(p.name for p in (workdir / "runs").iterdir()) == ["tiny"]


def test_a_copied_project_resumes_and_evaluates_its_own_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    original, copy = tmp_path / "project", tmp_path / "copy"
    original.mkdir()
    monkeypatch.chdir(original)
    trainer = Trainer(csv_experiment(original, epochs=2))
    trainer.register_progress_callback(lambda epoch, metrics: os.kill(os.getpid(), signal.SIGTERM))
    assert trainer.fit().interrupted
    shutil.copytree(original, copy)
    shutil.rmtree(original)  # reading the original's data now fails
    monkeypatch.chdir(copy)
    capsys.readouterr()

    assert main(["train", "csvrun.yaml", "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert main(["evaluate", "csvrun", "--json"]) == 0

    out, err = capsys.readouterr()
    assert json.loads(out)["test_loss"] == pytest.approx(trained["test_loss"], rel=1e-5)
    assert err == ""
    saved = yaml.safe_load((copy / "runs" / "csvrun" / "model" / "config.yaml").read_text())
    assert saved["data"]["source"] == "../../data.csv"


def test_evaluate_warns_when_the_data_no_longer_gives_the_runs_test_split(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    csv_experiment(workdir, epochs=1)
    assert main(["train", "csvrun.yaml"]) == 0

    def warnings_of_evaluate() -> list[str]:
        caplog.clear()
        assert main(["evaluate", "csvrun", "--json"]) == 0
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

    assert warnings_of_evaluate() == []
    write_csv(workdir / "data.csv", order=np.random.default_rng(0).permutation(CSV_ROWS))
    assert warnings_of_evaluate() == [
        f"warning: {workdir / 'data.csv'} holds the same rows as at training, in another order: "
        "the test split now holds other rows (run csvrun)"]
    (workdir / "data.csv").write_text((workdir / "data.csv").read_text().replace(",0\n", ",1\n", 1))
    assert warnings_of_evaluate() == [
        f"warning: {workdir / 'data.csv'} holds not the rows the run was trained on: "
        "the test split is another set (run csvrun)"]
