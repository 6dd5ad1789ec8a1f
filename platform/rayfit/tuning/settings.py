"""The `tune:` section of an experiment file: what to optimise, the search space, the scheduler.

Its own module, imported by config.py; it knows nothing of Ray (the CLI checks a sweep before Ray
is imported). Values are checked here one by one; whether a dotted path names a config field is
checked against the experiment schema in space.py.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

KINDS = ("loguniform", "uniform", "randint", "choice", "grid")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def check_distribution(spec: Any) -> None:
    """One search-space entry, `{kind: args}`: raises ValueError saying what is wrong with it."""
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ValueError(f"expected one of {{{': ..., '.join(KINDS)}: ...}}, got {spec!r}")
    ((kind, args),) = spec.items()
    if kind not in KINDS:
        raise ValueError(f"unknown distribution {kind!r}; expected one of {', '.join(KINDS)}")
    if kind in ("choice", "grid"):
        if not isinstance(args, list) or not args:
            raise ValueError(f"{kind}: expected a non-empty list of values, got {args!r}")
        return
    numbers = isinstance(args, list) and len(args) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in args)
    if not numbers:
        raise ValueError(f"{kind}: expected [low, high], two numbers, got {args!r}")
    low, high = args
    if kind == "randint" and not all(isinstance(v, int) for v in args):
        raise ValueError(f"randint: expected two integers [low, high), got {args!r}")
    if low > high or (kind == "randint" and low == high):
        raise ValueError(f"{kind}: low {low} is above high {high}" if low > high
                         else f"randint: [low, high) is empty for {args!r}")
    if kind == "loguniform" and low <= 0:
        raise ValueError(f"loguniform: bounds must be positive, got {args!r}")


def check_space(space: dict[str, Any]) -> dict[str, Any]:
    for path, spec in space.items():
        try:
            check_distribution(spec)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    return space


class FifoOptions(Strict):
    """Every trial runs all its epochs."""


class AshaOptions(Strict):
    grace_period: int = Field(1, gt=0, description="epochs before a trial may be stopped")
    reduction_factor: float = Field(3, gt=1)
    max_t: int | None = Field(None, gt=0, description="default: trainer.epochs")
    brackets: int = Field(1, gt=0, description="Ray's ASHA brackets: bracket k starts at grace_period x "
                                                "reduction_factor^k (more kept, more epochs)")


class HyperbandOptions(Strict):
    reduction_factor: float = Field(3, gt=1)
    max_t: int | None = Field(None, gt=0, description="default: trainer.epochs")


class MedianStoppingOptions(Strict):
    grace_period: int = Field(1, gt=0)
    min_samples_required: int = Field(3, gt=0)


class PbtOptions(Strict):
    perturbation_interval: int = Field(1, gt=0, description="epochs between exploit/explore steps")
    mutations: dict[str, Any] = Field(default_factory=dict, description="a search space of the same form")
    quantile_fraction: float = Field(0.25, gt=0, le=0.5)
    resample_probability: float = Field(0.25, ge=0, le=1)
    synch: bool = Field(False, description="exploit when every trial reached the interval (reproducible)")

    @field_validator("mutations")
    @classmethod
    def _mutations(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_space(value)


SCHEDULERS: dict[str, type[Strict]] = {
    "fifo": FifoOptions, "asha": AshaOptions, "hyperband": HyperbandOptions,
    "median_stopping": MedianStoppingOptions, "pbt": PbtOptions,
}


class SearcherConfig(Strict):
    name: Literal["random", "grid", "optuna"] = "random"
    seed: int | None = Field(None, description="seed of the sampler: the same sweep samples the same configs")


class TuneConfig(Strict):
    """A sweep: `num_samples` draws of `search_space` (times each `grid` combination)."""

    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    num_samples: int = Field(1, gt=0)
    max_concurrent_trials: int | Literal["auto"] = "auto"
    time_budget_s: float | None = Field(None, gt=0)
    search_space: dict[str, Any] = Field(default_factory=dict)
    scheduler: dict[str, Any] = Field(default_factory=lambda: {"name": "fifo"})
    searcher: SearcherConfig = Field(default_factory=SearcherConfig)

    @field_validator("search_space")
    @classmethod
    def _search_space(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_space(value)

    @field_validator("max_concurrent_trials")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("expected auto or a number of trials of 1 or more")
        return value

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, value: dict[str, Any]) -> dict[str, Any]:
        scheduler_options(value)
        return value

    def scheduler_name(self) -> str:
        return str(self.scheduler.get("name", "fifo"))

    def scheduler_options(self) -> Strict:
        return scheduler_options(self.scheduler)


def scheduler_options(raw: dict[str, Any]) -> Strict:
    """The options of `{name: ..., option: ...}`, checked against that scheduler's own."""
    name = raw.get("name", "fifo")
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; expected one of {', '.join(SCHEDULERS)}")
    options = {k: v for k, v in raw.items() if k != "name"}
    model = SCHEDULERS[name]
    unknown = sorted(set(options) - set(model.model_fields))
    if unknown:
        known = ", ".join(model.model_fields) or "none"
        raise ValueError(f"{name} has no option {unknown[0]!r} (its options: {known})")
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise ValueError(f"{name} {where}: {error['msg'].removeprefix('Value error, ')}") from None
