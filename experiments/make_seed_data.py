"""Write experiments/data/train.csv for experiments/seed_format.json from a real data set.

The rows are scikit-learn's bundled breast cancer data set (569 tumours, Wisconsin diagnostic
study; no download). Its 30 measurement columns are renamed feature1 ... feature30, in the data
set's own order, and `target` holds the diagnosis (0 = malignant, 1 = benign), as the flat
request format names columns. The file is the same bytes on every run.

    python experiments/make_seed_data.py              # writes experiments/data/train.csv
    python experiments/make_seed_data.py OUT.csv      # writes OUT.csv

From Python (tests): `from make_seed_data import write_seed_data; write_seed_data(path)`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from sklearn.datasets import load_breast_cancer

DEFAULT_PATH = Path(__file__).resolve().parent / "data" / "train.csv"


def seed_frame() -> pd.DataFrame:
    """The data set as feature1..featureN plus target, rows in the data set's order."""
    bunch = load_breast_cancer(as_frame=True)
    features = bunch.data.rename(
        columns={name: f"feature{i}" for i, name in enumerate(bunch.feature_names, start=1)}
    )
    return features.assign(target=bunch.target.astype("int64"))


def feature_columns() -> list[str]:
    """The feature column names the CSV holds, for the JSON's feature_columns."""
    return [c for c in seed_frame().columns if c != "target"]


def write_seed_data(path: str | Path = DEFAULT_PATH) -> Path:
    """Write the CSV to `path` (creating its folder) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seed_frame().to_csv(path, index=False, lineterminator="\n")
    return path


def main(argv: list[str]) -> int:
    path = write_seed_data(argv[0] if argv else DEFAULT_PATH)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
