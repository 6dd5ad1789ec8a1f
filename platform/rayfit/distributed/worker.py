"""The function each Ray Train worker runs: the same Session as in-process, as one rank."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import ray.train

from rayfit import logs
from rayfit.backends import worker_device
from rayfit.callbacks.checkpoint import CheckpointIndex
from rayfit.config import validate
from rayfit.distributed.ray_report import CHECKPOINT_STEM, RayReport
from rayfit.loop import TrainingFailed
from rayfit.run_folder import RunFolder
from rayfit.session import Session

log = logging.getLogger("rayfit")


def train_worker(config: dict[str, Any]) -> None:
    """Build the rank's session, restore the newest checkpoint if any, and run it.

    A failed run (NaN) is recorded in run.json and returns normally: Ray would otherwise restart
    the group and fail the same way max_failures times."""
    logs.configure_worker()
    cfg = validate(config["experiment"], source="worker config")
    run = RunFolder(Path(config["run_dir"]))
    rank = ray.train.get_context().get_world_rank()
    stream = config["stream"]
    if stream is not None:  # this rank's rows come from Ray Data
        stream.shard = ray.train.get_dataset_shard
    device = worker_device(cfg)  # as Ray assigned it (torch); TF picks its own
    session = Session(
        cfg, run, rank=rank, device=device, reporter=RayReport, data=stream, callbacks=config["callbacks"],
        extend=config["extend"],
    )
    local = CheckpointIndex(run.checkpoints).latest
    sees = local is not None and local.is_file()
    if session.backend.sum_over_ranks([float(sees)])[0] == session.backend.world_size and local:
        # Rank 0's newest checkpoint, when every rank sees the run folder (one node, NFS): Ray
        # holds only some of them (see ray_report), so a restart from it would redo epochs.
        session.restore(local)
    elif (checkpoint := ray.train.get_checkpoint()) is not None:
        with checkpoint.as_directory() as folder:
            session.restore(Path(folder) / (CHECKPOINT_STEM + session.backend.checkpoint_suffix))
    try:
        session.fit(on_start=record_attempt if rank == 0 else None)
    except TrainingFailed:
        return


def record_attempt(session: Session) -> None:
    """Append this start of the group (workers, where it starts from) to run.json's attempts."""
    run, state, world = session.run, session.loop.state, session.backend.world_size
    attempt = {"workers": world, "epoch": state.epoch, "step": state.step, "time": time.time()}
    status = run.status()
    attempts = status.get("attempts", []) + [attempt]
    run.update(status | {"attempts": attempts})
    if len(attempts) > 1:
        log.warning(
            "worker group restarted (attempt %d) with %d worker(s), from epoch %d step %d",
            len(attempts), world, state.epoch, state.step,
        )
