"""Read one data source (CSV, Parquet, .npz or a bundled sklearn data set) into a DataFrame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rayfit.errors import DataError

# scikit-learn's bundled data sets by name: its loader is load_NAME, imported when one is read
# (sklearn.datasets takes a second to import, and `rayfit predict` never needs it)
SKLEARN_LOADERS = ("breast_cancer", "diabetes", "digits", "iris", "wine")
SUPPORTED = (".csv", ".parquet", ".npz")


def read_source(source: str) -> pd.DataFrame:
    """Read a CSV, Parquet or .npz file, or `sklearn:NAME`, into a DataFrame with string column
    names and a 0-based row index (row i is data row i + 1 of the file)."""
    if source.startswith("sklearn:"):
        frame = _read_sklearn(source)
    else:
        path = Path(source)
        suffix = path.suffix.lower()
        if suffix not in _READERS:
            raise DataError(
                f"{source}: unsupported file type {suffix or '(no extension)'!r}; expected "
                f"{', '.join(SUPPORTED)} or sklearn:NAME"
            )
        if not path.exists():
            # an absolute path says where it looked (the flat format's paths start at its file's folder)
            where = "" if path.is_absolute() else f" (relative paths start at {Path.cwd()})"
            raise DataError(f"data file {source} not found{where}")
        if path.is_dir():
            raise DataError(f"data file {source} is a folder; expected a {suffix} file")
        try:
            frame = _READERS[suffix](path, source)
        except OSError as exc:  # unreadable: permissions, a broken disk
            raise DataError(f"data file {source} cannot be read ({exc.strerror or _first_line(exc)})") from exc
    if len(frame.columns) == 0 or len(frame) == 0:
        raise DataError(f"{source} has no data rows; expected a header and at least one row")
    frame.columns = [str(c) for c in frame.columns]
    return frame.reset_index(drop=True)


def _read_csv(path: Path, source: str) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, low_memory=False)
        # pandas renames a repeated name to "name.1"; the header read as a plain row shows it.
        header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
        refuse_repeated_columns([str(c) for c in header.iloc[0]], source)
        return frame
    except pd.errors.EmptyDataError:
        raise DataError(
            f"{source} is empty; expected a header row and at least one data row"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{source} is not a readable CSV file: {_first_line(exc)}") from exc


def _read_parquet(path: Path, source: str) -> pd.DataFrame:
    try:
        refuse_repeated_columns(pq.read_schema(path).names, source)  # read_table fails on them
        return pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{source} is not a readable Parquet file: {_first_line(exc)}") from exc


def refuse_repeated_columns(names: list[str], source: str) -> None:
    """A column name given twice would make the second copy of a target a feature (a label leak)."""
    seen: dict[str, int] = {}
    for i, name in enumerate(names, start=1):
        if name in seen:
            raise DataError(
                f"column {name!r} appears twice in {source} (columns {seen[name]} and {i}); "
                "rename or remove one"
            )
        seen[name] = i


def _read_npz(path: Path, source: str) -> pd.DataFrame:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{source} is not a readable .npz file: {_first_line(exc)}") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(
            f"{source} holds a single array; expected an .npz archive with arrays x and y"
        )
    with archive:
        if not {"x", "y"} <= set(archive.files):
            raise DataError(
                f"{source} has arrays {sorted(archive.files)}; expected arrays named "
                "'x' (rows, features) and 'y' (rows,)"
            )
        try:
            x, y = archive["x"], archive["y"]
        except ValueError as exc:  # object arrays need pickle, which is never allowed
            raise DataError(f"{source}: cannot read arrays x/y: {_first_line(exc)}") from exc
    if x.ndim != 2:
        raise DataError(f"array 'x' in {source} has shape {x.shape}; expected (rows, features)")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape != (len(x),):
        raise DataError(
            f"array 'y' in {source} has shape {y.shape}; expected ({len(x)},) to match x"
        )
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])
    frame["y"] = y
    return frame


def _read_sklearn(source: str) -> pd.DataFrame:
    name = source.partition(":")[2]
    if name not in SKLEARN_LOADERS:
        names = ", ".join(f"sklearn:{n}" for n in SKLEARN_LOADERS)
        raise DataError(f"unknown data set {source}; expected one of {names}")
    from sklearn import datasets

    return getattr(datasets, f"load_{name}")(as_frame=True).frame


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_READERS = {".csv": _read_csv, ".parquet": _read_parquet, ".npz": _read_npz}
