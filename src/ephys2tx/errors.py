"""The one exception type users see: a one-line message naming the problem and the fix."""

from __future__ import annotations

# Longest cause quoted inside a user's one-line message (a library's text can be pages long).
ONE_LINE_LIMIT = 160


class Ephys2txError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""


class DataFileMissing(Ephys2txError):
    """A pinned data file is not in the data directory."""


class NoCurrentClampSweeps(Ephys2txError):
    """A readable recording whose sweeps are all voltage clamp: a final answer, not a retry."""


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
