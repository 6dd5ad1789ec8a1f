"""Turn a DataConfig into train/val/test float32 arrays plus the DataInfo needed to reuse them.

Order: read -> pick columns -> check types -> missing policy -> task and labels -> split ->
fit one-hot, fill and scaling on the train split -> encode every split.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from rayfit.config import DataConfig
from rayfit.data.columns import (
    blank_to_nan,
    first_missing,
    missing_message,
    prepare_features,
    require_columns,
    to_numeric,
)
from rayfit.data.fingerprint import fingerprint
from rayfit.data.info import DataInfo
from rayfit.data.sources import read_source
from rayfit.errors import ConfigError, DataError

log = logging.getLogger(__name__)

MAX_AUTO_CLASSES = 20  # an integer target with more distinct values is taken as regression
DIGITS_IMAGE_SHAPE = [1, 8, 8]


@dataclass
class Prepared:
    """Encoded, scaled splits ready for a model; val/test may have 0 rows."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    info: DataInfo

    @property
    def train_rows(self) -> int:
        return len(self.x_train)


@dataclass
class _Part:
    """One cleaned table: feature frame (float64 / text columns) and its raw target."""

    x: pd.DataFrame
    y: pd.Series
    source: str


def load_dataset(cfg: DataConfig, seed: int) -> Prepared:
    """Read, clean, split, one-hot encode and standardise the data described by cfg.

    Deterministic for a given seed; every statistic is fitted on the train split only.
    """
    frame = read_source(cfg.source)
    features, target = choose_columns(frame, cfg)
    main = _clean(frame, features, target, cfg, cfg.source)
    given = {
        role: _clean(read_source(source), features, target, cfg, source)
        for role, source in (("val", cfg.val_source), ("test", cfg.test_source))
        if source
    }
    parts = [main, *given.values()]

    task = _resolve_task(cfg.task, main.y)
    if task == "regression":
        labels = [
            to_numeric(p.y, target, p.source, "task regression needs a numeric target").to_numpy()
            for p in parts
        ]
        classes: list = []
    else:
        labels, classes = _encode_labels(parts)
        task = classification_kind(cfg.task, classes, target, cfg.source)

    # Split the main table; a split that comes from its own file is not carved out of it.
    rest = np.arange(len(main.x))
    stratify = labels[0] if task != "regression" else None
    index = {"val": rest[:0], "test": rest[:0]}
    if "test" not in given and cfg.test_fraction > 0:
        rest, index["test"] = _split(rest, cfg.test_fraction, stratify, seed, cfg.source)
    if "val" not in given and cfg.val_fraction > 0:
        whole = 1.0 - (cfg.test_fraction if "test" not in given else 0.0)
        rest, index["val"] = _split(rest, cfg.val_fraction / whole, stratify, seed, cfg.source)
    index["train"] = rest
    by_role = {role: (main.x.iloc[idx], labels[0][idx]) for role, idx in index.items()}
    for i, role in enumerate(given, start=1):
        by_role[role] = (parts[i].x, labels[i])

    x_train, y_train = by_role["train"]
    if task != "regression" and len(np.unique(y_train)) < 2:
        raise DataError(
            f"target {target!r} in {cfg.source} has one class ({classes[y_train[0]]!r}) in the "
            "training rows; classification needs at least two"
        )
    # Overflows (values near 1e308) become inf/NaN here, quietly, and are refused just below.
    with np.errstate(over="ignore", invalid="ignore"):
        info = _fit_info(cfg, task, features, target, classes, x_train, y_train)
        info.fingerprint = fingerprint(by_role)
        arrays = {role: info.scale(info.encode(x)) for role, (x, _) in by_role.items()}
        targets = {role: _target_array(info, y) for role, (_, y) in by_role.items()}
    sources = {"train": cfg.source, "val": cfg.val_source or cfg.source, "test": cfg.test_source or cfg.source}
    for role, (x, _) in by_role.items():
        _refuse_non_finite(arrays[role], info.input_names, x.index, sources[role], cfg.standardize)
        _refuse_non_finite(targets[role][:, None], [target], x.index, sources[role], True)
    return Prepared(
        x_train=arrays["train"],
        y_train=targets["train"],
        x_val=arrays["val"],
        y_val=targets["val"],
        x_test=arrays["test"],
        y_test=targets["test"],
        info=info,
    )


def choose_columns(frame: pd.DataFrame, cfg: DataConfig) -> tuple[list[str], str]:
    """(features, target): target is cfg.target, else 'target', else the last column not listed
    as a feature; features are cfg.features, else every other column."""
    columns = list(frame.columns)
    if cfg.target is not None:
        target = cfg.target
    elif "target" in columns:
        target = "target"
    else:
        others = [c for c in columns if c not in (cfg.features or [])]
        target = others[-1] if others else columns[-1]
    features = (
        list(cfg.features) if cfg.features is not None else [c for c in columns if c != target]
    )
    require_columns(frame, [*features, target, *cfg.categorical], cfg.source)
    if target in features:
        raise ConfigError(f"data.features: {target!r} is also the target; list only input columns")
    if len(set(features)) != len(features):
        twice = next(f for f in features if features.count(f) > 1)
        raise ConfigError(f"data.features: {twice!r} is listed twice")
    if not features:
        raise DataError(f"{cfg.source} has no feature columns besides the target {target!r}")
    for name in cfg.categorical:
        if name not in features:
            raise ConfigError(f"data.categorical: {name!r} is not one of the feature columns")
    return features, target


def _clean(
    frame: pd.DataFrame, features: list[str], target: str, cfg: DataConfig, source: str
) -> _Part:
    """Check columns and types, then apply the missing-value policy (drop rows or error)."""
    require_columns(frame, [*features, target], source)
    x = prepare_features(frame, features, cfg.categorical, source)
    y = blank_to_nan(frame[target])
    if cfg.missing == "error":
        found = first_missing({**{n: x[n] for n in features}, target: y})
        if found:
            raise DataError(
                missing_message(*found, source, "fill them or set data.missing to drop or mean")
            )
    keep = y.notna()
    if cfg.missing == "drop":
        keep &= x.notna().all(axis=1)
    if not keep.all():
        log.info("%s: dropped %d rows with missing values", source, int((~keep).sum()))
        if not keep.any():
            raise DataError(f"{source} has no rows left after dropping rows with missing values")
        x, y = x[keep], y[keep]
    return _Part(x, y.infer_objects(), source)


def _resolve_task(task: str, y: pd.Series) -> str:
    """cfg.task, or for 'auto': text/bool targets and integers with few values -> classification.
    Whole numbers with many values could be either: what was assumed is said in one line."""
    if task != "auto":
        return task
    if is_bool_dtype(y) or not is_numeric_dtype(y):
        return "classification"
    values = y.to_numpy(dtype="float64")
    if not np.all(values == np.round(values)):
        return "regression"
    distinct = len(np.unique(values))
    if distinct > MAX_AUTO_CLASSES:
        log.warning(
            "data.task: target %r holds %d distinct whole numbers, taken as regression; set "
            "data.task: multiclass if they are classes (or data.task: regression to say so)",
            y.name, distinct,
        )
        return "regression"
    return "classification"


def classification_kind(task: str, classes: list, target: str, source: str) -> str:
    if task == "binary" and len(classes) != 2:
        shown = ", ".join(map(repr, classes[:5])) + (", ..." if len(classes) > 5 else "")
        raise DataError(
            f"target {target!r} in {source} has {len(classes)} classes ({shown}); "
            "task binary needs exactly two"
        )
    if task in ("binary", "multiclass"):
        return task
    return "binary" if len(classes) == 2 else "multiclass"


def _encode_labels(parts: list[_Part]) -> tuple[list[np.ndarray], list]:
    """Class ids per part, over the sorted labels of all parts (so a val-only label has an id)."""
    normalized = [plain_labels(p.y) for p in parts]
    codes, uniques = pd.factorize(pd.concat(normalized, ignore_index=True), sort=True)
    ends = np.cumsum([len(n) for n in normalized])[:-1]
    return [c.astype("int64") for c in np.split(codes, ends)], list(uniques.tolist())


def plain_labels(y: pd.Series) -> pd.Series:
    """Labels as bool, int (for whole-number floats), float or str, so classes are JSON-able."""
    if is_bool_dtype(y):
        return y.astype(bool)
    if is_numeric_dtype(y):
        values = y.astype("float64")
        return values.astype("int64") if np.all(values == np.round(values)) else values
    return y.astype(str)


def _split(
    idx: np.ndarray, fraction: float, labels: np.ndarray | None, seed: int, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """Split idx into (kept, taken); stratified when every class has at least two rows."""
    stratify = None
    if labels is not None and np.unique(labels[idx], return_counts=True)[1].min() >= 2:
        stratify = labels[idx]
    try:
        from sklearn.model_selection import train_test_split  # here: predict never loads it (1 s)

        kept, taken = train_test_split(
            idx, test_size=fraction, random_state=seed, stratify=stratify
        )
    except ValueError:
        if stratify is None:
            raise DataError(
                f"{source} has only {len(idx)} usable rows, too few to split off "
                "data.val_fraction/test_fraction; add rows or set the fractions to 0"
            ) from None
        # Too few rows per class for a stratified split of this size: fall back to a plain one.
        return _split(idx, fraction, None, seed, source)
    return np.sort(kept), np.sort(taken)


def _fit_info(
    cfg: DataConfig,
    task: str,
    features: list[str],
    target: str,
    classes: list,
    x_train: pd.DataFrame,
    y_train: np.ndarray,
) -> DataInfo:
    """Vocabularies, fill values, scaling and target statistics from the train split."""
    vocab = {name: sorted(x_train[name].dropna().unique().tolist()) for name in cfg.categorical}
    fill = {}
    if cfg.missing == "mean":
        for name in (f for f in features if f not in vocab):
            mean = x_train[name].mean()
            if pd.isna(mean):
                raise DataError(
                    f"column {name!r} in {cfg.source} has no values in the training rows; "
                    "data.missing mean needs at least one"
                )
            fill[name] = float(mean)
    input_names = [
        n for f in features for n in ([f"{f}={v}" for v in vocab[f]] if f in vocab else [f])
    ]
    info = DataInfo(
        task=task,
        features=features,
        target=target,
        classes=classes,
        input_names=input_names,
        mean=[0.0] * len(input_names),
        std=[1.0] * len(input_names),
        vocab=vocab,
        image_shape=image_shape_for(cfg, len(input_names)),
        fill=fill,
        missing=cfg.missing,
    )
    if cfg.standardize:
        info.mean, info.std = _stats(info.encode(x_train), input_names, cfg.source)
    if task == "regression":
        (m,), (s,) = _stats(y_train[:, None], [target], cfg.source)
        info.target_mean, info.target_std = m, s
    return info


def _stats(values: np.ndarray, names: list[str], source: str) -> tuple[list[float], list[float]]:
    """Per-column mean and std; a constant column gets its value as mean and std 1. A column
    whose mean or std overflows (values near 1e308) would scale to 0 or NaN: refused."""
    mean, std = values.mean(axis=0), values.std(axis=0)
    constant = np.ptp(values, axis=0) == 0
    mean[constant], std[constant] = values[0, constant], 1.0
    overflow = np.flatnonzero(~(np.isfinite(mean) & np.isfinite(std)))
    if len(overflow):
        col = overflow[0]
        largest = np.nanmax(np.abs(values[:, col]))
        raise DataError(
            f"column {names[col]!r} in {source}: values as large as {largest:.3g} cannot be "
            "standardized (the mean or standard deviation overflows); rescale the column"
        )
    return mean.tolist(), std.tolist()


def image_shape_for(cfg: DataConfig, n_inputs: int) -> list[int] | None:
    shape = cfg.image_shape or (DIGITS_IMAGE_SHAPE if cfg.source == "sklearn:digits" else None)
    if shape is not None and int(np.prod(shape)) != n_inputs:
        raise ConfigError(
            f"data.image_shape {shape} holds {int(np.prod(shape))} values per row, "
            f"but {cfg.source} has {n_inputs} input columns after encoding"
        )
    return list(shape) if shape is not None else None


def _refuse_non_finite(
    values: np.ndarray, names: list[str], rows: pd.Index, source: str, standardized: bool
) -> None:
    """A value that is infinite, or too large for float32 once encoded (and scaled), is refused,
    naming the column and the first such row."""
    bad = np.argwhere(~np.isfinite(values))
    if not len(bad):
        return
    row, col = bad[0]
    step = "standardized" if standardized else "converted to float32 (at most about 3.4e38)"
    raise DataError(
        f"column {names[col]!r} in {source}: the value in row {rows[row] + 1} is infinite or too "
        f"large once {step}; rescale the column"
    )


def _target_array(info: DataInfo, y: np.ndarray) -> np.ndarray:
    if info.task == "regression":
        return ((y - info.target_mean) / info.target_std).astype(np.float32)
    return y.astype(np.int64)
