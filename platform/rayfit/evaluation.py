"""`rayfit evaluate RUN`: the test metrics of a finished run's exported model on its test split."""

from __future__ import annotations

import logging
from pathlib import Path

from rayfit.backends import build_backend
from rayfit.data import load_dataset
from rayfit.data.fingerprint import mismatch
from rayfit.errors import DataError
from rayfit.inference import read_model_folder, resolve_run
from rayfit.loop import EpochLoop
from rayfit.metrics_report import SplitReport, exported_model_report

log = logging.getLogger("rayfit")

def evaluate_run(run: str | Path, storage: str = "runs", trust_code: bool = False) -> SplitReport:
    """Rebuild the run's data split (deterministic from its config and seed) and score the model:
    the loop's test loss and scikit-learn's metrics of the exported model's outputs (a user model's
    code is imported only with `trust_code`)."""
    run_dir = resolve_run(run, storage)
    cfg, info = read_model_folder(run_dir, trust_code)
    data = load_dataset(cfg.data, cfg.trainer.seed)
    changed = mismatch(info.fingerprint, data.info.fingerprint)
    if changed:
        log.warning("warning: %s holds %s (run %s)", cfg.data.source, changed, cfg.name)
    backend = build_backend(cfg, data)
    backend.load_export(run_dir / "model")
    metrics = EpochLoop(backend, [], cfg.trainer.epochs).evaluate()
    if not metrics:
        raise DataError(f"{cfg.data.source}: the run has no test split (data.test_fraction is 0)")
    report = exported_model_report(cfg, info, run_dir / "model", data.x_test, data.y_test)
    report.metrics = metrics | report.metrics
    return report
