"""Sweeps end to end on a real local Ray (slow tier, one Ray for the module), and the plan and the
refusals of `rayfit tune` (fast tier, no Ray)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import checkpoint_arrays, deep_merge, read_checkpoint, write_experiment
from rayfit.cli import main
from rayfit.config import load_experiment
from rayfit.run_folder import RunFolder
from rayfit.tuning.sweep import load_sweep, plan

LR_GRID = {"optimizer.lr": {"grid": [0.01, 1e-5, 1e-5]}}  # one good trial, then two ASHA stops at epoch 1


def sweep_file(folder: Path, name: str, tune: dict[str, Any], **sections: Any) -> Path:
    """A tiny digits sweep; MLflow on in a store of the folder."""
    sections = deep_merge({"tracking": {"enabled": True, "uri": f"sqlite:///{folder}/mlflow.db",
                                        "system_metrics_s": 0}}, sections)
    path = write_experiment(folder, name, **sections)
    raw = yaml.safe_load(path.read_text())
    raw["tune"] = deep_merge({"metric": "val_accuracy", "mode": "max"}, tune)
    path.write_text(yaml.safe_dump(raw))
    return path


# --------------------------------------------------------------------------- fast: before launch


def test_dry_run_prints_trials_concurrency_and_most_epochs(workdir, capsys):
    path = sweep_file(workdir, "plan", {"num_samples": 2, "search_space": {"trainer.batch_size": {"grid": [32, 64, 128]},
                                                                           "optimizer.lr": {"uniform": [0.001, 0.01]}}})
    assert main(["tune", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    cpus = os.cpu_count()
    assert out == ["trials: 6", f"concurrency: {min(6, cpus)} (a trial needs 1 CPU of {cpus})",
                   "most epochs: 18 (6 trials x at most 3 epochs)"]
    assert not (workdir / "runs").exists()


def test_the_shipped_sweep_is_accepted():
    shipped = load_sweep(Path(__file__).resolve().parents[2] / "experiments" / "digits_sweep.yaml")
    assert plan(shipped, cpus=2).lines() == ["trials: 8", "concurrency: 2 (a trial needs 1 CPU of 2)",
                                             "most epochs: 72 (8 trials x at most 9 epochs)"]


def test_a_nested_trial_holds_a_cpu_for_its_driver_and_one_that_cannot_fit_is_refused(workdir):
    path = sweep_file(workdir, "nested", {"num_samples": 4, "max_concurrent_trials": 3},
                      scaling={"num_workers": 2, "resources_per_worker": {"CPU": 0.5}})
    assert plan(load_sweep(path), cpus=4).concurrency == 2  # 1 + 2 x 0.5 CPUs each
    assert plan(load_sweep(path), cpus=2).concurrency == 1
    big = sweep_file(workdir, "big", {}, scaling={"num_workers": 2})
    with pytest.raises(Exception, match=r"a trial needs 3 CPUs \(1 for its driver"):
        plan(load_sweep(big), cpus=2)


@pytest.mark.parametrize("scheduler, scaling, reused", [
    ("asha", {"num_workers": 0}, True),
    ("fifo", {"num_workers": 0}, True),
    ("median_stopping", {"num_workers": 0}, False),  # it pauses trials that lack peers at their epoch
    ("pbt", {"num_workers": 0}, False),  # a paused trial may resume in another process
    ("hyperband", {"num_workers": 0}, False),
    ("asha", {"num_workers": 2, "resources_per_worker": {"CPU": 0.5}}, False),  # its Ray Train run would go on
])
def test_only_in_process_trials_that_are_never_paused_reuse_a_process(workdir, scheduler, scaling, reused):
    from rayfit.tuning.sweep import reuses_processes

    options = {"pbt": {"mutations": {"optimizer.lr": {"uniform": [1e-4, 1e-2]}}}}.get(scheduler, {})
    path = sweep_file(workdir, "reuse", {"search_space": LR_GRID, "scheduler": {"name": scheduler, **options}},
                      scaling=scaling)
    assert reuses_processes(load_sweep(path)) is reused


@pytest.mark.parametrize("tune, message", [
    ({"search_space": {"optimizer.lrr": {"uniform": [0.1, 1]}}}, "tune.search_space.optimizer.lrr: unknown config path"),
    ({"search_space": {"model.hidden_units": {"choice": []}}}, "choice: expected a non-empty list"),
    ({"search_space": {"optimizer.lr": {"uniform": [1, 0.1]}}}, "low 1 is above high 0.1"),
    ({"search_space": {"optimizer.lr": {"loguniform": [0, 0.1]}}}, "loguniform: bounds must be positive"),
    ({"metric": "val_f1"}, "tune.metric: 'val_f1' is not reported"),
    ({"scheduler": {"name": "asha", "rungs": 3}}, "asha has no option 'rungs'"),
])
def test_bad_sweeps_exit_2_with_one_line_before_any_trial(workdir, capsys, tune, message):
    path = sweep_file(workdir, "bad", tune)
    assert main(["tune", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (workdir / "runs").exists()


def test_an_experiment_without_tune_section_is_refused(workdir, capsys):
    assert main(["tune", str(write_experiment(workdir, "plain"))]) == 2
    assert "has no tune: section" in capsys.readouterr().err


# --------------------------------------------------------------------------- slow: real Ray Tune


def children(folder: Path, parent_id: str) -> list[Any]:
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("rayfit").experiment_id],
                              filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")
    return runs


def parent_run(folder: Path, name: str) -> Any:
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("rayfit").experiment_id],
                                filter_string=f"attributes.run_name = '{name}' and tags.`rayfit.best_trial` != ''")
    return run


def epochs_logged(folder: Path, run_id: str, metric: str) -> list[float]:
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    return [m.value for m in sorted(client.get_metric_history(run_id, metric), key=lambda m: m.step)]


@pytest.fixture(scope="module")
def asha_sweep(ray_cluster, tmp_path_factory):
    """One ASHA sweep of three in-process trials, one after another (the rung order is then fixed)."""
    folder = tmp_path_factory.mktemp("asha")
    path = sweep_file(folder, "asha", {"search_space": LR_GRID, "max_concurrent_trials": 1,
                                       "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 3}})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        assert main(["tune", str(path)]) == 0
    return folder


@pytest.mark.slow
def test_asha_stops_trials_early_and_mlflow_nests_them_under_the_sweep(asha_sweep):
    table = pd.read_csv(asha_sweep / "runs/asha/trials.csv")
    assert list(table["config.optimizer.lr"]) == [0.01, 1e-5, 1e-5]
    assert list(table["epochs"]) == [3, 1, 1]
    assert table["stopped"][0] == "reached the last epoch (3)"
    assert list(table["stopped"][1:]) == ["stopped by the asha scheduler after epoch 1"] * 2
    parent = parent_run(asha_sweep, "asha")
    kids = {r.info.run_name: r for r in children(asha_sweep, parent.info.run_id)}
    assert sorted(kids) == sorted(table["trial"])
    for trial, epochs in zip(table["trial"], table["epochs"]):
        history = json.loads((asha_sweep / "runs/asha/trials" / trial / "history.json").read_text())
        assert epochs_logged(asha_sweep, kids[trial].info.run_id, "val_accuracy") == [r["val_accuracy"] for r in history]
        assert len(history) == epochs and kids[trial].info.status == "FINISHED"
    best = table.loc[table["best_val_accuracy"].idxmax()]
    assert parent.data.tags["rayfit.best_trial"] == best["trial"]
    assert parent.data.metrics["best_val_accuracy"] == best["best_val_accuracy"]
    assert parent.data.tags["rayfit.best_trial_run_id"] == kids[best["trial"]].info.run_id
    # the trials ran one after another in one process: a trial ASHA stopped handed it on (Tune's pid)
    results = [json.loads(line) for trial in table["trial"]
               for line in (asha_sweep / "runs/asha/tune" / trial / "result.json").read_text().splitlines()]
    assert len({r["pid"] for r in results}) == 1
    assert (asha_sweep / "runs/asha/plots/curves.png").stat().st_size > 0
    assert (asha_sweep / "runs/asha/plots/parallel.png").stat().st_size > 0
    artifacts = {a.path for a in MlflowClient(f"sqlite:///{asha_sweep}/mlflow.db").list_artifacts(parent.info.run_id, "sweep")}
    assert {"sweep/trials.csv", "sweep/best.yaml", "sweep/curves.png", "sweep/parallel.png"} <= artifacts


@pytest.mark.slow
def test_best_yaml_trains_the_best_trial_again_to_the_same_metric(asha_sweep, monkeypatch):
    from rayfit.trainer import Trainer

    monkeypatch.chdir(asha_sweep)
    table = pd.read_csv(asha_sweep / "runs/asha/trials.csv")
    best = table.loc[table["best_val_accuracy"].idxmax()]
    raw = yaml.safe_load((asha_sweep / "runs/asha/best.yaml").read_text())
    assert "tune" not in raw and raw["optimizer"]["lr"] == best["config.optimizer.lr"]
    result = Trainer(load_experiment(asha_sweep / "runs/asha/best.yaml"), progress=False).fit()
    assert result.run_dir == (asha_sweep / "runs/asha_best").resolve()
    assert result.history[int(best["best_epoch"]) - 1]["val_accuracy"] == best["best_val_accuracy"]


@pytest.mark.slow
@pytest.mark.parametrize("scaling", [
    {"num_workers": 0},
    # each trial runs Ray Train with 1 worker; a worker of no CPU (some memory, so Ray can place
    # it) lets both trials (1 CPU each, for their driver) run at once on 2 CPUs, as synch PBT needs
    {"num_workers": 1, "resources_per_worker": {"CPU": 0, "memory": 1.0e8}},
], ids=["in-process", "ray-train"])
def test_pbt_clones_the_donor_s_checkpoint(ray_cluster, tmp_path, monkeypatch, scaling):
    monkeypatch.chdir(tmp_path)
    path = sweep_file(tmp_path, "pbt", {
        "search_space": {"optimizer.lr": {"grid": [0.01, 1e-5]}},
        "scheduler": {"name": "pbt", "perturbation_interval": 1, "quantile_fraction": 0.5,
                      "resample_probability": 0.0, "synch": True,
                      "mutations": {"optimizer.lr": {"uniform": [1e-4, 1e-2]}}}},
        trainer={"epochs": 2}, checkpoint={"keep_last": 10}, scaling=scaling)
    assert main(["tune", str(path)]) == 0
    no_placement_group_left()  # the runs of trials PBT paused had their workers freed
    trials = tmp_path / "runs/pbt/trials"
    clones = [(t, c) for t in trials.iterdir() if (t / "clones.json").is_file()
              for c in json.loads((t / "clones.json").read_text())]
    assert any(c["epoch"] == 1 for _, c in clones), "no trial exploited a donor before its last epoch"
    for trial, clone in clones:
        # the donor's checkpoint as it handed it to Tune at that epoch
        handed = [d for d in (tmp_path / "runs/pbt/tune" / clone["donor"]).glob("checkpoint_*")
                  if json.loads((d / "donor.json").read_text())["epoch"] == clone["epoch"]]
        name = clone["file"].removeprefix(clone["donor"] + "-")
        # a trial resumed at its last epoch hands that epoch again (TuneReport.last_epoch_if_none)
        assert handed and len({(d / name).read_bytes() for d in handed}) == 1
        donor_file = handed[0] / name
        loaded = trial / "clones" / clone["file"]
        for got, want in zip(checkpoint_arrays(loaded), checkpoint_arrays(donor_file), strict=True):
            assert (got == want).all()
        if clone["epoch"] == 2:  # cloned at the last epoch: nothing trained after it, history.json is its own
            continue
        # the loop state came with the weights: the clone's history up to the exploit is the donor's
        mine = json.loads((trial / "history.json").read_text())
        assert mine[: clone["epoch"]] == json.loads(read_checkpoint(donor_file)["loop"]["history"])
        assert len(mine) == 2  # and it went on to the last epoch from there
        if scaling["num_workers"]:  # a worker group started from the donor's epoch
            attempts = json.loads((trial / "run.json").read_text())["attempts"]
            assert clone["epoch"] in [a["epoch"] for a in attempts[1:]], attempts


@pytest.mark.slow
def test_an_optuna_sweep_trains_the_configs_it_samples(ray_cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = {"optimizer.lr": {"loguniform": [1.0e-3, 1.0e-1]}, "model.dropout": {"uniform": [0.0, 0.3]},
             "model.hidden_units": {"choice": [[32], [64, 32]]}, "trainer.seed": {"randint": [0, 100]}}
    path = sweep_file(tmp_path, "optuna", {"search_space": space, "num_samples": 4,
                                           "searcher": {"name": "optuna", "seed": 0}}, trainer={"epochs": 1})
    assert main(["tune", str(path)]) == 0
    table = pd.read_csv(tmp_path / "runs/optuna/trials.csv")
    assert len(table) == 4 and table["best_val_accuracy"].notna().all()
    assert table["config.optimizer.lr"].between(1.0e-3, 1.0e-1).all() and table["config.optimizer.lr"].nunique() == 4
    assert table["config.model.dropout"].between(0.0, 0.3).all()
    for _, row in table.iterrows():  # each trial trained the config optuna gave it
        trained = RunFolder(tmp_path / "runs/optuna/trials" / row["trial"]).saved_config()
        assert trained["optimizer"]["lr"] == row["config.optimizer.lr"]
        assert trained["model"]["hidden_units"] in ([32], [64, 32])
        assert str(trained["model"]["hidden_units"]) == row["config.model.hidden_units"]
        assert 0 <= trained["trainer"]["seed"] < 100


@pytest.mark.slow
def test_a_two_worker_trial_in_a_sweep_leaves_no_placement_group(ray_cluster, tmp_path, monkeypatch):
    import ray

    monkeypatch.chdir(tmp_path)
    path = sweep_file(tmp_path, "nested", {"search_space": {"optimizer.lr": {"grid": [0.01, 1e-5]}},
                                           "scheduler": {"name": "asha", "grace_period": 1}},
                      trainer={"epochs": 2}, scaling={"num_workers": 2, "resources_per_worker": {"CPU": 0.5}})
    assert main(["tune", str(path)]) == 0
    table = pd.read_csv(tmp_path / "runs/nested/trials.csv")
    assert table["stopped"][0] == "reached the last epoch (2)"
    # Tune stops the second at epoch 1; its workers may finish the next epoch before they go
    assert table["stopped"][1].startswith("stopped by the asha scheduler after epoch")
    status = json.loads((tmp_path / "runs/nested/trials" / table["trial"][0] / "run.json").read_text())
    assert status["attempts"][0]["workers"] == 2
    no_placement_group_left()
    assert ray.available_resources().get("CPU") == 2.0


def no_placement_group_left() -> None:
    import ray

    deadline = time.monotonic() + 30  # removal is asynchronous; a leaked group stays CREATED
    while (left := [pg for pg in ray.util.placement_group_table().values() if pg["state"] != "REMOVED"]):
        assert time.monotonic() < deadline, left
        time.sleep(0.5)


@pytest.mark.slow
def test_a_killed_sweep_goes_on_where_it_was(tmp_path):
    path = sweep_file(tmp_path, "killed", {"search_space": LR_GRID, "max_concurrent_trials": 1,
                                          "scheduler": {"name": "asha", "grace_period": 1}})
    env = dict(os.environ)  # the command starts its own Ray, which ends with it
    command = [sys.executable, "-m", "rayfit.cli", "tune", str(path)]
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    trials = tmp_path / "runs/killed/trials"
    deadline = time.monotonic() + 120
    while not any(json.loads(f.read_text()).get("status") == "finished" for f in trials.glob("*/run.json")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()[-2000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (first,) = [f.parent for f in trials.glob("*/run.json") if json.loads(f.read_text())["status"] == "finished"]
    finished_at = (first / "run.json").stat().st_mtime
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    table = pd.read_csv(tmp_path / "runs/killed/trials.csv")
    assert len(table) == 3 and (first / "run.json").stat().st_mtime == finished_at  # not run again
    # ASHA's rungs came back: the third trial met the first one's result at epoch 1 and stopped
    assert list(table["epochs"]) == [3, 1, 1], table.to_string()
    parent = parent_run(tmp_path, "killed")
    assert sorted(r.info.run_name for r in children(tmp_path, parent.info.run_id)) == sorted(table["trial"])
