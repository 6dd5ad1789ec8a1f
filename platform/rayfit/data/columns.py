"""Column checks shared by training-time loading and prediction: presence, types, missing values.

Row numbers in messages are 1-based data rows, counted the way they appear in the file.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from rayfit.errors import DataError

CATEGORICAL_HINT = "list it in data.categorical to one-hot encode it"


def require_columns(frame: pd.DataFrame, names: Iterable[str], source: str) -> None:
    """Raise DataError naming the first absent column, the file and the columns it does have."""
    for name in names:
        if name not in frame.columns:
            have = [str(c) for c in frame.columns]
            shown = ", ".join(have[:10]) + (f", ... ({len(have)} in all)" if len(have) > 10 else "")
            raise DataError(f"column {name!r} not found in {source}; available columns: {shown}")


def blank_to_nan(col: pd.Series) -> pd.Series:
    """Treat empty or whitespace-only strings as missing values."""
    if is_numeric_dtype(col) or is_bool_dtype(col):
        return col
    blank = col.map(lambda v: isinstance(v, str) and not v.strip()).astype(bool)
    return col.mask(blank) if blank.any() else col


def to_numeric(col: pd.Series, name: str, source: str, hint: str) -> pd.Series:
    """The column as float64 (NaN where missing), or DataError quoting the first non-number."""
    col = blank_to_nan(col)
    if is_numeric_dtype(col) or is_bool_dtype(col):
        return col.astype("float64")
    numbers = pd.to_numeric(col, errors="coerce")
    bad = np.flatnonzero((numbers.isna() & col.notna()).to_numpy())
    if bad.size:
        value = col.iloc[bad[0]]
        raise DataError(
            f"column {name!r} in {source} is not numeric ({value!r} in row {col.index[bad[0]] + 1}); {hint}"
        )
    return numbers.astype("float64")


def to_text(col: pd.Series) -> pd.Series:
    """Category values as strings (5.0 -> '5'), NaN where missing."""

    def text(value: object) -> str:
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            return str(int(value))
        return str(value)

    return blank_to_nan(col).map(text, na_action="ignore").astype(object)


def prepare_features(
    frame: pd.DataFrame, features: list[str], categorical: Iterable[str], source: str
) -> pd.DataFrame:
    """The feature columns as float64 (numeric) or strings (categorical), NaN where missing."""
    require_columns(frame, features, source)
    categorical = set(categorical)
    out = {
        name: to_text(frame[name])
        if name in categorical
        else to_numeric(frame[name], name, source, CATEGORICAL_HINT)
        for name in features
    }
    return pd.DataFrame(out, index=frame.index)


def first_missing(columns: dict[str, pd.Series]) -> tuple[str, np.ndarray] | None:
    """(column, 1-based rows with missing values) for the first column that has any, else None."""
    for name, col in columns.items():
        rows = col.index.to_numpy()[col.isna().to_numpy()]  # the index counts rows from 0 in the file
        if rows.size:
            return name, rows + 1
    return None


def missing_message(name: str, rows: np.ndarray, source: str, advice: str) -> str:
    """One line naming the column, the first five rows and what to do."""
    shown = ", ".join(str(r) for r in rows[:5]) + (
        f", ... ({len(rows)} rows)" if len(rows) > 5 else ""
    )
    return f"column {name!r} in {source} has missing values in rows {shown}; {advice}"
