"""`rayfit export RUN --format F`: a finished run's model as a file other tools load (ONNX,
TorchScript, SavedModel) whose graph takes the encoded columns unscaled (standardization, and
for regression the target's scale, are inside it), with encoding.json beside it: the columns,
vocabularies and class labels that turn a raw row into its input and its output into a label.

The framework's part is in the backend's exporter (registry.BACKENDS names it);
this module checks the request and writes the folder whole or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from rayfit.backends.registry import BACKENDS
from rayfit.data import DataInfo
from rayfit.errors import ConfigError, DataError
from rayfit.inference import read_model_folder, resolve_run

FORMATS = ("onnx", "torchscript", "savedmodel")
ENCODING_FILE = "encoding.json"


def graph_constants(info: DataInfo) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(mean, std) of the encoded columns and (scale, shift) of the output, as float32 inputs of
    the graph: outputs are logits for classification, the target's own values for regression."""
    mean, std = np.asarray(info.mean, np.float32), np.asarray(info.std, np.float32)
    if info.task == "regression":
        return mean, std, float(info.target_std), float(info.target_mean)
    return mean, std, 1.0, 0.0


def encoding(info: DataInfo, fmt: str, model_file: str) -> dict:
    """What a user of the exported file needs to build its input and read its output."""
    return {
        "format": fmt, "model_file": model_file, "task": info.task, "target": info.target,
        "features": info.features,  # raw columns, in the order their encoded blocks come
        "inputs": info.input_names,  # the graph's input columns: numbers unscaled, one-hot blocks
        "vocab": info.vocab,  # categorical column -> its categories (one input each, unknown: all 0)
        "classes": info.classes,  # output index -> label (classification: outputs are logits)
        "outputs": "values of the target" if info.task == "regression" else "logits per class",
        "missing": info.missing, "fill": info.fill,  # data.missing's policy and its mean fills
        "image_shape": info.image_shape,
    }


def default_output(run_dir: Path, fmt: str) -> Path:
    return run_dir / "exports" / fmt


def export_run(run: str, fmt: str, output: str | None = None, trust_code: bool = False) -> Path:
    """Export run `run` in format `fmt` to `output` (default RUN/exports/FMT); the folder appears
    whole or not at all, and an existing one is never written into."""
    run_dir = resolve_run(run)
    cfg, info = read_model_folder(run_dir, trust_code)
    exporter = BACKENDS[cfg.backend].load("exporter")
    if fmt not in exporter.FORMATS:
        raise ConfigError(
            f"--format {fmt}: not for a {cfg.backend} run; expected one of {', '.join(exporter.FORMATS)}"
        )
    target = Path(output) if output is not None else default_output(run_dir, fmt)
    if target.exists():
        raise DataError(f"--output {target}: it exists; choose a new path (nothing is overwritten)")
    if output is None:
        target.parent.mkdir(exist_ok=True)
    elif not target.parent.is_dir():
        raise DataError(f"--output {target}: the folder {target.parent} does not exist; create it first")
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        staging.mkdir()
        model_file = exporter.export(cfg, info, run_dir / "model", fmt, staging)
        (staging / ENCODING_FILE).write_text(json.dumps(encoding(info, fmt, model_file), indent=1))
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target

