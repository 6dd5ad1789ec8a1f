"""Keras 3 models with the torch models' architectures: mlp, cnn, and user models by import path.

Layers are named by their index in the torch nn.Sequential (Dense "0", its activation "1", ...), so
optimizer.param_groups names the same module on both backends. Initialisers follow torch's
defaults (uniform in +-1/sqrt(fan_in)), so a run starts from the same kind of weights.
"""

from __future__ import annotations

import math

import keras

from rayfit.config import ModelConfig
from rayfit.errors import ConfigError
from rayfit.imports import call_user
from rayfit.models import build_by_type, check_image_shape


class _Names:
    """Hands out torch's nn.Sequential indices as layer names, in order."""

    def __init__(self) -> None:
        self.index = 0

    def next(self) -> str:
        self.index += 1
        return str(self.index - 1)


def _torch_init(fan_in: int) -> dict[str, keras.initializers.Initializer]:
    """torch's default Linear/Conv2d initialisation: kaiming_uniform(a=sqrt(5)) and its bias rule."""
    bound = 1.0 / math.sqrt(fan_in)
    return {
        "kernel_initializer": keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
        "bias_initializer": keras.initializers.RandomUniform(-bound, bound),
    }


def _activation(name: str, layer_name: str) -> keras.layers.Layer:
    if name == "leaky_relu":  # torch's default slope; Keras's is 0.3
        return keras.layers.LeakyReLU(negative_slope=0.01, name=layer_name)
    return keras.layers.Activation(name, name=layer_name)  # gelu is exact (erf) in both


def _batch_norm(layer_name: str) -> keras.layers.Layer:
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=layer_name)  # torch's


def dense_stack(cfg: ModelConfig, n_inputs: int, n_outputs: int, names: _Names) -> list[keras.layers.Layer]:
    """Dense -> [BatchNorm] -> activation -> [Dropout] per hidden width, then the output layer."""
    layers: list[keras.layers.Layer] = []
    width = n_inputs
    for units in cfg.hidden_units:
        layers.append(keras.layers.Dense(units, name=names.next(), **_torch_init(width)))
        if cfg.batch_norm:
            layers.append(_batch_norm(names.next()))
        layers.append(_activation(cfg.activation, names.next()))
        if cfg.dropout:
            layers.append(keras.layers.Dropout(cfg.dropout, name=names.next()))
        width = units
    layers.append(keras.layers.Dense(n_outputs, name=names.next(), **_torch_init(width)))
    return layers


def mlp(cfg: ModelConfig, n_inputs: int, n_outputs: int, image_shape: list[int] | None) -> keras.Model:
    layers = dense_stack(cfg, n_inputs, n_outputs, _Names())
    return keras.Sequential([keras.Input((n_inputs,)), *layers], name="mlp")


def cnn(cfg: ModelConfig, n_inputs: int, n_outputs: int, image_shape: list[int] | None) -> keras.Model:
    """3x3 conv blocks over rows reshaped to image_shape, 2x2 pooling while the image is >= 4 wide,
    then the dense stack. Rows hold channels first (torch's layout); TF's CPU convolutions want
    channels last, hence the Permute, which has no torch counterpart and no index."""
    channels, height, width = check_image_shape(image_shape, n_inputs)
    names = _Names()
    layers: list[keras.layers.Layer] = [
        keras.layers.Reshape((channels, height, width), name=names.next()),
        keras.layers.Permute((2, 3, 1), name="channels_last"),
    ]
    for out_channels in cfg.channels:
        layers.append(keras.layers.Conv2D(
            out_channels, 3, padding="same", name=names.next(), **_torch_init(channels * 9)))
        if cfg.batch_norm:
            layers.append(_batch_norm(names.next()))
        layers.append(_activation(cfg.activation, names.next()))
        if min(height, width) >= 4:
            layers.append(keras.layers.MaxPooling2D(2, name=names.next()))
            height, width = height // 2, width // 2
        channels = out_channels
    layers.append(keras.layers.Flatten(name=names.next()))
    layers += dense_stack(cfg, channels * height * width, n_outputs, names)
    return keras.Sequential([keras.Input((n_inputs,)), *layers], name="cnn")


BUILDERS = {"mlp": mlp, "cnn": cnn}


def build_model(
    cfg: ModelConfig, n_inputs: int, n_outputs: int, image_shape: list[int] | None = None,
    dtype_policy: str = "float32",
) -> keras.Model:
    """Build the model named by cfg.type with layers computing under `dtype_policy` (for example
    mixed_bfloat16); a user function must return a keras.Model."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype_policy)  # layers take the global policy when created
    try:
        model = build_by_type(cfg, BUILDERS, keras.Model, "keras.Model", n_inputs, n_outputs, image_shape)
    finally:
        keras.config.set_dtype_policy(previous)
    if not model.built or not model.trainable_variables:
        # a subclassed model creates its weights on first call
        call_user(model, "model.type", f"the model of {cfg.type} on a batch of shape (1, {n_inputs})",
                  keras.ops.zeros((1, n_inputs)))
    try:
        model.get_config()  # export writes model.keras: fail now, not after training
    except NotImplementedError:
        raise ConfigError(
            f"model.type: {cfg.type} returned a keras.Model that Keras cannot save; give its class "
            "a get_config() returning its __init__ arguments"
        ) from None
    return model
