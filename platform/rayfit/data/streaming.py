"""Data larger than memory: one pass of pyarrow record batches over CSV/Parquet files checks the
columns, assigns each row its split and fits the DataInfo, holding one batch at a time.

A row's split is a function of its own values and the seed (a hash), not of its position, so
Ray Data workers that see the rows in another order and other blocks put each row in the same
split as this pass did (see `RowRules.split`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from rayfit.config import DataConfig
from rayfit.data.columns import blank_to_nan, first_missing, missing_message, prepare_features
from rayfit.data.info import DataInfo
from rayfit.data.prepare import (
    MAX_AUTO_CLASSES,
    choose_columns,
    classification_kind,
    image_shape_for,
    plain_labels,
)
from rayfit.errors import DataError

SPLITS = ("train", "val", "test")
SCAN_ROWS = 65_536  # rows per record batch of the fitting pass: bounds its memory


@dataclass(frozen=True)
class RowRules:
    """How one source's rows are cleaned and split: the same on the driver and in Ray Data tasks."""

    features: list[str]
    target: str
    missing: str  # "error" or "drop"
    seed: int
    val_fraction: float = 0.0  # of this source's rows; 0 when val rows come from their own file
    test_fraction: float = 0.0
    only: str | None = None  # every row goes to this split (a val_source or test_source)

    def holds(self, split: str) -> bool:
        """Whether this source has rows of `split`."""
        if self.only is not None:
            return self.only == split
        return {"train": 1.0, "val": self.val_fraction, "test": self.test_fraction}[split] > 0

    def clean(self, frame: pd.DataFrame, source: str) -> tuple[pd.DataFrame, pd.Series]:
        """Numeric features (float64) and the target, after the missing-value policy."""
        x = prepare_features(frame, self.features, [], source)
        y = blank_to_nan(frame[self.target])
        if self.missing == "error":
            found = first_missing({**{n: x[n] for n in self.features}, self.target: y})
            if found:
                raise DataError(missing_message(*found, source, "fill them or set data.missing to drop"))
        keep = y.notna() & x.notna().all(axis=1)
        return (x, y) if keep.all() else (x[keep], y[keep])

    def split(self, x: pd.DataFrame, y: pd.Series) -> np.ndarray:
        """Each row's split (0 train, 1 val, 2 test) from a seeded hash of its values."""
        if self.only is not None:
            return np.full(len(x), SPLITS.index(self.only))
        key = f"{self.seed:016x}"[-16:]  # pandas' hash key is 16 characters
        hashed = pd.util.hash_pandas_object(
            x.assign(**{"\0target": plain_labels(y).astype(str)}), index=False, hash_key=key
        ).to_numpy()
        unit = hashed / 2.0**64
        return np.where(unit < self.test_fraction, 2, np.where(unit < self.test_fraction + self.val_fraction, 1, 0))


@dataclass
class StreamedData:
    """What the workers need besides the rows: the fitted DataInfo, rows per split, and where
    each split's rows come from. `shard(split)` gives this process's Ray Data iterator."""

    info: DataInfo
    rows: dict[str, int]
    rules: dict[str, RowRules]  # per source file or folder
    shard: Callable[[str], Any] | None = field(default=None, repr=False)

    @property
    def train_rows(self) -> int:
        return self.rows["train"]

    def sources_of(self, split: str) -> list[str]:
        """The sources that hold rows of `split`."""
        return [source for source, rules in self.rules.items() if rules.holds(split)]


def source_files(source: str) -> tuple[list[str], str]:
    """The CSV or Parquet files of a file or folder source, and their format."""
    path = Path(source)
    if not path.exists():
        raise DataError(f"data file {source} not found (relative paths start at {Path.cwd()})")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for fmt in ("parquet", "csv"):
        chosen = [str(p) for p in files if p.suffix.lower() == f".{fmt}"]
        if chosen:
            return chosen, fmt
    raise DataError(f"{source}: streaming reads .csv or .parquet files, found none there")


def row_rules(cfg: DataConfig, features: list[str], target: str, seed: int) -> dict[str, RowRules]:
    """The rules of the main source and of the val/test sources given as files of their own."""
    base = {"features": features, "target": target, "missing": cfg.missing, "seed": seed}
    rules = {
        cfg.source: RowRules(
            **base,
            val_fraction=0.0 if cfg.val_source else cfg.val_fraction,
            test_fraction=0.0 if cfg.test_source else cfg.test_fraction,
        )
    }
    for split, source in (("val", cfg.val_source), ("test", cfg.test_source)):
        if source:
            rules[source] = RowRules(**base, only=split)
    return rules


def scan(source: str, columns: list[str], batch_rows: int = SCAN_ROWS) -> Iterator[tuple[pd.DataFrame, str]]:
    """Record batches of `columns` as frames indexed by row number in their file, with the file."""
    files, fmt = source_files(source)
    for file in files:
        start = 0
        try:
            for batch in pads.dataset(file, format=fmt).to_batches(columns=columns, batch_size=batch_rows):
                frame = batch.to_pandas()
                frame.index = pd.RangeIndex(start, start + len(frame))
                start += len(frame)
                yield frame, file
        except pa.ArrowInvalid as exc:
            raise DataError(f"{file} is not a readable {fmt.upper()} file: {str(exc).splitlines()[0]}") from exc


class Moments:
    """Count, mean and sum of squared deviations per column, merged batch by batch.

    Written by hand (Chan et al.'s pairwise update, stable in float64) because one pass must fit
    every split's counts and the train statistics together; Ray Data's aggregations cost one
    Ray job per pass, and pyarrow's have no merge across batches."""

    def __init__(self, width: int) -> None:
        self.n, self.mean, self.m2 = 0, np.zeros(width), np.zeros(width)

    def add(self, values: np.ndarray) -> None:
        if len(values) == 0:
            return
        n_b, mean_b = len(values), values.mean(axis=0)
        m2_b = ((values - mean_b) ** 2).sum(axis=0)
        total = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * n_b / total
        self.m2 = self.m2 + m2_b + delta**2 * self.n * n_b / total
        self.n = total

    def mean_std(self) -> tuple[list[float], list[float]]:
        """Population mean and std; a constant column gets std 1, like the in-memory path."""
        std = np.sqrt(self.m2 / max(self.n, 1))
        return self.mean.tolist(), np.where(std > 0, std, 1.0).tolist()


class _TargetSurvey:
    """What the target column's values tell: numeric or not, whole numbers or not, the labels."""

    def __init__(self, keep_labels: bool) -> None:
        self.numeric, self.whole, self.keep_labels = True, True, keep_labels
        self.labels: set = set()
        self.train_labels: set = set()

    def add(self, y: pd.Series, in_train: np.ndarray) -> None:
        numeric = is_numeric_dtype(y) and not is_bool_dtype(y)
        self.numeric &= numeric
        if numeric:
            values = y.to_numpy(dtype="float64")
            self.whole &= bool(np.all(values == np.round(values)))
        if self.keep_labels or len(self.labels) <= MAX_AUTO_CLASSES:
            labels = plain_labels(y)
            self.labels.update(labels.unique().tolist())
            self.train_labels.update(labels[in_train].unique().tolist())

    def task(self, wanted: str) -> str:
        if wanted != "auto":
            return wanted
        if not self.numeric:
            return "classification"
        return "classification" if self.whole and len(self.labels) <= MAX_AUTO_CLASSES else "regression"


def plan_stream(cfg: DataConfig, seed: int) -> StreamedData:
    """Check the columns, count each split's rows and fit the DataInfo on the train rows, in one
    pass over the files; the rows themselves are read again, in blocks, by the workers."""
    files, fmt = source_files(cfg.source)
    names = pads.dataset(files, format=fmt).schema.names
    features, target = choose_columns(pd.DataFrame(columns=names), cfg)
    rules = row_rules(cfg, features, target, seed)
    rows = dict.fromkeys(SPLITS, 0)
    x_moments, y_moments = Moments(len(features)), Moments(1)
    survey = _TargetSurvey(keep_labels=cfg.task in ("auto", "binary", "multiclass"))
    for source, rule in rules.items():
        for frame, file in scan(source, [*features, target]):
            x, y = rule.clean(frame, file)
            split = rule.split(x, y)
            rows.update({name: rows[name] + int((split == i).sum()) for i, name in enumerate(SPLITS)})
            in_train = split == 0
            x_moments.add(x.to_numpy(dtype="float64")[in_train])
            survey.add(y, in_train)
            if survey.numeric:
                y_moments.add(y.to_numpy(dtype="float64")[in_train][:, None])
    if rows["train"] == 0:
        raise DataError(f"{cfg.source} leaves no training rows after the missing-value policy and the split")
    info = _info(cfg, features, target, survey, x_moments, y_moments)
    return StreamedData(info, rows, rules)


def _info(
    cfg: DataConfig, features: list[str], target: str, survey: _TargetSurvey, x: Moments, y: Moments
) -> DataInfo:
    task = survey.task(cfg.task)
    classes: list = []
    if task == "regression":
        if not survey.numeric:
            raise DataError(f"target {target!r} in {cfg.source} is not numeric; task regression needs a numeric target")
    else:
        classes = sorted(survey.labels)
        task = classification_kind(cfg.task, classes, target, cfg.source)
        if len(survey.train_labels) < 2:
            raise DataError(
                f"target {target!r} in {cfg.source} has one class in the training rows; "
                "classification needs at least two"
            )
    mean, std = x.mean_std() if cfg.standardize else ([0.0] * len(features), [1.0] * len(features))
    info = DataInfo(
        task=task, features=features, target=target, classes=classes, input_names=list(features),
        mean=mean, std=std, image_shape=image_shape_for(cfg, len(features)), missing=cfg.missing,
    )
    if task == "regression":
        (info.target_mean,), (info.target_std,) = y.mean_std()
    return info


def encode_rows(frame: pd.DataFrame, *, rules: RowRules, info: DataInfo, split: str, source: str) -> dict[str, np.ndarray]:
    """One block of raw rows -> the encoded rows of `split` in it ({"x": float32, "y"}).
    Ray Data calls it on each block the workers read; it must agree with plan_stream's pass."""
    x, y = rules.clean(frame, source)
    keep = rules.split(x, y) == SPLITS.index(split)
    x, y = x[keep], y[keep]
    if info.task == "regression":
        target = ((y.to_numpy(dtype="float64") - info.target_mean) / info.target_std).astype(np.float32)
    else:
        target = pd.Index(info.classes).get_indexer(plain_labels(y)).astype(np.int64)
    return {"x": info.scale(x.to_numpy(dtype="float64")), "y": target}
