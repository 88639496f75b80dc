"""The one exception type users see: a one-line message naming the problem and the fix."""


class Ephys2txError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""


class DataFileMissing(Ephys2txError):
    """A pinned data file is not in the data directory."""


class NoCurrentClampSweeps(Ephys2txError):
    """A readable recording whose sweeps are all voltage clamp: a final answer, not a retry."""
