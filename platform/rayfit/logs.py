"""What reaches the terminal: rayfit's own lines always, library INFO chatter only with --verbose.

MLflow sets its loggers' level when it is imported, from MLFLOW_LOGGING_LEVEL: setting that variable
(inherited by Ray workers and job processes too) keeps its INFO lines quiet wherever it is imported.
Warnings and errors of every library still show.
"""

from __future__ import annotations

import logging
import os
import sys

QUIET_LIBRARIES = ("mlflow", "alembic", "huey")
VERBOSE_ENV = "RAYFIT_VERBOSE"  # the Ray code reads it to let Ray's own lines through
MLFLOW_LEVEL_ENV = "MLFLOW_LOGGING_LEVEL"
MLFLOW_BARS_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"  # "Downloading artifacts" bars of log_model
_handler: logging.Handler | None = None  # the one handler configure() added to the root logger


def configure(verbose: bool) -> None:
    """Log rayfit's INFO lines to stderr; the libraries' at WARNING unless `verbose`."""
    quiet = not verbose
    # Libraries log to the root logger (matplotlib's "generated new fontManager", ...): it shows their
    # warnings only; rayfit's own loggers are children of "rayfit" and keep their INFO lines.
    global _handler
    root = logging.getLogger()
    if _handler is not None:  # the CLI called again in one process (tests): replace only our own
        root.removeHandler(_handler)
    _handler = logging.StreamHandler(sys.stderr)  # the stderr of now (a test may have swapped it)
    _handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(_handler)
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    logging.getLogger("rayfit").setLevel(logging.INFO)
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.pop(VERBOSE_ENV, None)
    user_level = os.environ.get(MLFLOW_LEVEL_ENV)
    if user_level is None or user_level == "WARNING":  # a level the user chose is kept
        os.environ[MLFLOW_LEVEL_ENV] = "WARNING" if quiet else "INFO"
    if os.environ.get(MLFLOW_BARS_ENV) is None:  # a value the user chose is kept
        os.environ[MLFLOW_BARS_ENV] = "false" if quiet else "true"
    for name in QUIET_LIBRARIES:  # for libraries already imported (the CLI called in-process)
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.INFO)


def verbose() -> bool:
    """`rayfit -v` was given (in this process or the driver that started it)."""
    return os.environ.get(VERBOSE_ENV) == "1"


def worker_env() -> dict[str, str]:
    """What a Ray worker's environment needs to be as quiet (or verbose) as its driver."""
    return {VERBOSE_ENV: "1" if verbose() else "0", MLFLOW_LEVEL_ENV: "INFO" if verbose() else "WARNING",
            MLFLOW_BARS_ENV: "true" if verbose() else "false"}


def configure_worker() -> None:
    """In a Ray Train worker: Ray Train sets the root logger to INFO there; keep libraries at WARNING
    unless verbose (MLflow, imported before, has a handler and level of its own)."""
    if not verbose():
        for name in ("", *QUIET_LIBRARIES):
            logging.getLogger(name).setLevel(logging.WARNING)
