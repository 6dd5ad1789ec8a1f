"""A TensorFlow run's model as a SavedModel (Keras' ExportArchive) or ONNX (tf2onnx), taking
unscaled encoded columns (see serving/export.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
import onnx
import tensorflow as tf

from rayfit.backends.tf_backend import load_model
from rayfit.config import ExperimentConfig
from rayfit.data import DataInfo
from rayfit.errors import ConfigError
from rayfit.serving.export import graph_constants

FORMATS = ("onnx", "savedmodel")
ONNX_FILE = "model.onnx"
ONNX_OPSET = 17
ENDPOINT = "serve"  # the SavedModel's function: loaded.serve(inputs)


def raw_input_function(model: keras.Model, info: DataInfo) -> Callable[[tf.Tensor], tf.Tensor]:
    """The model behind its standardization, output in the target's units (regression). The
    constants are NumPy arrays, so tracing embeds them in the graph (not captured inputs)."""
    mean, std, scale, shift = graph_constants(info)

    def raw(x: tf.Tensor) -> tf.Tensor:
        return tf.cast(model((x - mean) / std, training=False), tf.float32) * scale + shift

    return raw


def export(cfg: ExperimentConfig, info: DataInfo, model_folder: Path, fmt: str, folder: Path) -> str:
    """Write the model in `fmt` into `folder`; returns the model's name in it ('.' for SavedModel,
    which is the folder itself)."""
    model = load_model(cfg, info, model_folder)
    raw = raw_input_function(model, info)
    spec = [tf.TensorSpec([None, info.n_inputs], tf.float32, name="inputs")]
    if fmt == "savedmodel":
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(name=ENDPOINT, fn=raw, input_signature=spec)
        archive.write_out(str(folder), verbose=False)
        return "."
    try:
        import tf2onnx
    except ImportError:
        raise ConfigError("--format onnx: a TensorFlow run needs tf2onnx (pip install tf2onnx)") from None
    proto, _ = tf2onnx.convert.from_function(tf.function(raw, input_signature=spec), input_signature=spec,
                                             opset=ONNX_OPSET)
    name_output(proto, "outputs")  # as the torch export names it (tf2onnx says 'Identity:0')
    onnx.save(proto, str(folder / ONNX_FILE))
    return ONNX_FILE


def name_output(proto: onnx.ModelProto, name: str) -> None:
    """Rename the graph's one output, and the node output that feeds it."""
    output = proto.graph.output[0]
    for node in proto.graph.node:
        node.output[:] = [name if out == output.name else out for out in node.output]
    output.name = name
