"""User-facing errors: each carries one line that names the field, file, row or column at fault.

The CLI prints the message and exits 2 without a traceback; anything else is a bug and keeps its
traceback.
"""


class RayfitError(Exception):
    """Bad input from the user: config, data, checkpoint or request."""


class ConfigError(RayfitError):
    """The experiment file or an override is invalid."""


class DataError(RayfitError):
    """A data file, column or value cannot be used as asked."""


class CheckpointError(RayfitError):
    """A checkpoint or run folder is missing, corrupt or belongs to another run."""


class ClusterLost(RayfitError):
    """The Ray cluster stopped answering mid-run; the process cannot shut Ray down cleanly."""


def first_line(exc: BaseException) -> str:
    """An exception's first line (its type when it has no message), at most 200 characters: for
    one-line errors that quote a library's reason."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
