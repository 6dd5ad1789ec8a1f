"""Write a generated classification data set as Parquet files, of any size, for streaming.

Each row has `features` standard-normal columns f0, f1, ...; its class (`label`, 0..classes-1)
is the argmax of a fixed random linear map of the features plus a little noise, so a small MLP
learns it well. Rows are written in files of `rows_per_file`, one batch at a time, so writing
a data set larger than memory needs little memory. The same arguments give the same bytes.

    python experiments/make_parquet_data.py OUT_DIR [ROWS] [FEATURES]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def write_parquet_data(
    folder: str | Path, rows: int, features: int = 32, classes: int = 4,
    rows_per_file: int = 50_000, seed: int = 0,
) -> Path:
    """Write part-00000.parquet, part-00001.parquet, ... under `folder` and return it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    teacher = np.random.default_rng(seed).normal(size=(features, classes))
    for index, start in enumerate(range(0, rows, rows_per_file)):
        rng = np.random.default_rng([seed, index])
        n = min(rows_per_file, rows - start)
        x = rng.normal(size=(n, features)).astype(np.float32)
        label = (x @ teacher + 0.3 * rng.normal(size=(n, classes))).argmax(axis=1)
        columns = {f"f{i}": x[:, i] for i in range(features)} | {"label": label.astype(np.int64)}
        pq.write_table(pa.table(columns), folder / f"part-{index:05d}.parquet")
    return folder


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "experiments/data/stream"
    write_parquet_data(out, int(sys.argv[2]) if len(sys.argv) > 2 else 200_000,
                       int(sys.argv[3]) if len(sys.argv) > 3 else 32)
    print(out)
