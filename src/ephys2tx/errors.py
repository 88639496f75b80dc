"""The one exception type users see: a one-line message naming the problem and the fix."""

from __future__ import annotations

import importlib
from types import ModuleType

# Longest cause quoted inside a user's one-line message (a library's text can be pages long).
ONE_LINE_LIMIT = 160


class Ephys2txError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""


class DataFileMissing(Ephys2txError):
    """A pinned data file is not in the data directory."""


class NoCurrentClampSweeps(Ephys2txError):
    """A readable recording whose sweeps are all voltage clamp: a final answer, not a retry."""


class MissingExtra(Ephys2txError):
    """An optional dependency (an install extra) that this task needs is not installed."""


def import_extra(module: str, extra: str, needed_for: str) -> ModuleType:
    """Import an optional dependency, or say in one line which extra installs it.

    A core install (`pip install ephys2tx`) predicts with the default model; networks, Dask
    and DANDI come with the extras `nn`, `dask` and `dandi`.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != module.split(".")[0]:
            raise  # the extra is installed but broken inside: not a missing extra
        raise MissingExtra(
            f"{needed_for} needs {module.split('.')[0]}, which is not installed; "
            f"pip install 'ephys2tx[{extra}]'"
        ) from None


def one_line(exc: BaseException, limit: int = ONE_LINE_LIMIT) -> str:
    """An exception as one line for a message or a table cell (whitespace and newlines
    collapsed).

    Our own errors are already worded for users and are kept whole, hint included. Anything
    else is prefixed with its type (alone when it has no text) and shortened to `limit`.
    """
    text = " ".join(str(exc).split())
    if isinstance(exc, Ephys2txError):
        return text
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
