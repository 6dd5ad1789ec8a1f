"""Resolve user code named as 'package.module:attribute' (models, schedules), call it with its
failures reported in one line, and refuse the code a saved config names unless it is trusted."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rayfit.errors import ConfigError, first_line

if TYPE_CHECKING:
    from rayfit.config import ExperimentConfig


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
    except Exception as exc:  # the user's module raised while it ran, or does not compile
        raise ConfigError(
            f"{field}: importing {module_name!r} for {path!r} failed: {type(exc).__name__}: {first_line(exc)}"
        ) from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigError(f"{field}: module {module_name!r} has no attribute {attribute!r}") from None


def call_user(fn: Callable[..., Any], field: str, call: str, *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)` for user code; what it raises becomes one line naming `field` and the
    `call` as the user would write it (the traceback stays on the error, for --debug)."""
    if not callable(fn):
        raise ConfigError(f"{field}: {call.partition('(')[0]} is a {type(fn).__name__}, not a function or class")
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        raise ConfigError(f"{field}: {call} failed: {type(exc).__name__}: {first_line(exc)}") from exc


def refuse_saved_code(cfg: ExperimentConfig, source: str) -> None:
    """A config read from a run or model folder may come from anyone: an import path in it would
    run its code on load, so it is refused unless the user trusts the folder (--trust-code)."""
    for field, value in (("model.type", cfg.model.type), ("schedule.name", cfg.schedule.name)):
        if is_import_path(value):
            raise ConfigError(
                f"{source}: {field} is the import path {value!r}, and loading it would run that code; "
                "pass --trust-code (trust_code=True) if you trust this folder"
            )
