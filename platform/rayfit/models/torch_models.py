"""PyTorch models: an MLP, a small CNN for image-shaped rows, and user models by import path."""

from __future__ import annotations

from torch import nn

from rayfit.config import ModelConfig
from rayfit.errors import ConfigError
from rayfit.imports import is_import_path, load_object

ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "silu": nn.SiLU,
}


def dense_stack(cfg: ModelConfig, n_inputs: int, n_outputs: int) -> list[nn.Module]:
    """Linear -> [BatchNorm] -> activation -> [Dropout] per hidden width, then the output layer."""
    layers: list[nn.Module] = []
    width = n_inputs
    for units in cfg.hidden_units:
        layers.append(nn.Linear(width, units))
        if cfg.batch_norm:
            layers.append(nn.BatchNorm1d(units))
        layers.append(ACTIVATIONS[cfg.activation]())
        if cfg.dropout:
            layers.append(nn.Dropout(cfg.dropout))
        width = units
    layers.append(nn.Linear(width, n_outputs))
    return layers


def mlp(cfg: ModelConfig, n_inputs: int, n_outputs: int, image_shape: list[int] | None) -> nn.Module:
    return nn.Sequential(*dense_stack(cfg, n_inputs, n_outputs))


def cnn(cfg: ModelConfig, n_inputs: int, n_outputs: int, image_shape: list[int] | None) -> nn.Module:
    """3x3 conv blocks over rows reshaped to image_shape, 2x2 pooling while the image is >= 4 wide,
    then the dense stack."""
    if not image_shape or len(image_shape) != 3:
        raise ConfigError("data.image_shape: the cnn model needs [channels, height, width]")
    channels, height, width = image_shape
    if channels * height * width != n_inputs:
        raise ConfigError(
            f"data.image_shape: {image_shape} holds {channels * height * width} values "
            f"but each row has {n_inputs} features"
        )
    layers: list[nn.Module] = [nn.Unflatten(1, (channels, height, width))]
    for out_channels in cfg.channels:
        layers.append(nn.Conv2d(channels, out_channels, kernel_size=3, padding=1))
        if cfg.batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(ACTIVATIONS[cfg.activation]())
        if min(height, width) >= 4:
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
        channels = out_channels
    layers.append(nn.Flatten())
    layers += dense_stack(cfg, channels * height * width, n_outputs)
    return nn.Sequential(*layers)


BUILDERS = {"mlp": mlp, "cnn": cnn}


def build_model(
    cfg: ModelConfig, n_inputs: int, n_outputs: int, image_shape: list[int] | None = None
) -> nn.Module:
    """Build the model named by cfg.type; a user function is called as
    fn(n_inputs=..., n_outputs=..., **cfg.kwargs) and must return an nn.Module."""
    if is_import_path(cfg.type):
        fn = load_object(cfg.type, "model.type")
        model = fn(n_inputs=n_inputs, n_outputs=n_outputs, **cfg.kwargs)
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model.type: {cfg.type} returned {type(model).__name__}, not a torch.nn.Module")
        return model
    if cfg.type not in BUILDERS:
        raise ConfigError(
            f"model.type: unknown model {cfg.type!r}; expected one of {', '.join(BUILDERS)} "
            "or 'package.module:function'"
        )
    return BUILDERS[cfg.type](cfg, n_inputs, n_outputs, image_shape)
