"""Search spaces: dotted config paths checked against the experiment schema, turned into Ray Tune
domains, and a trial's sampled values turned back into a validated experiment config."""

from __future__ import annotations

import copy
import math
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from rayfit.config import ExperimentConfig, suggest, validate
from rayfit.errors import ConfigError
from rayfit.tuning.settings import PbtOptions

# What the loop reports after every epoch (loop.end_epoch and backends/metrics.py), by task.
EVERY_TASK = ("epoch", "train_loss", "learning_rate", "epoch_time_s", "samples_per_s")
BY_TASK = {
    "classification": ("train_accuracy", "val_loss", "val_accuracy"),
    "regression": ("val_loss", "val_mae", "val_rmse", "val_r2"),
}


def tune_domain(spec: dict[str, Any], grid_choices: bool = False) -> Any:
    """A Ray Tune domain for one checked entry; `grid_choices` makes `choice` a grid (searcher grid)."""
    from ray import tune

    ((kind, args),) = spec.items()
    if kind == "grid" or (kind == "choice" and grid_choices):
        return tune.grid_search(list(args))
    return {"loguniform": tune.loguniform, "uniform": tune.uniform, "randint": tune.randint,
            "choice": tune.choice}[kind](*(args if kind != "choice" else [list(args)]))


def param_space(cfg: ExperimentConfig) -> dict[str, Any]:
    """The Tune param_space of a sweep: its dotted paths as keys."""
    assert cfg.tune is not None
    grid = cfg.tune.searcher.name == "grid"
    return {path: tune_domain(spec, grid) for path, spec in cfg.tune.search_space.items()}


def trial_count(cfg: ExperimentConfig) -> int:
    """Tune's count: num_samples draws for each combination of the grid entries."""
    assert cfg.tune is not None
    grid = cfg.tune.searcher.name == "grid"
    sizes = [len(args) for spec in cfg.tune.search_space.values() for kind, args in spec.items()
             if kind == "grid" or (kind == "choice" and grid)]
    return cfg.tune.num_samples * math.prod(sizes)


def trial_config(base: dict[str, Any], params: dict[str, Any], name: str, storage: str) -> ExperimentConfig:
    """The experiment of one trial: the sweep's (`base`, a dump without tune:) with the trial's
    values at their dotted paths, named after the trial, stored under the sweep's folder."""
    raw = copy.deepcopy(base)
    for path, value in params.items():
        set_path(raw, path, value)
    raw["name"] = name
    raw.setdefault("tracking", {})["storage"] = storage
    raw.setdefault("trainer", {})["progress"] = "none"
    raw["tracking"]["wait_for_epochs"] = True  # a scheduler ends a trial's process as soon as it decides
    return validate(raw, source=f"trial {name}")


def set_path(raw: dict[str, Any], path: str, value: Any) -> None:
    """Put `value` at a dotted path of a raw config, as --set does."""
    node = raw
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def check_path(path: str) -> None:
    """Refuse a dotted path that names no config field (a dict field such as model.kwargs takes any key)."""
    model: type[BaseModel] = ExperimentConfig
    parts = path.split(".")
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None or part == "tune":
            hint = suggest(parts[: i + 1])
            raise ConfigError(f"tune.search_space.{path}: unknown config path"
                              + (f"; did you mean {hint}?" if hint else ""))
        if i == len(parts) - 1:
            return
        kinds = [get_origin(a) or a for a in (field.annotation, *get_args(field.annotation))]
        nested = [a for a in kinds if isinstance(a, type)]
        if any(issubclass(a, dict) for a in nested):
            return
        sections = [a for a in nested if issubclass(a, BaseModel)]
        if not sections:
            raise ConfigError(f"tune.search_space.{path}: unknown config path ({'.'.join(parts[: i + 1])} "
                              "is a value, not a section)")
        model = sections[0]


def candidates(spec: dict[str, Any]) -> list[Any]:
    """Values that stand for an entry's whole range: its bounds, or each of its choices."""
    ((kind, args),) = spec.items()
    if kind in ("choice", "grid"):
        return list(args)
    return [args[0], args[1] - 1] if kind == "randint" else list(args)


def check_sweep(cfg: ExperimentConfig, task: str | None = None) -> None:
    """Everything about a sweep that can be refused before a trial starts: each path names a field,
    each value of its range is one that field takes, and the metric is one the loop reports."""
    assert cfg.tune is not None
    base = cfg.model_dump(mode="json")
    spaces = [("search_space", cfg.tune.search_space)]
    options = cfg.tune.scheduler_options()
    if isinstance(options, PbtOptions):
        spaces.append(("scheduler.mutations", options.mutations))
    for label, space in spaces:
        for path, spec in space.items():
            check_path(path)
            if path.split(".")[0] == "scaling":
                raise ConfigError(f"tune.{label}.{path}: a trial's scaling cannot be sampled (the CPUs a trial "
                                  "holds and the sweep's concurrency come from scaling: before it starts); set it there")
            for value in candidates(spec):
                try:
                    trial_config(base, {path: value}, cfg.name, cfg.tracking.storage)
                except ConfigError as exc:
                    problem = str(exc).split(": ", 1)[-1]
                    raise ConfigError(f"tune.{label}.{path}: the value {value!r} is refused ({problem})") from None
    check_metric(cfg, task)


def reported_metrics(cfg: ExperimentConfig, task: str) -> list[str]:
    """The metrics each epoch of this experiment reports (val_ ones only with a validation split)."""
    kind = "regression" if task == "regression" else "classification"
    names = [*EVERY_TASK, *BY_TASK[kind]]
    has_val = cfg.data.val_fraction > 0 or cfg.data.val_source is not None
    return [n for n in names if has_val or not n.startswith("val_")]


def check_metric(cfg: ExperimentConfig, task: str | None = None) -> None:
    """tune.metric must be reported each epoch. The task is read from the data only when it matters."""
    assert cfg.tune is not None
    metric = cfg.tune.metric
    if task is None and cfg.data.task != "auto":
        task = cfg.data.task
    if task is None:
        both = set(reported_metrics(cfg, "regression")) & set(reported_metrics(cfg, "multiclass"))
        if metric in both:
            return
        from rayfit.data import load_dataset

        task = load_dataset(cfg.data, cfg.trainer.seed).info.task
    known = reported_metrics(cfg, task)
    if metric not in known:
        raise ConfigError(f"tune.metric: {metric!r} is not reported by this experiment's loop ({task} task); "
                          f"expected one of {', '.join(known)}")
