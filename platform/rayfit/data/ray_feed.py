"""Ray Data datasets that read a streamed experiment's files in blocks and yield encoded rows of
one split: what Ray Train hands the workers through `datasets=` and `get_dataset_shard`."""

from __future__ import annotations

from functools import partial

import ray.data

from rayfit.data.streaming import SPLITS, StreamedData, encode_rows, source_files


def read_files(source: str) -> ray.data.Dataset:
    """A lazy dataset over the CSV or Parquet files of a file or folder."""
    files, fmt = source_files(source)
    return ray.data.read_parquet(files) if fmt == "parquet" else ray.data.read_csv(files)


def split_datasets(data: StreamedData) -> dict[str, ray.data.Dataset]:
    """One lazy dataset of encoded rows ({"x": float32 features, "y": target}) per split with rows."""
    context = ray.data.DataContext.get_current()  # datasets keep the context they were made in
    context.enable_progress_bars = False  # the epoch log says how far training is
    out = {}
    for split in SPLITS:
        if data.rows[split] == 0:
            continue
        parts = [
            read_files(source).map_batches(
                partial(encode_rows, rules=data.rules[source], info=data.info, split=split, source=source),
                batch_format="pandas",
            )
            for source in data.sources_of(split)
        ]
        out[split] = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    return out
