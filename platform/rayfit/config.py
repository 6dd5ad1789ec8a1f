"""Typed experiment schema: YAML/JSON load, dotted overrides, and the flat seed format.

Every section forbids unknown keys, so a typo fails loudly (with a suggestion) instead of
being ignored. Errors surface as ConfigError, one line naming the file and the field.
"""

from __future__ import annotations

import difflib
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rayfit.backends.registry import BACKENDS, NAMES
from rayfit.errors import ConfigError
from rayfit.safe_yaml import load_json, load_yaml
from rayfit.seed_format import from_seed_format, is_seed_format
from rayfit.tuning.settings import TuneConfig


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated, numbers
    are finite (an `inf` learning rate trains nothing) and true/false is not a number."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _bool_is_not_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        """pydantic takes true as 1 for an int field (`epochs: true` would train one epoch)."""
        items = value if isinstance(value, (list, tuple)) else [value]
        takes = leaf_types(cls.model_fields[info.field_name].annotation)
        numeric = bool(takes & {int, float}) and not takes & {bool, Any}
        if numeric and any(isinstance(v, bool) for v in items):
            raise ValueError("expected a number, not true/false")
        return value


def leaf_types(annotation: Any) -> set[Any]:
    """The plain types a field's annotation is made of: int | tuple[int, int] -> {int, tuple}."""
    args = get_args(annotation)
    return {annotation} if not args else {leaf for arg in args for leaf in leaf_types(arg)}


PositiveInt = Annotated[int, Field(gt=0)]


class DataConfig(Section):
    """Where the data comes from, which columns to use and how to split and clean it."""

    source: str = Field(description="CSV, Parquet or .npz path, or sklearn:NAME")
    val_source: str | None = None
    test_source: str | None = None
    features: list[str] | None = None
    target: str | None = None
    task: Literal["auto", "binary", "multiclass", "regression"] = "auto"
    val_fraction: float = Field(0.15, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.15, ge=0.0, lt=1.0)
    standardize: bool = True
    missing: Literal["error", "drop", "mean"] = "error"
    categorical: list[str] = Field(
        default_factory=list, description="string feature columns to one-hot encode"
    )
    image_shape: list[PositiveInt] | None = Field(
        None, description="channels, height, width of each row for the cnn model"
    )
    streaming: bool = Field(
        False,
        description="read CSV/Parquet rows in blocks through Ray Data instead of loading them all: "
        "for data larger than a worker's memory (numeric features; missing: error or drop)",
    )
    shuffle_buffer: int = Field(
        10_000, ge=1, description="rows each worker shuffles among when streaming"
    )

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> "DataConfig":
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"val_fraction + test_fraction must be below 1, got {self.val_fraction} + "
                f"{self.test_fraction}"
            )
        return self

    @model_validator(mode="after")
    def _streaming_limits(self) -> "DataConfig":
        """What a single streaming pass cannot do: one-hot vocabularies and mean fills would need
        a pass of their own before the statistics (the in-memory path does them)."""
        if not self.streaming:
            return self
        if self.categorical:
            raise ValueError("streaming needs numeric features; one-hot encode the categorical "
                             "columns beforehand or set streaming: false")
        if self.missing == "mean":
            raise ValueError("missing 'mean' is not available with streaming; use error or drop")
        return self


class ModelConfig(Section):
    """Model by name (mlp, cnn) or by import path 'package.module:function'."""

    type: str = "mlp"
    hidden_units: list[PositiveInt] = Field(default_factory=lambda: [128, 64])
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    activation: Literal["relu", "gelu", "tanh", "sigmoid", "leaky_relu", "silu"] = "relu"
    batch_norm: bool = False
    channels: list[PositiveInt] = Field(default_factory=lambda: [16, 32], description="cnn conv widths")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="passed to a user model")


class ParamGroupConfig(Section):
    """Optimizer settings for the parameters of one named sub-module."""

    module: str
    lr: float | None = Field(None, gt=0)
    weight_decay: float | None = Field(None, ge=0)


class OptimizerConfig(Section):
    name: Literal["sgd", "adagrad", "rmsprop", "adam", "adamw"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    # torch and Keras check only momentum >= 0; 1 or more makes every update grow without bound
    momentum: float = Field(0.0, ge=0, lt=1)
    nesterov: bool = False
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    param_groups: list[ParamGroupConfig] = Field(default_factory=list)


class ScheduleConfig(Section):
    """An LR schedule, applied per epoch or per optimizer step, with optional linear warmup.

    Parameter names follow torch.optim.lr_scheduler so a torch user reads them as they are.
    """

    name: str = "constant"  # constant|step|multistep|exponential|cosine|cosine_restarts|
    #                         plateau|cyclic|onecycle|package.module:function
    interval: Literal["epoch", "step"] = "epoch"
    warmup: int = Field(0, ge=0, description="warmup length in intervals")
    warmup_start_factor: float = Field(0.1, gt=0, le=1)
    step_size: int = Field(10, gt=0)
    gamma: float = Field(0.1, gt=0)
    milestones: list[int] = Field(default_factory=lambda: [30, 60])
    T_max: int = Field(10, gt=0)
    eta_min: float = Field(0.0, ge=0)
    T_0: int = Field(10, gt=0)
    T_mult: int = Field(1, ge=1)
    monitor: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    factor: float = Field(0.1, gt=0, lt=1)
    patience: int = Field(10, ge=0)
    threshold: float = Field(1e-4, ge=0)
    min_lr: float = Field(0.0, ge=0)
    base_lr: float = Field(1e-3, gt=0)
    max_lr: float = Field(1e-2, gt=0)
    step_size_up: int = Field(2000, gt=0)
    cyclic_mode: Literal["triangular", "triangular2", "exp_range"] = "triangular"
    total_steps: int | None = Field(None, gt=0)
    pct_start: float = Field(0.3, gt=0, lt=1)
    div_factor: float = Field(25.0, gt=0)
    final_div_factor: float = Field(1e4, gt=0)
    anneal_strategy: Literal["cos", "linear"] = "cos"


class TrainerConfig(Section):
    epochs: int = Field(10, gt=0)
    batch_size: int = Field(32, gt=0)
    eval_batch_size: int = Field(1024, gt=0)
    grad_clip_norm: float | None = Field(None, gt=0)
    grad_clip_value: float | None = Field(None, gt=0)
    accumulate: int = Field(1, gt=0, description="micro-batches per optimizer step")
    precision: Literal["32", "bf16", "fp16"] = "32"
    seed: int = 0
    progress: Literal["auto", "bar", "log", "none"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, value: Any) -> Any:
        """`precision: 32` in YAML (or --set trainer.precision=32) reads as an int; accept it."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class EarlyStoppingConfig(Section):
    enabled: bool = False
    monitor: str = "val_loss"
    mode: Literal["auto", "min", "max"] = "auto"
    patience: int = Field(5, ge=0)
    min_delta: float = Field(0.0, ge=0)
    baseline: float | None = None
    start_from_epoch: int = Field(0, ge=0)
    restore_best: bool = True


class CheckpointConfig(Section):
    every_epochs: int = Field(1, ge=0, description="0 turns epoch checkpoints off")
    every_steps: int = Field(0, ge=0, description="0 turns step checkpoints off")
    keep_last: int = Field(2, ge=1)
    keep_best: int = Field(1, ge=0)
    monitor: str = "val_loss"
    mode: Literal["auto", "min", "max"] = "auto"
    on_exception: bool = True


class TrackingConfig(Section):
    enabled: bool = True
    uri: str | None = Field(None, description="MLflow tracking URI; default sqlite:///mlflow.db")
    experiment: str = "rayfit"
    storage: str = Field("runs", description="folder that holds each run's outputs")
    system_metrics_s: float = Field(
        10.0, ge=0, description="seconds between CPU/memory/GPU samples logged to MLflow; 0 = off"
    )
    tensorboard: bool = Field(
        False, description="also write the epoch metrics as TensorBoard scalars in runs/NAME/tensorboard"
    )
    wait_for_epochs: bool = Field(
        False, description="write each epoch's metrics before the next epoch starts (rayfit tune's trials: "
        "a scheduler ends a trial's process at once); otherwise a second's epochs are written together",
    )


def worker_bundle(resources: dict[str, float] | None, use_gpu: bool) -> dict[str, float]:
    """What one Ray Train worker asks Ray for: resources_per_worker (default 1 CPU), plus a GPU
    when use_gpu and it names none."""
    bundle = dict(resources or {"CPU": 1.0})
    if use_gpu:
        bundle.setdefault("GPU", 1.0)
    return bundle


class ScalingConfig(Section):
    """Where the loop runs: 0 workers trains in this process; 1 or more run it in Ray Train
    workers (a (min, max) pair makes the group elastic)."""

    num_workers: int | tuple[int, int] | Literal["auto"] = Field(
        "auto",
        description="auto = in this process, or 1 Ray Train worker when there is a cluster to use "
        "(scaling.address, RAY_ADDRESS as under `ray job submit`) or use_gpu; 0 = in-process; "
        "N = N Ray Train workers; [min, max] = elastic",
    )
    use_gpu: bool = False
    resources_per_worker: dict[str, float] | None = None
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    max_failures: int = Field(3, ge=-1, description="worker-group restarts from the last checkpoint")
    address: str | None = Field(None, description="Ray cluster address; default: RAY_ADDRESS or a local Ray")
    storage_path: str | None = Field(
        None,
        description="where Ray Train keeps the checkpoints it restarts from: a folder every node "
        "sees (NFS) or a URI pyarrow opens (s3://, gs://, file://); default: the run folder",
    )

    @field_validator("storage_path")
    @classmethod
    def _storage_opens(cls, value: str | None) -> str | None:
        if value is not None and "://" in value:
            import pyarrow.fs

            try:
                pyarrow.fs.FileSystem.from_uri(value)
            except (pyarrow.ArrowInvalid, pyarrow.ArrowNotImplementedError, OSError) as exc:
                raise ValueError(f"pyarrow cannot open it ({str(exc).splitlines()[0]})") from None
        return value

    @field_validator("resources_per_worker")
    @classmethod
    def _resources_place_a_worker(cls, value: dict[str, float] | None, info: ValidationInfo) -> dict[str, float] | None:
        if not value:
            return None  # {} is the default: 1 CPU a worker
        if not all(math.isfinite(amount) and amount >= 0 for amount in value.values()):
            raise ValueError("expected amounts of 0 or more")
        if not any(worker_bundle(value, bool(info.data.get("use_gpu"))).values()):
            # Ray cannot place a worker that asks for nothing (its placement group refuses the bundle)
            raise ValueError("expected at least one resource above 0, for example {CPU: 0.5}")
        return value

    @field_validator("num_workers")
    @classmethod
    def _workers_make_sense(cls, value: int | tuple[int, int] | str) -> int | tuple[int, int] | str:
        if value == "auto":
            return value
        low, high = value if isinstance(value, tuple) else (value, value)
        if low < 0 or high < low or (isinstance(value, tuple) and low < 1):
            raise ValueError("expected 0 or more workers, or [min, max] with 1 <= min <= max")
        return value

    def resolved(self) -> "ScalingConfig":
        """num_workers 'auto' made concrete: Ray Train (1 worker) only when there is something to
        distribute to or recover on (a cluster address, RAY_ADDRESS, a GPU per worker)."""
        if self.num_workers != "auto":
            return self
        cluster = self.address or os.environ.get("RAY_ADDRESS") or self.use_gpu
        return self.model_copy(update={"num_workers": 1 if cluster else 0})

    @property
    def distributed(self) -> bool:
        return self.max_workers > 0

    @property
    def max_workers(self) -> int:
        workers = self.num_workers
        if workers == "auto":
            raise ValueError("scaling.num_workers 'auto' is resolved by ScalingConfig.resolved() first")
        return workers[1] if isinstance(workers, tuple) else workers


class ExperimentConfig(Section):
    """One experiment file, resolved."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    backend: Literal[NAMES] = "torch"  # a name in backends/registry.py
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    scaling: ScalingConfig = Field(default_factory=ScalingConfig)
    # A sweep's settings (`rayfit tune`): left out of dumps, so a run folder, MLflow params and a
    # trial's config hold the experiment alone.
    tune: TuneConfig | None = Field(None, exclude=True)

    def flat(self) -> dict[str, Any]:
        """The resolved config as dotted keys, for MLflow params and config diffs."""
        return flatten(self.model_dump(mode="json"))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


# --------------------------------------------------------------------------- loading


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML/JSON experiment (nested or flat seed format), apply `k=v` overrides, validate."""
    path = Path(path)
    raw = read_mapping(path)
    if is_seed_format(raw):
        raw = from_seed_format(raw, path)
    raw.setdefault("name", path.stem)
    for item in overrides or []:
        apply_override(raw, item)
    return validate(raw, source=str(path))


def read_mapping(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; expected an experiment file (YAML or JSON)")
    if not path.is_file():
        raise ConfigError(f"{path}: experiment file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (line {line}, byte {exc.start + 1}); save the experiment file as UTF-8"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the experiment file ({exc.strerror})") from exc
    try:
        data = load_json(text) if path.suffix == ".json" else load_yaml(text)
    except (yaml.YAMLError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        kind = path.suffix.lstrip(".") or "YAML"
        raise ConfigError(f"{path}: not valid {kind}: {parse_problem(exc)}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def parse_problem(exc: Exception) -> str:
    """One line for a YAML/JSON parse error: what was wrong and where (PyYAML spreads it over lines)."""
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return str(exc).strip().splitlines()[0]


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one `dotted.key=value` override; the value is parsed as YAML (so 5, true, [1,2])."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, for example trainer.epochs=5")
    try:
        value = load_yaml(text) if text else ""
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"--set {item!r}: the value is not valid YAML ({parse_problem(exc)}); quote text"
        ) from exc
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {item!r}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def validate(raw: dict[str, Any], source: str = "config") -> ExperimentConfig:
    try:
        cfg = ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe(exc.errors()[0])}") from exc
    problem = backend_limits(cfg)
    if problem:
        raise ConfigError(f"{source}: {problem}")
    return cfg


def backend_limits(cfg: ExperimentConfig) -> str | None:
    """What the chosen backend cannot do with this config, as 'field: why', or None.

    Checks that need the model or the device (param_groups modules, fp16 without a GPU) are the
    backend's own, made when it is built."""
    if cfg.data.streaming and not BACKENDS[cfg.backend].streams:
        streaming = ", ".join(name for name, entry in BACKENDS.items() if entry.streams)
        return f"data.streaming: streams rows to the {streaming} backend only so far; set data.streaming: false"
    return None


def describe(error: dict[str, Any]) -> str:
    """One line for one pydantic error: the dotted field, what was wrong, a suggestion if any."""
    loc = [str(p) for p in error["loc"]]
    field = ".".join(loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        hint = suggest(loc)
        return f"unknown key {field}" + (f"; did you mean {hint}?" if hint else "")
    if error["type"] == "missing":
        return f"{field}: required but missing"
    got = error.get("input")
    got_text = "" if isinstance(got, dict) else f", got {got!r}"
    return f"{field}: {error['msg'].removeprefix('Value error, ')}{got_text}"


def suggest(loc: list[str]) -> str | None:
    """The closest valid key to an unknown one, found by walking the schema along loc."""
    model: type[BaseModel] = ExperimentConfig
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    match = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1)
    return ".".join(loc[:-1] + match) if match else None
