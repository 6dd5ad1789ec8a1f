"""PyTorch models: an MLP, a small CNN for image-shaped rows, and user models by import path."""

from __future__ import annotations

from torch import nn

from rayfit.config import ModelConfig
from rayfit.models import build_by_type, check_image_shape

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
    channels, height, width = check_image_shape(image_shape, n_inputs)
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
    """Build the model named by cfg.type (a user function must return an nn.Module)."""
    return build_by_type(cfg, BUILDERS, nn.Module, "torch.nn.Module", n_inputs, n_outputs, image_shape)
