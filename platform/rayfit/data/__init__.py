"""Tabular data for training: read a source, clean, one-hot encode, split and standardise it.

`load_dataset(cfg.data, seed)` returns float32 arrays per split plus a `DataInfo` that encodes new
rows the same way at prediction time and decodes model outputs back into labels.
"""

from rayfit.data.info import DataInfo
from rayfit.data.prepare import Prepared, load_dataset
from rayfit.data.sources import read_source

__all__ = ["DataInfo", "Prepared", "load_dataset", "read_source"]
