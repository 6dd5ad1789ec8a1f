"""The sweep driver: check a `tune:` experiment, plan its concurrency from what a trial needs,
run it on Ray Tune (or continue it after a crash), then write and log its outputs."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rayfit import logs
from rayfit.config import ExperimentConfig, load_experiment
from rayfit.errors import ConfigError
from rayfit.paths import resolve_paths
from rayfit.run_folder import RunFolder
from rayfit.tuning import provenance

if TYPE_CHECKING:  # outputs imports matplotlib and MLflow: not before the experiment is checked
    from rayfit.tuning.outputs import TrialOutcome

TUNE_DIR = "tune"  # Ray Tune's folder inside the sweep's: a stable name, so a re-run continues it
TRIALS_DIR = "trials"


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """The experiment with its tune: section, paths made absolute, every refusal made now."""
    from rayfit.tuning.space import check_sweep

    cfg = load_experiment(path, overrides)
    if cfg.tune is None:
        raise ConfigError(f"{path}: has no tune: section; add one (see experiments/digits_sweep.yaml) "
                          "or train it with `rayfit train`")
    cfg = resolve_paths(cfg)
    check_sweep(cfg)
    return cfg


def sweep_folder(cfg: ExperimentConfig) -> Path:
    return Path(cfg.tracking.storage) / cfg.name


@dataclass
class Plan:
    """What a sweep will spend: trials, how many run at once, and at most how many epochs."""

    trials: int
    concurrency: int
    trial_cpus: float
    cpus: float
    most_epochs: int

    def lines(self) -> list[str]:
        return [f"trials: {self.trials}",
                f"concurrency: {self.concurrency} (a trial needs {self.trial_cpus:g} CPU of {self.cpus:g})",
                f"most epochs: {self.most_epochs} ({self.trials} trials x at most "
                f"{self.most_epochs // max(self.trials, 1)} epochs)"]


def trial_cpus(cfg: ExperimentConfig) -> float:
    """CPUs one trial holds: one for its own process (the loop, or the driver of its Ray Train run,
    which waits on its workers: counting it avoids the deadlock of drivers holding every CPU)."""
    scaling = cfg.scaling
    if not scaling.distributed:
        return 1.0
    from rayfit.distributed.launch import worker_resources

    return 1.0 + worker_resources(scaling).get("CPU", 0.0) * scaling.max_workers


def plan(cfg: ExperimentConfig, cpus: float | None = None) -> Plan:
    """The sweep's plan on `cpus` (default: this machine's)."""
    from rayfit.tuning.space import trial_count

    assert cfg.tune is not None
    cpus = float(cpus if cpus is not None else os.cpu_count() or 1)
    need = trial_cpus(cfg)
    fits = math.floor(cpus / need + 1e-9)
    if fits < 1:
        raise ConfigError(f"scaling: a trial needs {need:g} CPUs (1 for its driver + its workers') "
                          f"and Ray has {cpus:g}; use fewer workers or resources_per_worker: {{CPU: 0.5}}")
    trials = trial_count(cfg)
    wanted = fits if cfg.tune.max_concurrent_trials == "auto" else min(cfg.tune.max_concurrent_trials, fits)
    return Plan(trials, max(1, min(wanted, trials)), need, cpus, trials * cfg.trainer.epochs)


def reuses_processes(cfg: ExperimentConfig) -> bool:
    """Whether a trial's process takes the next trial (Tune's reuse_actors, off by default): a new
    process costs a trial seconds of imports (torch, scikit-learn). Only for trials that train in
    their process under a scheduler that stops trials and never pauses them (PBT, HyperBand and the
    median rule pause): Tune keeps a stopped trial's process, its loop waiting in `ray.tune.report`,
    until it hands it on; a Ray Train run would go on meanwhile, and a paused trial resumed
    elsewhere would find its run still locked."""
    assert cfg.tune is not None
    return not cfg.scaling.distributed and cfg.tune.scheduler_name() in ("fifo", "asha")


@dataclass
class SweepResult:
    folder: Path
    trials: list[TrialOutcome]
    best: TrialOutcome | None

    @property
    def failed(self) -> list[TrialOutcome]:
        return [t for t in self.trials if t.stop_reason.startswith("error")]


def run_sweep(cfg: ExperimentConfig, trust_folder: bool = False) -> SweepResult:
    """Run the sweep (or continue it: finished trials stay done, unfinished ones resume from their
    run folders, ASHA keeps its rungs), then write trials.csv, best.yaml and the plots. A sweep
    folder rayfit did not make here is continued only with `trust_folder` (see provenance)."""
    import ray
    from ray import tune

    from rayfit.callbacks.mlflow_tracking import open_mlflow_run, tracking_uri
    from rayfit.distributed.launch import connect
    from rayfit.tuning import outputs
    from rayfit.tuning.placement import FreeStoppedTrials
    from rayfit.tuning.schedulers import STATE_FILE, build_scheduler, build_searcher
    from rayfit.tuning.space import param_space
    from rayfit.tuning.table import TrialTable
    from rayfit.tuning.trial import TrialSetup, run_trial

    assert cfg.tune is not None
    folder = sweep_folder(cfg)
    provenance.check(folder, folder / TUNE_DIR, trust_folder)  # before Ray reads anything of it
    if not logs.verbose():  # Tune's own boxes and tables: the trial table says what matters
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    connect(cfg.scaling)
    the_plan = plan(cfg, ray.cluster_resources().get("CPU", 0.0))
    folder.mkdir(parents=True, exist_ok=True)
    parent = open_mlflow_run(cfg, folder) if cfg.tracking.enabled else None
    scheduler_name = cfg.tune.scheduler_name()
    setup = TrialSetup(cfg.model_dump(mode="json"), str(folder / TRIALS_DIR), parent, scheduler_name == "pbt")
    trainable = tune.with_parameters(run_trial, setup=setup)
    tune_path = folder / TUNE_DIR
    if tune.Tuner.can_restore(str(tune_path)):
        tuner = tune.Tuner.restore(str(tune_path), trainable, resume_unfinished=True, resume_errored=True)
    else:
        provenance.mark(folder)
        (folder / STATE_FILE).unlink(missing_ok=True)  # rungs of an earlier start are not this sweep's
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(cfg),
            tune_config=tune.TuneConfig(
                metric=cfg.tune.metric, mode=cfg.tune.mode, num_samples=cfg.tune.num_samples,
                scheduler=build_scheduler(cfg, folder), search_alg=build_searcher(cfg, the_plan.concurrency),
                time_budget_s=cfg.tune.time_budget_s,
                trial_dirname_creator=trial_dirname,
                reuse_actors=reuses_processes(cfg),
            ),
            run_config=tune.RunConfig(
                name=TUNE_DIR, storage_path=str(folder), verbose=0,
                callbacks=[TrialTable(cfg.tune.metric, cfg.tune.mode, list(cfg.tune.search_space)),
                           FreeStoppedTrials(folder / TRIALS_DIR)],
                # Only PBT trials hand checkpoints to Tune; a donor's must outlive its exploit
                # (Tune deletes it under a recipient restoring from it otherwise): all are kept.
                checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            ),
        )
    grid = tuner.fit()
    stopper = "the time budget" if scheduler_name == "fifo" else f"the {scheduler_name} scheduler"
    outcomes = [
        outputs.read_trial(RunFolder(folder / TRIALS_DIR / Path(r.path).name),
                           {k: r.config[k] for k in cfg.tune.search_space if k in r.config}, r.error, stopper)
        for r in grid
    ]
    outputs.end_stopped(outcomes, tracking_uri(cfg) if parent is not None else None)
    best = outputs.score(outcomes, cfg.tune.metric, cfg.tune.mode)
    files = [outputs.write_table(outcomes, cfg.tune.metric, folder / "trials.csv")]
    if best is not None:
        files.append(outputs.write_best(RunFolder(folder / TRIALS_DIR / best.trial_id), cfg, folder / "best.yaml"))
    files.append(outputs.plot_curves(outcomes, cfg.tune.metric, best, folder / "plots" / "curves.png"))
    files.append(outputs.plot_parallel(outcomes, cfg.tune.metric, folder / "plots" / "parallel.png"))
    if parent is not None:
        outputs.close_parent(tracking_uri(cfg), parent, cfg.tune.metric, best, files)
    return SweepResult(folder, outcomes, best)


def trial_dirname(trial) -> str:  # noqa: ANN001 (a ray.tune Trial)
    """Tune's folder of a trial is named by its id alone, like the trial's run folder."""
    return trial.trial_id
