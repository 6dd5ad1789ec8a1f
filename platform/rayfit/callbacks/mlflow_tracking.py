"""MLflow: one run per training run, found again by its run folder, so a resume keeps logging there.

The driver opens (or finds) the run and passes its id; the callback logs with that id only, so it
works the same in a Ray worker as in-process.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import mlflow
from mlflow.store.db.db_types import DATABASE_ENGINES
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
from mlflow.tracking import MlflowClient
from mlflow.tracking.registry import UnsupportedModelRegistryStoreURIException

from rayfit.config import ExperimentConfig
from rayfit.errors import ConfigError
from rayfit.paths import absolute_tracking_uri

log = logging.getLogger("rayfit")
RUN_DIR_TAG = "rayfit.run_dir"


def tracking_uri(cfg: ExperimentConfig) -> str:
    """tracking.uri, or a SQLite file in the working directory (MLflow's own default), absolute."""
    return absolute_tracking_uri(cfg.tracking.uri)


def artifact_root(cfg: ExperimentConfig) -> str | None:
    """For a SQLite store, artifacts go next to the database file, wherever the process runs
    (MLflow's default, ./mlruns, depends on the working directory, which workers do not share)."""
    uri = tracking_uri(cfg)
    if not uri.startswith("sqlite:///"):
        return None  # a server or another store decides where artifacts go
    database = Path(uri.removeprefix("sqlite:///"))
    return (database.parent / "mlruns" / cfg.tracking.experiment).as_uri()


def create_sqlite_store(uri: str) -> None:
    """Create a new SQLite store fast, if `uri` names a SQLite file that does not exist.

    MLflow creates its tables by running its schema migrations, each committed with an fsync:
    seconds, most of a first run's start-up. Here an empty store is built once per MLflow version
    (migrations on a temp file, synchronous=OFF) in the user's cache folder, and each new store is
    a copy of it, fsynced and then linked into place, never over a store that appeared meanwhile.
    If this fails (another MLflow version's internals, no cache folder), MLflow creates the store
    itself on first use, as before."""
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri.removeprefix("sqlite:///"))
    if path.exists() or not path.parent.is_dir():
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(empty_store(), tmp)
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.link(tmp, path)  # fails if a store appeared meanwhile: that one is kept
    except Exception as exc:  # MLflow creates the store the slow way
        log.debug("fast creation of %s failed: %s", path, exc)
    finally:
        tmp.unlink(missing_ok=True)


def empty_store() -> Path:
    """An empty store at MLflow's latest schema, built once per MLflow version in the cache folder
    ($RAYFIT_CACHE, else $XDG_CACHE_HOME/rayfit or ~/.cache/rayfit)."""
    cache = Path(os.environ.get("RAYFIT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rayfit")
    template = cache / f"mlflow-{mlflow.__version__}-empty.db"
    if template.is_file():
        return template
    import sqlalchemy
    from mlflow.store.db.utils import _all_tables_exist, _initialize_tables

    cache.mkdir(parents=True, exist_ok=True)
    tmp = template.with_name(f".{template.name}.{os.getpid()}.tmp")
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp}")
    sqlalchemy.event.listen(engine, "connect", _unsynced)
    try:
        _initialize_tables(engine)
        engine.dispose()
        if not _all_tables_exist(sqlalchemy.create_engine(f"sqlite:///{tmp}")):
            raise RuntimeError(f"{tmp}: MLflow's tables were not all created")
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, template)  # a concurrent builder's identical file may be replaced: harmless
    finally:
        engine.dispose()
        tmp.unlink(missing_ok=True)
    return template


def _unsynced(connection: Any, _record: Any) -> None:
    """No fsync and no journal file per commit: a crash only loses the temp file."""
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute("PRAGMA journal_mode=MEMORY")


def open_mlflow_run(cfg: ExperimentConfig, run_dir: Path) -> str:
    """The id of the MLflow run for `run_dir`: the existing one on resume, else a new one with the
    flattened config as params."""
    create_sqlite_store(tracking_uri(cfg))
    try:
        client = MlflowClient(tracking_uri(cfg))
    except UnsupportedModelRegistryStoreURIException as exc:  # what MLflow raises for unknown schemes
        raise ConfigError(
            f"tracking.uri: MLflow does not support {tracking_uri(cfg)!r}; expected for example "
            "sqlite:///mlflow.db, a folder or http://HOST:PORT"
        ) from exc
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(cfg.tracking.experiment, artifact_location=artifact_root(cfg))
    )
    found = find_run(client, experiment_id, run_dir)
    if found is not None:
        return found
    run = client.create_run(experiment_id, run_name=cfg.name, tags={RUN_DIR_TAG: str(run_dir)})
    params = {k: str(v)[:6000] for k, v in cfg.flat().items()}
    items = list(params.items())
    for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(run.info.run_id, params=[mlflow.entities.Param(k, v) for k, v in items[i : i + 100]])
    return run.info.run_id


def find_run(client: MlflowClient, experiment_id: str, run_dir: Path) -> str | None:
    """The id of the run tagged with `run_dir`, or None.

    MLflow's filter strings have no escape for a quote, so a folder such as "Bob's project" cannot
    be written into one: the filter matches with LIKE, each quote or backslash (an escape character
    in some stores) as the one-character wildcard `_`, and the tag is compared exactly here."""
    wanted = str(run_dir)
    pattern = wanted.replace("'", "_").replace("\\", "_")
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=f"tags.`{RUN_DIR_TAG}` LIKE '{pattern}'",
            max_results=100, page_token=token,
        )
        for run in page:
            if run.data.tags.get(RUN_DIR_TAG) == wanted:
                return run.info.run_id
        token = page.token
        if not token:
            return None


def metric_list(metrics: dict[str, float], step: int) -> list[mlflow.entities.Metric]:
    now = int(time.time() * 1000)
    return [mlflow.entities.Metric(k, v, now, step) for k, v in metrics.items() if k != "epoch"]


class MlflowRecorder:
    """One run's MLflow writes, made in the tracking process (`rayfit.tracking_process`): each
    epoch's metrics are logged asynchronously (step = epoch), so not even that process waits.
    Closing the run (`end`) writes what is still queued."""

    def __init__(self, uri: str, system_metrics_s: float = 0.0) -> None:
        self.uri, self.run_id = uri, ""
        self.system_metrics_s = system_metrics_s
        self._monitor: SystemMetricsMonitor | None = None
        self._pending: list[Any] = []  # the asynchronous epoch writes not yet waited for
        # What opening and closing the run would wait for is done now, while the run's process
        # imports its framework and loads data, then trains: 3-4 s of a digits run on 2 cores.
        self._store_imported = threading.Event()
        self._warm = threading.Thread(target=self._warm_up, daemon=True, name="rayfit-mlflow-warm-up")
        self._warm.start()

    def _warm_up(self) -> None:
        """Import the SQL store (SQLAlchemy's models, 1.7 s; nothing is created: the run may still
        be refused), then what the end needs: matplotlib (1.2 s), MLflow's pyfunc, and MLflow's map
        of installed packages, which logging a model reads to check its requirements (0.9 s)."""
        try:
            if urllib.parse.urlparse(self.uri).scheme.split("+")[0] in DATABASE_ENGINES:
                importlib.import_module("mlflow.store.tracking.sqlalchemy_store")
                import sqlalchemy.orm

                sqlalchemy.orm.configure_mappers()
        except Exception as exc:  # MLflow imports it again when the store is opened, and says why
            log.debug("warm-up of the MLflow store failed: %s", exc)
        finally:
            self._store_imported.set()
        try:
            importlib.import_module("rayfit.plots")
            importlib.import_module("rayfit.serving.pyfunc_model")
            # MLflow's own cache, filled on first use (private: a later MLflow may name it otherwise)
            from mlflow.utils.requirements_utils import _init_modules_to_packages_map

            _init_modules_to_packages_map()
        except Exception as exc:  # done again, on demand, by the run's end
            log.debug("warm-up of the run's end failed: %s", exc)

    def open(self, cfg_json: dict[str, Any], run_dir: str) -> str:
        """Open (or find again) the MLflow run of `run_dir` and log into it; its id."""
        self._store_imported.wait()  # one thread imports a module, not two at once
        self.run_id = open_mlflow_run(ExperimentConfig.model_validate(cfg_json), Path(run_dir))
        self.client = MlflowClient(self.uri)
        return self.run_id

    def start(self, history: list[dict[str, float]]) -> None:
        """Mark the run running; log the epochs of a resumed run's `history` that the store lacks
        (MLflow buffers its writes, so a killed run's last epochs before its checkpoint may be missing)."""
        self.client.update_run(self.run_id, status="RUNNING")
        if history:
            key = next(k for k in history[-1] if k != "epoch")
            logged = {m.step for m in self.client.get_metric_history(self.run_id, key)}
            for row in history:
                if int(row["epoch"]) not in logged:
                    self.log_epoch(row, int(row["epoch"]))
        if self.system_metrics_s > 0:  # CPU, memory, disk, network and (with pynvml) GPU, as system/*
            self._monitor = SystemMetricsMonitor(
                self.run_id, sampling_interval=self.system_metrics_s, resume_logging=True,
                tracking_uri=self.uri,
            )
            self._monitor.start()

    def _stop_monitor(self) -> None:
        if self._monitor is not None:
            self._monitor.finish()
            self._monitor = None

    def log_epoch(self, metrics: dict[str, float], epoch: int, wait: bool = False) -> None:
        """Queued (MLflow writes what was queued in a second as one batch, see `rayfit.tracking_process`),
        or with `wait` written before this returns."""
        write = self.client.log_batch(self.run_id, metrics=metric_list(metrics, epoch), synchronous=wait)
        if not wait:
            self._pending.append(write)

    def flush(self) -> None:
        """Wait until every epoch logged so far is in the store (MLflow writes them on several threads)."""
        pending, self._pending = self._pending, []
        for write in pending:
            write.wait()

    def finish(self, history: list[dict[str, float]], plot: str, test_metrics: dict[str, float], model_dir: str,
               files: list[tuple[str, str]]) -> None:
        """Draw the training curves at `plot` (matplotlib was imported here while the run trained),
        log the model (a pyfunc that takes raw rows), the test metrics and files, then close the run."""
        self._warm.join()
        from rayfit.plots import plot_history
        from rayfit.serving.pyfunc_model import log_pyfunc_model

        plot_history(history, Path(plot))

        mlflow.set_tracking_uri(self.uri)  # log_model has only the fluent API
        with mlflow.start_run(run_id=self.run_id):
            log_pyfunc_model(Path(model_dir), "model")
        if test_metrics:
            self.client.log_batch(self.run_id, metrics=metric_list(test_metrics, step=0))
        for path, folder in files:
            if Path(path).is_file():
                self.client.log_artifact(self.run_id, path, artifact_path=folder)
        self.end("FINISHED")

    def end(self, status: str) -> None:
        """Wait for pending writes and close the run: FINISHED, KILLED (paused, cancelled) or FAILED."""
        self._stop_monitor()
        self.flush()
        self.client.set_terminated(self.run_id, status=status)
