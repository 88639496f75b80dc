"""Small file helpers every layer may use."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import Ephys2txError, one_line

CHUNK = 1 << 20  # bytes read at a time


def sha256_of(path: str | Path, chunk: int = CHUNK) -> str:
    """Hex sha256 of a file's contents, read in chunks (recordings and tables can be GBs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_writable_folder(folder: str | Path, what: str) -> Path:
    """Create `folder` if absent and prove a file can be written in it, before any work.

    `what` names the place in the message (e.g. "--out /x"). A path under a file, a
    read-only or pseudo file system (/proc), or a full disk is a one-line error.
    """
    folder = Path(folder)
    existing = next(p for p in [folder, *folder.parents] if p.exists())
    if not existing.is_dir():
        raise Ephys2txError(f"{what}: {existing} is a file, not a folder; give a folder path")
    try:
        if marked_read_only(existing):
            raise PermissionError(errno.EACCES, f"{existing} is marked read-only")
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise Ephys2txError(
            f"{what}: cannot write in {folder} ({exc.strerror or one_line(exc)}); "
            "choose a writable folder"
        ) from exc
    return folder


def marked_read_only(path: Path) -> bool:
    """A file or folder without its owner's write bit: root could write there, but must not
    (e.g. a shared read-only data mirror)."""
    return not path.stat().st_mode & stat.S_IWUSR


def check_out_file(path: str | Path, option: str = "--out") -> Path:
    """An output file's place, checked before any work: not a folder or a device, and its
    folder writable (the file itself is replaced atomically when done)."""
    path = Path(path)
    if path.is_dir():
        raise Ephys2txError(f"{option} {path} is a folder; give a file name inside it")
    if path.exists() and not path.is_file():
        raise Ephys2txError(f"{option} {path} is not a regular file; give a file name")
    # an atomic rename replaces a file whatever its own permissions: honour its read-only mark
    if path.is_file() and marked_read_only(path):
        raise Ephys2txError(
            f"{option} {path} is a read-only file; give another name, or make it writable first"
        )
    check_writable_folder(path.parent, f"{option} {path}")
    return path


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Write a file into place atomically: `write(tmp)` fills a temporary file in the same
    folder, which is flushed to disk and then renamed over `path`, so a reader sees the old
    file or the whole new one, never half of it (and a crash leaves no partial `path`)."""
    path = Path(path)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # as a file created in place would be, not mkstemp's 0600
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """`atomic_write` of a UTF-8 text."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def staging_folder(parent: Path, name: str) -> Path:
    """A new temporary folder `.NAME-PID-XXXXXXXX` in `parent`, to be renamed into place.

    Why the pid: a run killed while writing (SIGKILL, power loss) cannot remove its folder;
    the next one removes the folders of `name` whose process is no longer running, and
    never those of a run still writing."""
    pattern = re.compile(rf"\.{re.escape(name)}-(\d+)-[a-z0-9_]{{8}}")
    for old in parent.glob(f".{name}-*"):
        found = pattern.fullmatch(old.name)
        if found and old.is_dir() and not _running(int(found.group(1))):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f".{name}-{os.getpid()}-", dir=parent))


def _running(pid: int) -> bool:
    """Whether a process of this pid runs on this machine (on Windows: assumed so)."""
    if os.name == "nt":  # os.kill(pid, 0) would end the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# A text cell starting with one of these is run as a formula by spreadsheets (OWASP "CSV
# injection"): every CSV written for people gets such cells prefixed with a single quote.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe_text(value: object) -> object:
    """`value` with a leading ' when it is text a spreadsheet would evaluate (`=1+2` ->
    `'=1+2`); numbers, including negative ones, and other text stay as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_safe(table):
    """A copy of a DataFrame whose text cells are neutralized by `csv_safe_text`."""
    import pandas as pd

    safe = table.copy()
    for column in safe.columns:
        series = safe[column]
        if pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series):
            safe[column] = series.map(csv_safe_text, na_action="ignore")
    return safe


def write_user_csv(table, path: str | Path) -> Path:
    """Write a DataFrame as a CSV for people to open (predictions, errors.csv, cell tables):
    text cells neutralized (`csv_safe`), written with `atomic_write`, so a failed write
    leaves no partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    safe = csv_safe(table)
    return atomic_write(path, lambda tmp: safe.to_csv(tmp, index=False))
