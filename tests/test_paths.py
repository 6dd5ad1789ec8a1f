"""Data paths as a run folder saves them: relative inside the project (a copy reads its own data),
absolute outside it, and made absolute again against wherever the run folder now lies."""

from __future__ import annotations

from pathlib import Path

from rayfit.config import load_experiment
from rayfit.paths import localized, portable, resolve_paths
from tests.conftest import write_experiment


def test_data_paths_are_saved_relative_inside_the_project_only(workdir: Path, tmp_path_factory) -> None:
    elsewhere = tmp_path_factory.mktemp("shared") / "test.csv"
    write_experiment(workdir, data={"source": "data/train.csv", "test_source": str(elsewhere),
                                    "val_source": "sklearn:iris"})
    cfg = resolve_paths(load_experiment(workdir / "tiny.yaml"))
    run_dir = workdir / "runs" / "tiny"

    saved = portable(cfg, run_dir)["data"]

    assert (saved["source"], saved["test_source"], saved["val_source"]) == (
        "../../data/train.csv", str(elsewhere), "sklearn:iris")
    copy = Path("/somewhere/else/project/runs/tiny")
    again = localized({"data": saved, "name": "tiny"}, copy)["data"]
    assert again["source"] == "/somewhere/else/project/data/train.csv"
    assert (again["test_source"], again["val_source"]) == (str(elsewhere), "sklearn:iris")
    assert localized({"data": saved}, run_dir)["data"]["source"] == cfg.data.source
