"""The package version, in the bottom layer so that every module can stamp what it writes."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ephys2tx")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
