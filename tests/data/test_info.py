"""DataInfo: saving, re-encoding new rows at prediction time, decoding outputs."""

import json

import numpy as np
import pandas as pd
import pytest

from rayfit.config import DataConfig
from rayfit.data import DataInfo, load_dataset, read_source
from rayfit.errors import DataError


def frame(n, seed):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "size": rng.normal(50, 10, n),
            "city": rng.choice(["Oslo", "Paris", "Rome"], n),
            "kind": rng.choice(["cat", "dog", "eel"], n),
        }
    )


@pytest.fixture
def files(tmp_path):
    paths = {}
    for name, n, seed in (("train", 90, 0), ("test", 15, 1)):
        paths[name] = str(tmp_path / f"{name}.csv")
        frame(n, seed).to_csv(paths[name], index=False)
    return paths


def test_json_round_trip(files):
    info = load_dataset(DataConfig(source=files["train"], categorical=["city"]), seed=0).info
    again = DataInfo.from_dict(json.loads(json.dumps(info.to_dict())))
    assert again == info and again.n_inputs == 4 and again.n_outputs == 3


def test_transform_matches_training_encoding(files):
    cfg = DataConfig(source=files["train"], test_source=files["test"], categorical=["city"])
    data = load_dataset(cfg, seed=0)
    x = data.info.transform(read_source(files["test"]), files["test"])
    assert x.dtype == np.float32 and np.array_equal(x, data.x_test)


def test_transform_checks_columns_and_types(files):
    info = load_dataset(DataConfig(source=files["train"], categorical=["city"]), seed=0).info
    with pytest.raises(
        DataError, match=r"column 'size' not found in new\.csv; available columns: city"
    ):
        info.transform(pd.DataFrame({"city": ["Oslo"]}), "new.csv")
    with pytest.raises(
        DataError, match=r"column 'size' in new\.csv is not numeric \('big' in row 2\)"
    ):
        info.transform(pd.DataFrame({"size": ["1", "big"], "city": ["Oslo", "Rome"]}), "new.csv")


def test_transform_cannot_drop_rows(files):
    cfg = DataConfig(source=files["train"], categorical=["city"], missing="drop")
    info = load_dataset(cfg, seed=0).info
    rows = pd.DataFrame({"size": [1.0, None, 3.0, None], "city": ["Oslo"] * 4})
    with pytest.raises(
        DataError, match=r"column 'size' in new\.csv has missing values in rows 2, 4; .*'drop'"
    ):
        info.transform(rows, "new.csv")


def test_transform_fills_with_train_mean(files):
    cfg = DataConfig(source=files["train"], categorical=["city"], missing="mean")
    info = load_dataset(cfg, seed=0).info
    x = info.transform(pd.DataFrame({"size": [None], "city": [None]}), "new.csv")
    raw = x[0].astype("float64") * info.std + info.mean
    assert raw[0] == pytest.approx(info.fill["size"]) and raw[1:] == pytest.approx(
        [0, 0, 0], abs=1e-6
    )


def test_decode_ids_and_scores(files):
    info = load_dataset(DataConfig(source=files["train"], categorical=["city"]), seed=0).info
    assert info.decode(np.array([2, 0])) == ["eel", "cat"]
    assert info.decode(np.array([[0.1, 0.7, 0.2]])) == ["dog"]
    with pytest.raises(DataError, match="class id 3 is out of range for 3 classes"):
        info.decode(np.array([3]))
