"""load_dataset: columns, task, missing policies, one-hot, splits and scaling."""

import numpy as np
import pandas as pd
import pytest

from rayfit.config import DataConfig
from rayfit.data import load_dataset
from rayfit.errors import ConfigError, DataError


def write_csv(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def table(tmp_path, frame, name="data.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def numbers(n=200, seed=0):
    """Two numeric features and a binary string label that depends on them."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(5, 2, n), rng.uniform(0, 100, n)
    return pd.DataFrame({"a": a, "b": b, "label": np.where(a > 5, "yes", "no")})


def test_digits():
    data = load_dataset(DataConfig(source="sklearn:digits"), seed=0)
    info = data.info
    assert info.task == "multiclass" and info.n_inputs == 64 and info.n_outputs == 10
    assert info.classes == list(range(10)) and info.image_shape == [1, 8, 8]
    sizes = [len(data.x_train), len(data.x_val), len(data.x_test)]
    assert sum(sizes) == 1797 and sizes[1] == pytest.approx(0.15 * 1797, abs=2)
    assert [len(data.y_train), len(data.y_val), len(data.y_test)] == sizes
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert set(np.unique(data.y_val)) == set(range(10))  # stratified


def test_scaling_is_fitted_on_train_only(tmp_path):
    frame = numbers()
    frame.loc[:20, "b"] += 1000  # make the full-data mean differ from any split's
    data = load_dataset(DataConfig(source=table(tmp_path, frame), target="label"), seed=1)
    info = data.info
    assert np.allclose(data.x_train.mean(axis=0), 0, atol=1e-5)
    assert np.allclose(data.x_train.std(axis=0), 1, atol=1e-4)
    raw_train = data.x_train * np.float32(info.std) + np.float32(info.mean)
    assert np.allclose(raw_train.mean(axis=0), info.mean, rtol=1e-5)
    assert not np.isclose(info.mean[1], frame["b"].mean())
    # the test rows are original rows scaled with the train statistics
    raw_test = data.x_test.astype("float64") * info.std + info.mean
    assert all(np.isclose(frame["a"], v, rtol=1e-5).any() for v in raw_test[:, 0])
    assert abs(data.x_test.mean(axis=0)).max() > 1e-3  # not re-centred on its own mean


def test_standardize_false_keeps_values(tmp_path):
    frame = numbers(20)
    cfg = DataConfig(
        source=table(tmp_path, frame), standardize=False, val_fraction=0, test_fraction=0
    )
    data = load_dataset(cfg, seed=0)
    assert data.info.mean == [0.0, 0.0] and data.info.std == [1.0, 1.0]
    assert np.allclose(data.x_train, frame[["a", "b"]].to_numpy(), rtol=1e-6)
    assert data.x_val.shape == (0, 2) and data.y_test.shape == (0,)


def test_constant_column_gets_std_one(tmp_path):
    frame = numbers(30).assign(c=7.0)[["a", "c", "label"]]
    data = load_dataset(DataConfig(source=table(tmp_path, frame)), seed=0)
    assert data.info.std[1] == 1.0 and data.info.mean[1] == 7.0
    assert (data.x_train[:, 1] == 0).all()


def test_one_hot_with_train_vocabulary(tmp_path):
    frame = numbers(60)
    frame["city"] = ["Rome", "Paris", "Oslo"] * 20
    frame = frame[["a", "city", "label"]]
    cfg = DataConfig(source=table(tmp_path, frame), categorical=["city"], standardize=False)
    info = load_dataset(cfg, seed=0).info
    assert info.vocab == {"city": ["Oslo", "Paris", "Rome"]}
    assert info.input_names == ["a", "city=Oslo", "city=Paris", "city=Rome"]
    new = pd.DataFrame({"a": [1.0, 2.0], "city": ["Paris", "Tokyo"]})
    x = info.transform(new, "new.csv")
    assert x.tolist() == [[1.0, 0.0, 1.0, 0.0], [2.0, 0.0, 0.0, 0.0]]


def test_numeric_categorical_values_become_text(tmp_path):
    path = write_csv(tmp_path, "zip,v,target\n75001,1,a\n69002,2,b\n75001,3,a\n69002,4,b\n")
    cfg = DataConfig(source=path, categorical=["zip"], val_fraction=0, test_fraction=0)
    assert load_dataset(cfg, seed=0).info.input_names == ["zip=69002", "zip=75001", "v"]


def test_non_numeric_column_must_be_listed(tmp_path):
    path = write_csv(tmp_path, "a,city,target\n1,3,0\n2,4,1\n3,Paris,0\n")
    with pytest.raises(DataError) as err:
        load_dataset(DataConfig(source=path), seed=0)
    assert str(err.value) == (
        f"column 'city' in {path} is not numeric ('Paris' in row 3); "
        "list it in data.categorical to one-hot encode it"
    )


MISSING = "a,b,target\n1,2,x\n,3,y\n3,4,x\n4,,y\n5,6,x\n6,7,y\n7,8,x\n8,9,y\n"


def test_missing_error_names_column_and_rows(tmp_path):
    path = write_csv(tmp_path, MISSING)
    with pytest.raises(DataError, match=r"column 'a' in .*data\.csv has missing values in rows 2;"):
        load_dataset(DataConfig(source=path), seed=0)


def test_missing_error_lists_at_most_five_rows(tmp_path):
    path = write_csv(
        tmp_path, "a,target\n" + "".join(f"{'' if i % 2 else i},{i % 2}\n" for i in range(20))
    )
    with pytest.raises(DataError, match=r"rows 2, 4, 6, 8, 10, \.\.\. \(10 rows\)"):
        load_dataset(DataConfig(source=path), seed=0)


def test_missing_target_is_reported_under_error(tmp_path):
    path = write_csv(tmp_path, "a,target\n1,x\n2,\n3,y\n")
    with pytest.raises(DataError, match=r"column 'target' .* rows 2;"):
        load_dataset(DataConfig(source=path), seed=0)


def test_missing_drop_removes_rows(tmp_path):
    path = write_csv(tmp_path, MISSING)
    data = load_dataset(
        DataConfig(source=path, missing="drop", val_fraction=0, test_fraction=0), seed=0
    )
    assert len(data.x_train) == 6


def test_missing_mean_fills_with_train_mean(tmp_path):
    path = write_csv(tmp_path, MISSING + "9,10,\n")  # last row: target missing -> dropped
    cfg = DataConfig(
        source=path, missing="mean", standardize=False, val_fraction=0, test_fraction=0
    )
    data = load_dataset(cfg, seed=0)
    assert len(data.x_train) == 8
    assert data.info.fill == {"a": pytest.approx(34 / 7), "b": pytest.approx(39 / 7)}
    assert data.x_train[1, 0] == pytest.approx(34 / 7) and data.x_train[3, 1] == pytest.approx(
        39 / 7
    )


def test_blank_strings_count_as_missing(tmp_path):
    frame = pd.DataFrame(
        {"a": [1.0, 2.0, 3.0], "city": ["Oslo", "  ", "Rome"], "target": [0, 1, 0]}
    )
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    with pytest.raises(DataError, match=r"column 'city' .* rows 2;"):
        load_dataset(DataConfig(source=str(path), categorical=["city"]), seed=0)


@pytest.mark.parametrize(
    "field, value, column",
    [
        ("features", ["a", "nope"], "nope"),
        ("target", "goal", "goal"),
        ("categorical", ["town"], "town"),
    ],
)
def test_unknown_column_names_file_and_choices(tmp_path, field, value, column):
    path = write_csv(tmp_path, "a,b,target\n1,2,0\n3,4,1\n")
    with pytest.raises(DataError) as err:
        load_dataset(DataConfig(source=path, **{field: value}), seed=0)
    assert (
        str(err.value) == f"column '{column}' not found in {path}; available columns: a, b, target"
    )


def test_column_selection_defaults_and_config_errors(tmp_path):
    path = write_csv(tmp_path, "a,b,c\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n")
    info = load_dataset(DataConfig(source=path, val_fraction=0, test_fraction=0), seed=0).info
    assert (info.features, info.target) == (["a", "b"], "c")
    info = load_dataset(
        DataConfig(source=path, features=["b", "c"], val_fraction=0, test_fraction=0), seed=0
    ).info
    assert (info.features, info.target) == (["b", "c"], "a")
    with pytest.raises(ConfigError, match="'c' is also the target"):
        load_dataset(DataConfig(source=path, features=["a", "c"], target="c"), seed=0)
    with pytest.raises(ConfigError, match="data.categorical: 'c'"):
        load_dataset(DataConfig(source=path, categorical=["c"]), seed=0)


@pytest.mark.parametrize(
    "values, task",
    [
        (["yes", "no"] * 15, "binary"),
        ([True, False] * 15, "binary"),
        ([0, 1, 2] * 10, "multiclass"),
        (list(range(30)), "regression"),
        ([0.5, 1.0, 2.25] * 10, "regression"),
    ],
)
def test_task_detection(tmp_path, values, task):
    frame = pd.DataFrame({"a": np.arange(30.0), "target": values})
    data = load_dataset(
        DataConfig(source=table(tmp_path, frame), val_fraction=0, test_fraction=0), seed=0
    )
    assert data.info.task == task
    assert data.y_train.dtype == (np.float32 if task == "regression" else np.int64)


def test_explicit_binary_needs_two_classes(tmp_path):
    frame = pd.DataFrame({"a": np.arange(30.0), "target": ["a", "b", "c"] * 10})
    with pytest.raises(
        DataError, match=r"'target' in .*data\.csv has 3 classes \('a', 'b', 'c'\); task binary"
    ):
        load_dataset(DataConfig(source=table(tmp_path, frame), task="binary"), seed=0)


def test_single_class_is_an_error(tmp_path):
    frame = pd.DataFrame({"a": np.arange(10.0), "target": ["only"] * 10})
    with pytest.raises(
        DataError, match=r"'target' in .*data\.csv has one class \('only'\).*at least two"
    ):
        load_dataset(DataConfig(source=table(tmp_path, frame)), seed=0)


def test_regression_target_is_standardised_and_decoded(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=100), "price": rng.normal(250.0, 40.0, 100)})
    data = load_dataset(DataConfig(source=table(tmp_path, frame)), seed=3)
    info = data.info
    assert info.task == "regression" and info.classes == [] and info.n_outputs == 1
    assert abs(data.y_train.mean()) < 1e-5 and data.y_train.std() == pytest.approx(1, abs=1e-4)
    assert info.target_mean == pytest.approx(250, abs=15)
    decoded = info.decode(data.y_test)
    assert all(np.isclose(frame["price"], v, rtol=1e-5).any() for v in decoded)


def test_regression_target_must_be_numeric(tmp_path):
    path = write_csv(tmp_path, "a,y\n1,2.5\n2,cheap\n")
    with pytest.raises(
        DataError, match=r"column 'y' in .* is not numeric \('cheap' in row 2\); task regression"
    ):
        load_dataset(DataConfig(source=path, task="regression"), seed=0)


def test_val_and_test_source_files_are_used_as_is(tmp_path):
    train = table(tmp_path, numbers(100, seed=0), "train.csv")
    val = table(tmp_path, numbers(30, seed=1), "val.csv")
    test = table(tmp_path, numbers(20, seed=2), "test.csv")
    data = load_dataset(DataConfig(source=train, val_source=val, test_source=test), seed=0)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (100, 30, 20)
    only_test = load_dataset(DataConfig(source=train, test_source=test, val_fraction=0.2), seed=0)
    assert (len(only_test.x_train), len(only_test.x_val), len(only_test.x_test)) == (80, 20, 20)


def test_label_seen_only_in_val_file_gets_a_class(tmp_path):
    train = write_csv(tmp_path, "a,target\n1,x\n2,y\n3,x\n4,y\n", "train.csv")
    val = write_csv(tmp_path, "a,target\n5,z\n", "val.csv")
    data = load_dataset(DataConfig(source=train, val_source=val, test_fraction=0), seed=0)
    assert data.info.classes == ["x", "y", "z"] and data.y_val.tolist() == [2]


def test_val_file_columns_are_checked(tmp_path):
    train = table(tmp_path, numbers(20), "train.csv")
    val = write_csv(tmp_path, "a,label\n1,yes\n", "val.csv")
    with pytest.raises(DataError, match=r"column 'b' not found in .*val\.csv"):
        load_dataset(DataConfig(source=train, val_source=val), seed=0)


def test_same_seed_same_split(tmp_path):
    cfg = DataConfig(source=table(tmp_path, numbers()))
    one, two, other = (load_dataset(cfg, seed=s) for s in (7, 7, 8))
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert np.array_equal(getattr(one, name), getattr(two, name))
    assert not np.array_equal(one.x_test, other.x_test)


def test_too_few_rows_to_split(tmp_path):
    path = write_csv(tmp_path, "a,target\n1,0.5\n")
    with pytest.raises(DataError, match=r"data\.csv has only 1 usable rows"):
        load_dataset(DataConfig(source=path), seed=0)


def test_image_shape_must_match_inputs(tmp_path):
    with pytest.raises(ConfigError, match=r"data.image_shape \[1, 4, 4\] holds 16 values"):
        load_dataset(DataConfig(source="sklearn:digits", image_shape=[1, 4, 4]), seed=0)


@pytest.mark.parametrize("huge", ["1e308", "-1e308", "inf"])
def test_values_that_overflow_standardization_are_refused(tmp_path, huge):
    frame = numbers(40)
    frame["b"] = frame["b"].astype(object)
    frame.loc[[3, 9], "b"] = [huge, "-1e308"]
    source = table(tmp_path, frame)
    with pytest.raises(DataError) as caught:
        load_dataset(DataConfig(source=source, target="label"), seed=0)
    assert str(caught.value).startswith(f"column 'b' in {source}: values as large as ")
    assert str(caught.value).endswith("cannot be standardized (the mean or standard deviation overflows); "
                                      "rescale the column")


def test_values_too_large_for_float32_are_refused_with_their_row(tmp_path):
    frame = numbers(40)
    frame.loc[6, "a"] = 1e300
    source = table(tmp_path, frame)
    with pytest.raises(DataError, match=r"^column 'a' in .*: the value in row 7 is infinite or too large once "
                                        r"converted to float32 \(at most about 3.4e38\); rescale the column$"):
        load_dataset(DataConfig(source=source, target="label", standardize=False), seed=0)


def test_a_huge_regression_target_is_refused(tmp_path):
    frame = pd.DataFrame({"a": np.arange(40.0), "y": np.arange(40.0) + 0.5})
    frame.loc[5, "y"] = 1e308
    with pytest.raises(DataError, match="column 'y' in .*: values as large as 1e\\+308 cannot be standardized"):
        load_dataset(DataConfig(source=table(tmp_path, frame), target="y", task="regression"), seed=0)


def test_many_whole_numbers_are_taken_as_regression_and_said_so(tmp_path, caplog):
    frame = pd.DataFrame({"a": np.arange(1000.0), "y": (np.arange(1000) * 37) % 1000})
    source = table(tmp_path, frame)
    with caplog.at_level("WARNING"):
        assert load_dataset(DataConfig(source=source, target="y"), seed=0).info.task == "regression"
    assert caplog.messages == [
        "data.task: target 'y' holds 1000 distinct whole numbers, taken as regression; set data.task: "
        "multiclass if they are classes (or data.task: regression to say so)"
    ]
    caplog.clear()
    with caplog.at_level("WARNING"):
        info = load_dataset(DataConfig(source=source, target="y", task="multiclass"), seed=0).info
    assert info.task == "multiclass" and len(info.classes) == 1000 and caplog.messages == []
