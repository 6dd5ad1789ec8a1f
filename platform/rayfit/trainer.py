"""Trainer: the Python API. Checks the input, opens the run folder and the MLflow run, then runs
the loop in this process (`scaling.num_workers: 0`) or in Ray Train workers (1 or more)."""

from __future__ import annotations

from pathlib import Path

from rayfit.backends import driver_device
from rayfit.callbacks.checkpoint import CheckpointIndex
from rayfit.callbacks.epoch_hook import EpochFn
from rayfit.callbacks.mlflow_tracking import open_mlflow_run
from rayfit.config import ExperimentConfig, load_experiment
from rayfit.data.streaming import StreamedData, plan_stream
from rayfit.errors import CheckpointError
from rayfit.paths import resolve_paths
from rayfit.run_folder import RunFolder
from rayfit.session import RAY_VERSION, FitResult, Session

__all__ = ["FitResult", "Trainer"]


class Trainer:
    """`Trainer(config).fit()` trains one experiment; re-running it resumes an unfinished run."""

    def __init__(
        self,
        config: ExperimentConfig | str | Path,
        overrides: list[str] | None = None,
        resume: bool = False,
        extend: bool = False,
    ) -> None:
        """`extend`: train a finished run on to a larger trainer.epochs from its last checkpoint."""
        cfg = config if isinstance(config, ExperimentConfig) else load_experiment(config, overrides)
        # Workers run elsewhere (another folder, another node): every path is made absolute here.
        self.config = resolve_paths(cfg)
        self.resume = resume
        self.extend = extend
        self._epoch_functions: list[EpochFn] = []

    def register_progress_callback(self, fn: EpochFn) -> None:
        """Call `fn(epoch, metrics)` after each epoch, with plain float metrics (on the process
        that runs rank 0: with Ray Train, a worker, so `fn` must be picklable)."""
        self._epoch_functions.append(fn)

    def fit(self) -> FitResult:
        cfg = self.config
        run = RunFolder.for_config(cfg)
        run.check_resumable(cfg, extend=self.extend)
        latest = CheckpointIndex(run.checkpoints).latest
        for flag, wanted in (("--resume", self.resume), ("--extend", self.extend)):
            if wanted and latest is None:
                raise CheckpointError(f"{run.path}: {flag} was given but there is no checkpoint to resume")
        # Building the session checks data, model, optimizer and schedule before anything is written
        # (on torch's meta device when workers train: no memory used, and the driver may have no GPU).
        device = driver_device(cfg) if cfg.scaling.distributed else None
        # Streamed data is checked and its statistics fitted here, in one pass over the files.
        data = plan_stream(cfg.data, cfg.trainer.seed) if cfg.data.streaming else None
        session = Session(cfg, run, epoch_functions=self._epoch_functions, device=device, data=data)
        if not cfg.scaling.distributed:
            if data is not None:
                stream_here(cfg, data)
            return self._fit_here(session, run, latest, self.extend)
        from rayfit.distributed.launch import fit_with_ray

        del session  # the workers build their own

        def start() -> str | None:
            """After the cluster has been checked: open the MLflow run and mark the folder running."""
            run_id = open_mlflow_run(cfg, run.path) if cfg.tracking.enabled else None
            if self.extend:
                run.write_config(cfg)
            run.start(cfg, mlflow_run_id=run_id, ray_version=RAY_VERSION)
            return run_id

        return fit_with_ray(cfg, run, self._epoch_functions, start, stream=data)

    @staticmethod
    def _fit_here(session: Session, run: RunFolder, latest: Path | None, extend: bool) -> FitResult:
        """The in-process path: resume from the run folder's latest checkpoint, train, finish."""
        if latest is not None:
            session.restore(latest)  # a corrupt file fails here, before anything is written
        run_id = None
        if session.tracking is not None:
            run_id = open_mlflow_run(session.cfg, run.path)
            session.tracking.attach(run_id)
        if extend:  # the run becomes the longer one right as it is marked running
            run.write_config(session.cfg)
        run.start(session.cfg, mlflow_run_id=run_id, ray_version=RAY_VERSION)
        state = session.train()
        if state.interrupted:
            return FitResult(run.path, state.history, state.stop_reason, mlflow_run_id=run_id, interrupted=True)
        return session.finish(state)


def stream_here(cfg: ExperimentConfig, data: StreamedData) -> None:
    """Streaming in this process: Ray Data (on a local Ray, or scaling.address) reads the rows."""
    from rayfit.data.ray_feed import split_datasets
    from rayfit.distributed.launch import connect

    connect(cfg.scaling)
    datasets = split_datasets(data)
    data.shard = lambda split: datasets[split].iterator()
