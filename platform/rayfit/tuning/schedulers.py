"""Ray Tune schedulers and searchers from the `tune:` section. Schedulers act on our `epoch`
(Tune's training_iteration starts again at 1 when a trial restarts). ASHA keeps its rungs in a
JSON file of the sweep, because Tuner.restore brings back the scheduler as it was at the start
(ray-project/ray#30838)."""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any

from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    PopulationBasedTraining,
    TrialScheduler,
)
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, SearchAlgorithm

from rayfit.config import ExperimentConfig
from rayfit.errors import CheckpointError, ConfigError
from rayfit.tuning.settings import AshaOptions, HyperbandOptions, MedianStoppingOptions, PbtOptions
from rayfit.tuning.space import tune_domain

log = logging.getLogger("rayfit")
TIME_ATTR = "epoch"
STATE_FILE = "scheduler_state.json"


class RungKeepingASHA(ASHAScheduler):
    """ASHA (a trial that reaches max_t ends by itself: it finishes its run) whose rungs (the metric
    each trial had at each milestone) and the bracket each trial was drawn into are written to
    `state_file` after every change, as JSON, and read again by the restored sweep before its first
    decision."""

    def __init__(self, state_file: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state_file = str(state_file)
        self._loaded = False
        self._drawn: dict[str, int] = {}  # trial id -> its bracket (Ray draws it at random)

    def rungs(self) -> list[list[tuple[float, dict[str, float]]]]:
        return [[(m, dict(r)) for m, r in bracket._rungs] for bracket in self._brackets]

    def _load(self) -> None:
        self._loaded = True
        path = Path(self.state_file)
        if not path.is_file():
            return
        try:  # a sweep folder may come from someone else: plain JSON, checked against our brackets
            saved = json.loads(path.read_text())
            for bracket, rungs in zip(self._brackets, saved["brackets"], strict=True):
                for (milestone, recorded), (saved_milestone, saved_recorded) in zip(bracket._rungs, rungs, strict=True):
                    if float(saved_milestone) != float(milestone):
                        raise ValueError(f"milestone {saved_milestone} is not {milestone}")
                    recorded.update({str(k): float(v) for k, v in saved_recorded.items()})
            for trial_id, index in saved.get("drawn", {}).items():
                if not (type(index) is int and 0 <= index < len(self._brackets)):
                    raise ValueError(f"trial {trial_id} is in bracket {index!r} of {len(self._brackets)}")
                self._drawn[str(trial_id)] = index
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{path}: not this sweep's ASHA state ({exc})") from exc
        log.info("ASHA rungs restored from %s", path.name)

    def _save(self) -> None:
        path = Path(self.state_file)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"brackets": self.rungs(), "drawn": self._drawn}))
        os.replace(tmp, path)

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        if not self._loaded:
            self._load()
        index = self._drawn.get(trial.trial_id)
        if index is None:  # a new trial: Ray draws its bracket
            super().on_trial_add(tune_controller, trial)
            self._drawn[trial.trial_id] = self._brackets.index(self._trial_info[trial.trial_id])
        else:  # a restored trial goes on in the bracket it was drawn into
            self._trial_info[trial.trial_id] = self._brackets[index]

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        self._save()
        return action

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        super().on_trial_complete(tune_controller, trial, result)
        self._save()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled by Tune into tuner.pkl at the start: the rungs come back from the JSON file."""
        state = dict(self.__dict__)
        state["_loaded"] = False
        return state


def build_scheduler(cfg: ExperimentConfig, sweep_dir: Path) -> TrialScheduler:
    """The scheduler the `tune.scheduler` section names, on epochs, up to trainer.epochs."""
    assert cfg.tune is not None
    opts = cfg.tune.scheduler_options()
    epoch = {"time_attr": TIME_ATTR}
    if isinstance(opts, AshaOptions):
        max_t = opts.max_t or cfg.trainer.epochs
        if opts.grace_period > max_t:
            raise ConfigError(f"tune.scheduler: grace_period {opts.grace_period} is more than the "
                              f"{max_t} epochs a trial runs")
        # bracket k's first rung is grace x rf^k: past the last one below max_t, a bracket stops nothing
        useful = max(1, math.floor(math.log(max_t / opts.grace_period, opts.reduction_factor) + 1e-9))
        if opts.brackets > useful:
            raise ConfigError(f"tune.scheduler: brackets {opts.brackets} is more than the {useful} whose first "
                              f"rung (grace_period x reduction_factor^k) comes before epoch {max_t}")
        return RungKeepingASHA(sweep_dir / STATE_FILE, max_t=max_t, grace_period=opts.grace_period,
                               reduction_factor=opts.reduction_factor, brackets=opts.brackets,
                               stop_last_trials=False, **epoch)
    if isinstance(opts, HyperbandOptions):
        return HyperBandScheduler(max_t=opts.max_t or cfg.trainer.epochs, reduction_factor=opts.reduction_factor,
                                  stop_last_trials=False, **epoch)
    if isinstance(opts, MedianStoppingOptions):
        return MedianStoppingRule(grace_period=opts.grace_period, min_samples_required=opts.min_samples_required,
                                  **epoch)
    if isinstance(opts, PbtOptions):
        # Tune suggests reuse_actors for PBT; rayfit leaves it off on purpose (sweep.reuses_processes)
        warnings.filterwarnings("ignore", message="Consider boosting PBT performance", category=UserWarning)
        mutations = {path: tune_domain(spec) for path, spec in opts.mutations.items()}
        return PopulationBasedTraining(
            perturbation_interval=opts.perturbation_interval, hyperparam_mutations=mutations,
            quantile_fraction=opts.quantile_fraction, resample_probability=opts.resample_probability, synch=opts.synch, **epoch,
        )
    return FIFOScheduler()


def build_searcher(cfg: ExperimentConfig, concurrency: int) -> SearchAlgorithm | None:
    """random and grid: Tune's variant generator (grid turns choices into grids); optuna: TPE if
    optuna is installed."""
    assert cfg.tune is not None
    searcher = cfg.tune.searcher
    if searcher.name != "optuna":  # it takes the concurrency limit itself (Tune's is for Searchers)
        return BasicVariantGenerator(random_state=searcher.seed, max_concurrent=concurrency)
    try:
        from ray.tune.search.optuna import OptunaSearch
        import optuna  # noqa: F401  (OptunaSearch imports it only when built)
    except ImportError:
        raise ConfigError("tune.searcher: optuna is not installed; pip install optuna, or use random or grid") from None
    if any("grid" in spec for spec in cfg.tune.search_space.values()):
        raise ConfigError("tune.searcher: optuna samples every entry itself; use choice instead of grid")
    # Optuna warns that a choice of lists (model.hidden_units) cannot go to a persistent study's
    # storage; Tune's study is in memory, where such choices work.
    warnings.filterwarnings("ignore", message="Choices for a categorical distribution should be", category=UserWarning)
    return ConcurrencyLimiter(OptunaSearch(seed=searcher.seed), max_concurrent=concurrency)
