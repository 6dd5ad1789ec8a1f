"""The streaming plan: one pass of pyarrow batches gives the split sizes and train statistics a
pandas computation over all rows gives, and Ray Data's per-block encoding agrees with it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rayfit.config import DataConfig, validate
from rayfit.data.streaming import SPLITS, encode_rows, plan_stream, scan
from rayfit.errors import ConfigError, DataError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments"))
from make_parquet_data import write_parquet_data  # noqa: E402


def frame_of(folder: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))], ignore_index=True)


@pytest.fixture
def parquet_dir(tmp_path: Path) -> Path:
    """Three files of 400 rows, with missing values in a few rows of the second file."""
    folder = write_parquet_data(tmp_path / "rows", rows=1200, features=5, classes=3, rows_per_file=400)
    second = folder / "part-00001.parquet"
    frame = pd.read_parquet(second)
    frame.loc[[2, 10, 11], "f1"] = np.nan
    frame.to_parquet(second)
    return folder


def stream_config(source: Path, **extra) -> DataConfig:
    return DataConfig(source=str(source), target="label", streaming=True, **extra)


def test_one_pass_gives_the_split_sizes_and_train_statistics_of_all_rows(parquet_dir):
    cfg = stream_config(parquet_dir, missing="drop", val_fraction=0.2, test_fraction=0.1)
    data = plan_stream(cfg, seed=7)
    rules = data.rules[str(parquet_dir)]
    whole = frame_of(parquet_dir).dropna()
    x, y = rules.clean(whole, "all rows")
    split = rules.split(x, y)
    assert data.rows == {name: int((split == i).sum()) for i, name in enumerate(SPLITS)}
    assert sum(data.rows.values()) == 1200 - 3
    assert data.rows["val"] == pytest.approx(0.2 * 1197, abs=40)
    assert data.rows["test"] == pytest.approx(0.1 * 1197, abs=30)
    train = x.to_numpy()[split == 0]
    assert np.allclose(data.info.mean, train.mean(axis=0), rtol=0, atol=1e-12)
    assert np.allclose(data.info.std, train.std(axis=0), rtol=1e-12)
    assert data.info.task == "multiclass" and data.info.classes == [0, 1, 2]
    assert data.info.features == [f"f{i}" for i in range(5)]


def test_each_rows_split_is_the_same_whatever_the_blocks_and_changes_with_the_seed(parquet_dir):
    cfg = stream_config(parquet_dir, missing="drop")
    data = plan_stream(cfg, seed=3)
    rules, whole = data.rules[str(parquet_dir)], frame_of(parquet_dir)
    for split in SPLITS:
        at_once = encode_rows(whole, rules=rules, info=data.info, split=split, source="s")
        blocks = [encode_rows(whole.iloc[i : i + 97], rules=rules, info=data.info, split=split, source="s")
                  for i in range(0, len(whole), 97)]
        assert np.array_equal(at_once["x"], np.concatenate([b["x"] for b in blocks]))
        assert np.array_equal(at_once["y"], np.concatenate([b["y"] for b in blocks]))
        assert len(at_once["y"]) == data.rows[split]
    train = encode_rows(whole, rules=rules, info=data.info, split="train", source="s")
    assert np.allclose(train["x"].mean(axis=0), 0, atol=1e-5)  # standardised with train statistics
    other = plan_stream(cfg, seed=4)
    assert other.rows != data.rows


def test_val_and_test_files_of_their_own_hold_only_their_split(parquet_dir, tmp_path):
    val = write_parquet_data(tmp_path / "val", rows=150, features=5, classes=3, seed=1)
    data = plan_stream(stream_config(parquet_dir, missing="drop", val_source=str(val)), seed=0)
    assert data.rows["val"] == 150
    assert data.sources_of("val") == [str(val)]
    assert data.sources_of("test") == [str(parquet_dir)]


def test_regression_targets_are_standardised_on_the_train_rows(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    frame["y"] = 3 * frame["a"] + 10 + rng.normal(size=300) * 0.1
    frame.to_parquet(tmp_path / "reg.parquet")
    cfg = DataConfig(source=str(tmp_path / "reg.parquet"), target="y", streaming=True)
    data = plan_stream(cfg, seed=0)
    rules = data.rules[cfg.source]
    x, y = rules.clean(frame, "all")
    train_y = y.to_numpy()[rules.split(x, y) == 0]
    assert data.info.task == "regression"
    assert data.info.target_mean == pytest.approx(train_y.mean(), rel=1e-12)
    assert data.info.target_std == pytest.approx(train_y.std(), rel=1e-12)


def test_scan_numbers_rows_within_each_file(parquet_dir):
    starts = {}
    for frame, file in scan(str(parquet_dir), ["f0"], batch_rows=150):
        starts.setdefault(Path(file).name, []).append(frame.index[0])
    assert starts == {f"part-0000{i}.parquet": [0, 150, 300] for i in range(3)}


def test_a_missing_value_is_named_by_file_column_and_row(parquet_dir):
    with pytest.raises(DataError, match=r"column 'f1' in .*part-00001.parquet has missing values in rows 3, 11, 12"):
        plan_stream(stream_config(parquet_dir), seed=0)


def test_a_text_value_in_a_csv_is_named_by_column_and_row(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("a,b,label\n1,2,x\n3,oops,y\n5,6,x\n")
    with pytest.raises(DataError, match=r"column 'b' in .*rows.csv is not numeric \('oops' in row 2\)"):
        plan_stream(DataConfig(source=str(path), streaming=True), seed=0)


def test_a_folder_without_csv_or_parquet_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="streaming reads .csv or .parquet files, found none"):
        plan_stream(DataConfig(source=str(tmp_path), streaming=True), seed=0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"categorical": ["city"]}, "data: streaming needs numeric features"),
        ({"missing": "mean"}, "data: missing 'mean' is not available with streaming"),
    ],
)
def test_what_one_pass_cannot_do_is_refused_by_the_config(data, message):
    with pytest.raises(ConfigError, match=message):
        validate({"name": "s", "data": {"source": "rows.parquet", "streaming": True, **data}})
