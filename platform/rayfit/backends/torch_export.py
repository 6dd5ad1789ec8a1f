"""A torch run's model as ONNX (torch.onnx.export) or TorchScript, taking unscaled encoded columns
(see serving/export.py)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from rayfit.backends.torch_backend import load_model
from rayfit.config import ExperimentConfig
from rayfit.data import DataInfo
from rayfit.serving.export import graph_constants

FORMATS = ("onnx", "torchscript")
FILES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
ONNX_OPSET = 17


class RawInputModel(nn.Module):
    """The run's model behind its standardization, with the output put back in the target's
    units (regression): what predict computes, as one graph."""

    def __init__(self, model: nn.Module, info: DataInfo) -> None:
        super().__init__()
        mean, std, scale, shift = graph_constants(info)
        self.model, self.scale, self.shift = model, scale, shift
        self.register_buffer("mean", torch.from_numpy(mean))
        self.register_buffer("std", torch.from_numpy(std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std).float() * self.scale + self.shift


def export(cfg: ExperimentConfig, info: DataInfo, model_folder: Path, fmt: str, folder: Path) -> str:
    """Write the model in `fmt` into `folder`; returns the file's name."""
    model = RawInputModel(load_model(cfg, info, model_folder), info).eval()
    example = torch.zeros(2, info.n_inputs)
    path = folder / FILES[fmt]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based ONNX exporter's deprecation notice
        if fmt == "onnx":  # this exporter needs no onnxscript, and rows are a dynamic axis
            torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=ONNX_OPSET,
                              input_names=["inputs"], output_names=["outputs"],
                              dynamic_axes={"inputs": {0: "rows"}, "outputs": {0: "rows"}})
        else:
            torch.jit.save(torch.jit.trace(model, example), str(path))
    return path.name
