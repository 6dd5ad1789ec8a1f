"""Reading each kind of source, and the errors for files that cannot be read."""

import os
import numpy as np
import pandas as pd
import pytest

from rayfit.config import DataConfig
from rayfit.data import load_dataset, read_source
from rayfit.errors import DataError


def test_csv_rows_and_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,label\n1,2.5,x\n3,4.5,y\n")
    frame = read_source(str(path))
    assert list(frame.columns) == ["a", "b", "label"]
    assert frame["b"].tolist() == [2.5, 4.5]


def test_relative_path_is_read_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "rel.csv").write_text("a,target\n1,0\n2,1\n")
    monkeypatch.chdir(tmp_path)
    assert len(read_source("rel.csv")) == 2


def test_parquet_source(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"f1": rng.normal(size=40), "f2": rng.normal(size=40), "kind": ["a", "b"] * 20}
    )
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    data = load_dataset(DataConfig(source=str(path), val_fraction=0, test_fraction=0.25), seed=0)
    assert data.info.features == ["f1", "f2"] and data.info.target == "kind"
    assert data.info.task == "binary" and data.info.classes == ["a", "b"]
    assert data.x_train.shape == (30, 2) and data.x_test.shape == (10, 2)


def test_npz_source_names_columns_x0_and_y(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "t.npz"
    np.savez(path, x=rng.normal(size=(50, 3)), y=np.arange(50) % 3)
    data = load_dataset(DataConfig(source=str(path)), seed=0)
    assert data.info.features == ["x0", "x1", "x2"] and data.info.target == "y"
    assert data.info.task == "multiclass" and data.info.classes == [0, 1, 2]
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 50


def test_npz_without_x_and_y(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, features=np.zeros((3, 2)))
    with pytest.raises(DataError, match=r"bad\.npz.*'x'"):
        read_source(str(path))


def test_npz_x_must_be_two_dimensional(tmp_path):
    path = tmp_path / "img.npz"
    np.savez(path, x=np.zeros((3, 1, 2, 2)), y=np.zeros(3))
    with pytest.raises(DataError, match=r"'x' in .*img\.npz has shape \(3, 1, 2, 2\)"):
        read_source(str(path))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv not found"):
        read_source(str(tmp_path / "nope.csv"))


def test_empty_file_is_named(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match=r"empty\.csv is empty"):
        read_source(str(path))


def test_header_only_file_has_no_rows(tmp_path):
    path = tmp_path / "head.csv"
    path.write_text("a,b,target\n")
    with pytest.raises(DataError, match=r"head\.csv has no data rows"):
        load_dataset(DataConfig(source=str(path)), seed=0)


def test_unknown_extension_lists_supported(tmp_path):
    path = tmp_path / "t.xlsx"
    path.write_text("x")
    with pytest.raises(DataError, match=r"t\.xlsx.*\.csv, \.parquet, \.npz"):
        read_source(str(path))


def test_unknown_sklearn_name_lists_names():
    with pytest.raises(DataError, match=r"sklearn:mnist.*sklearn:digits"):
        read_source("sklearn:mnist")


def test_messages_are_one_line(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_text("not parquet\nat all\n")
    with pytest.raises(DataError, match=r"bad\.parquet") as err:
        read_source(str(path))
    assert "\n" not in str(err.value)


def test_a_repeated_csv_column_is_refused_naming_it(tmp_path):
    """pandas would rename the second 'y' to 'y.1', which then trains as a feature (a label leak)."""
    path = tmp_path / "data.csv"
    path.write_text("a,y,b,y\n1,0,2,0\n3,1,4,1\n")
    with pytest.raises(DataError) as caught:
        read_source(str(path))
    assert str(caught.value) == f"column 'y' appears twice in {path} (columns 2 and 4); rename or remove one"


def test_a_column_really_named_like_a_renamed_copy_is_fine(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,y,y.1\n1,0,2\n")
    assert list(read_source(str(path)).columns) == ["a", "y", "y.1"]


def test_a_repeated_parquet_column_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "data.parquet"
    pq.write_table(pa.table([[1, 2], [0, 1], [0, 1]], names=["a", "y", "y"]), path)
    with pytest.raises(DataError, match=r"column 'y' appears twice .* \(columns 2 and 3\)"):
        read_source(str(path))


def test_a_folder_in_place_of_the_data_file_is_named(tmp_path):
    (tmp_path / "data.csv").mkdir()
    with pytest.raises(DataError, match=r"^data file .*data.csv is a folder; expected a .csv file$"):
        read_source(str(tmp_path / "data.csv"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_an_unreadable_file_is_named(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,y\n1,0\n")
    path.chmod(0)
    with pytest.raises(DataError, match=r"^data file .*data.csv cannot be read \(Permission denied\)$"):
        read_source(str(path))
