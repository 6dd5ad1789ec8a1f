"""Driver side of Ray Train: connect to (or start) Ray, check the scaling request against the
cluster before any worker starts, and run the loop in a TorchTrainer or TensorflowTrainer that resumes its run."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

import ray
import ray.train

from rayfit import logs
from rayfit.backends.registry import BACKENDS
from rayfit.callbacks.signals import signals_pause
from rayfit.config import ExperimentConfig, ScalingConfig, worker_bundle
from rayfit.control import RunControl
from rayfit.data.ray_feed import split_datasets
from rayfit.data.streaming import StreamedData
from rayfit.distributed.worker import train_worker
from rayfit.errors import ClusterLost, ConfigError
from rayfit.events import Sink, follow
from rayfit.loop import Callback, TrainingFailed
from rayfit.run_folder import RunFolder
from rayfit.session import FitResult, result_from_folder

log = logging.getLogger("rayfit")
CLUSTER_PATIENCE_S = 10.0  # how long the cluster may be silent mid-run before the driver gives up
RAY_RUN_NAME = "ray"  # Ray Train's folder inside the run folder: a stable name, so a re-run resumes


def ray_storage(cfg: ExperimentConfig, run: RunFolder) -> tuple[str, str]:
    """(storage_path, name) of the Ray Train run: run_dir/ray by default, or NAME under
    scaling.storage_path (a shared folder or a pyarrow URI). Both are stable: a re-run resumes."""
    if cfg.scaling.storage_path:
        return cfg.scaling.storage_path, cfg.name
    return str(run.path), RAY_RUN_NAME


def connect(scaling: ScalingConfig) -> None:
    """Join scaling.address (or RAY_ADDRESS, as `ray job submit` sets it); with neither, join the
    cluster `ray start` recorded if it answers, else start a local Ray. Ray's own INFO lines (its
    workers' and Train controller's) stay off unless RAYFIT_VERBOSE=1 (`rayfit -v`)."""
    if ray.is_initialized():
        return
    # Ray Data logs each pass over the data at INFO, 12 lines a time; a local Ray's processes
    # inherit this, workers on a cluster get it from the worker runtime_env below.
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")
    address = scaling.address or os.environ.get("RAY_ADDRESS")
    if address and address not in ("auto", "local"):
        check_reachable(address)
    elif not address:
        address = recorded_cluster()
    if not logs.verbose():  # said once per local Ray start, about Ray's defaults, not about this run
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    try:
        ray.init(
            address=address, log_to_driver=True, configure_logging=False,
            logging_config=None if logs.verbose() else ray.LoggingConfig(encoding="TEXT", log_level="WARNING"),
        )
    except (ConnectionError, TimeoutError, RuntimeError) as exc:
        raise ConfigError(f"scaling.address: cannot connect to Ray at {address!r} ({exc})") from exc


def recorded_cluster(timeout_s: float = 3.0) -> str:
    """The cluster `ray start` recorded (Ray's own ray.init() would wait on it however dead it is),
    if it answers within `timeout_s`; else "local", a new local Ray, said in one line."""
    from ray._private.services import find_bootstrap_address  # Ray's reader of its record file

    recorded = find_bootstrap_address(None)
    if not recorded:
        return "local"
    if not answers(recorded, timeout_s):
        log.warning("the Ray cluster recorded at %s does not answer; starting a local Ray", recorded)
        return "local"
    return recorded


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not after Ray's long retries, when nothing listens at HOST:PORT."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return  # not HOST:PORT: leave it to ray.init
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f"scaling.address: nothing answers at {hostport} ({exc.strerror or exc})") from exc


def worker_resources(scaling: ScalingConfig) -> dict[str, float]:
    return worker_bundle(scaling.resources_per_worker, scaling.use_gpu)


def check_resources(scaling: ScalingConfig, streaming: bool = False) -> None:
    """Refuse a request the cluster cannot place (as it is now: an autoscaler may add nodes).
    Streaming also needs CPU left over for Ray Data's read tasks, or they wait forever."""
    have = ray.cluster_resources()
    if scaling.use_gpu and have.get("GPU", 0) == 0:
        raise ConfigError("scaling.use_gpu: the Ray cluster has no GPU; set scaling.use_gpu: false")
    workers = scaling.num_workers[0] if isinstance(scaling.num_workers, tuple) else scaling.num_workers
    for name, amount in worker_resources(scaling).items():
        if amount * workers > have.get(name, 0):
            raise ConfigError(
                f"scaling.num_workers: {workers} workers x {amount:g} {name} need {amount * workers:g} "
                f"{name}, but the Ray cluster has {have.get(name, 0):g}"
            )
    cpus = worker_resources(scaling).get("CPU", 0) * scaling.max_workers
    if streaming and cpus >= have.get("CPU", 0):
        raise ConfigError(
            f"scaling.resources_per_worker: {scaling.max_workers} workers take all {have.get('CPU', 0):g} "
            "CPUs of the Ray cluster and data.streaming needs some for Ray Data's reads; give each "
            "worker a fraction, for example resources_per_worker: {CPU: 0.5}"
        )


def trainer_class(backend: str) -> type:
    """The Ray Train trainer the backend's registry entry names (imported only then: Ray's
    TensorflowTrainer loads TF)."""
    return BACKENDS[backend].load("ray_trainer")


def fit_with_ray(
    cfg: ExperimentConfig,
    run: RunFolder,
    sinks: list[Sink],
    callbacks: list[Callback],
    control: RunControl,
    extend: bool = False,
    stream: StreamedData | None = None,
) -> FitResult:
    """Run the loop in a TorchTrainer (TensorflowTrainer for backend tensorflow: it sets the
    TF_CONFIG that MultiWorkerMirroredStrategy reads); its run keeps a stable name, so re-running
    resumes it. Rank 0's events reach `sinks` here; SIGTERM/SIGINT here pause the workers through
    the control channel. Streamed data goes to the workers as Ray Data datasets; Ray Train splits
    the train rows."""
    scaling = cfg.scaling
    connect(scaling)
    check_resources(scaling, streaming=stream is not None)
    datasets = split_datasets(stream) if stream is not None else None
    storage, name = ray_storage(cfg, run)
    trainer = trainer_class(cfg.backend)(
        train_worker,
        train_loop_config={
            "experiment": cfg.model_dump(mode="json"),
            "run_dir": str(run.path),
            "callbacks": callbacks,
            "extend": extend,
            "stream": stream,
        },
        datasets=datasets,
        # each rank reads its own part of the train rows; every rank scores all of val and test
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
        scaling_config=ray.train.ScalingConfig(
            num_workers=scaling.num_workers,
            use_gpu=scaling.use_gpu,
            resources_per_worker=worker_resources(scaling),
            placement_strategy=scaling.placement_strategy,
        ),
        run_config=ray.train.RunConfig(
            storage_path=storage,
            name=name,
            failure_config=ray.train.FailureConfig(max_failures=scaling.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            # Train's print patch tees rank 0's lines to stdout and to its logger: each line would
            # show twice in the driver's output.
            worker_runtime_env={
                "env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0", "RAY_DATA_LOG_LEVEL": "WARNING",
                             **logs.worker_env()}
            },
            # the controller's and workers' own lines (each report, each checkpoint path, the group's
            # start): the progress display says what matters; `rayfit -v` shows them all
            logging_config=ray.train.LoggingConfig(log_level="INFO" if logs.verbose() else "WARNING"),
        ),
    )
    try:
        with follow(run.path, sinks), signals_pause(control, persist=True):
            fit_watching_cluster(trainer)
    except ray.train.TrainingFailedError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainingFailed(f"Ray Train stopped after {scaling.max_failures} restart(s): {first}") from exc
    return result_from_folder(run)


def fit_watching_cluster(trainer: Any) -> None:
    """`trainer.fit()` in a thread while this one checks every 2 s that the cluster still answers.
    One silent for CLUSTER_PATIENCE_S, or a fit that fails while it is silent, raises ClusterLost:
    Ray's client would block for a minute, then abort the process with its own fatal log."""
    outcome: dict[str, BaseException] = {}

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as exc:  # handed to the calling thread as it is
            outcome["error"] = exc

    gcs = ray.get_runtime_context().gcs_address
    thread = threading.Thread(target=fit, name="rayfit-fit", daemon=True)
    thread.start()
    silent_since: float | None = None
    while thread.is_alive():
        thread.join(2.0)
        if not thread.is_alive():
            break
        silent_since = None if answers(gcs) else silent_since or time.monotonic()
        if silent_since is not None and time.monotonic() - silent_since > CLUSTER_PATIENCE_S:
            raise cluster_lost(gcs)
    if "error" in outcome:
        if not answers(gcs):
            raise cluster_lost(gcs) from outcome["error"]
        raise outcome["error"]


def answers(address: str, timeout_s: float = 2.0) -> bool:
    """Whether something listens at HOST:PORT within `timeout_s`."""
    try:
        check_reachable(address, timeout_s)
    except ConfigError:
        return False
    return True


def cluster_lost(gcs: str) -> ClusterLost:
    return ClusterLost(
        f"scaling.address: the Ray cluster at {gcs} stopped answering; the run folder keeps its last "
        "checkpoint: run the same command again once the cluster is back"
    )
