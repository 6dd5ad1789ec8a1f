"""Resolve user code named as 'package.module:attribute' (models, schedules)."""

from __future__ import annotations

import importlib
from typing import Any

from rayfit.errors import ConfigError


def is_import_path(text: str) -> bool:
    return ":" in text


def load_object(path: str, field: str) -> Any:
    """Import `package.module:attribute`; a failure is a ConfigError naming `field`."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"{field}: expected 'package.module:function', got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{field}: cannot import module {module_name!r} ({exc})") from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigError(f"{field}: module {module_name!r} has no attribute {attribute!r}") from None
