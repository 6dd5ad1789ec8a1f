"""Model builders by name (mlp, cnn) or by import path 'package.module:function', per framework."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rayfit.config import ModelConfig
from rayfit.errors import ConfigError
from rayfit.imports import call_user, is_import_path, load_object

Builder = Callable[[ModelConfig, int, int, "list[int] | None"], Any]


def build_by_type(
    cfg: ModelConfig, builders: dict[str, Builder], model_class: type, class_name: str,
    n_inputs: int, n_outputs: int, image_shape: list[int] | None,
) -> Any:
    """Build the model named by cfg.type; a user function is called as
    fn(n_inputs=..., n_outputs=..., **cfg.kwargs) and must return a `model_class`."""
    if is_import_path(cfg.type):
        fn = load_object(cfg.type, "model.type")
        arguments = ", ".join(["n_inputs=...", "n_outputs=...", *cfg.kwargs])
        model = call_user(fn, "model.type", f"{cfg.type}({arguments})", n_inputs=n_inputs, n_outputs=n_outputs, **cfg.kwargs)
        if not isinstance(model, model_class):
            raise ConfigError(f"model.type: {cfg.type} returned {type(model).__name__}, not a {class_name}")
        return model
    if cfg.type not in builders:
        raise ConfigError(
            f"model.type: unknown model {cfg.type!r}; expected one of {', '.join(builders)} "
            "or 'package.module:function'"
        )
    return builders[cfg.type](cfg, n_inputs, n_outputs, image_shape)


def check_image_shape(image_shape: list[int] | None, n_inputs: int) -> tuple[int, int, int]:
    """(channels, height, width) for the cnn model, checked against the row width."""
    if not image_shape or len(image_shape) != 3:
        raise ConfigError("data.image_shape: the cnn model needs [channels, height, width]")
    channels, height, width = image_shape
    if channels * height * width != n_inputs:
        raise ConfigError(
            f"data.image_shape: {image_shape} holds {channels * height * width} values "
            f"but each row has {n_inputs} features"
        )
    return channels, height, width
