"""Download the pinned tables (or copy them from a mirror), verify sha256, write atomically."""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from platformdirs import user_cache_dir

from ..errors import DataFileMissing, Ephys2txError, one_line
from ..files import atomic_write, atomic_write_text, check_writable_folder, sha256_of
from .sources import DATA_FILES, DataFile

DATA_DIR_ENV = "EPHYS2TX_DATA_DIR"
MIRROR_ENV = "EPHYS2TX_MIRROR"
FETCH_HINT = "run `ephys2tx fetch` (add `--mirror DIR_OR_URL` when offline)"
# Size and mtime of every verified file, so reads re-hash a file only when it has changed.
STAMPS_FILE = ".ephys2tx-verified.json"


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """`--data-dir`, else $EPHYS2TX_DATA_DIR, else the user's cache directory."""
    chosen = data_dir or os.environ.get(DATA_DIR_ENV) or user_cache_dir("ephys2tx")
    return Path(chosen).expanduser()


def resolve_mirror(mirror: str | None = None) -> str | None:
    """`--mirror`, else $EPHYS2TX_MIRROR, else None (the internet)."""
    return mirror or os.environ.get(MIRROR_ENV) or None


def _source_of(entry: DataFile, mirror: str | None) -> str:
    if mirror is None:
        return entry.url
    if "://" in mirror:
        return mirror.rstrip("/") + "/" + entry.name
    return str(Path(mirror).expanduser() / entry.name)


def _copy_to(source: str, target: Path) -> None:
    if "://" not in source:
        if not Path(source).is_file():
            raise Ephys2txError(
                f"mirror has no file {source}; point --mirror at a folder laid out like "
                "the data directory (e.g. ../shared/data)"
            )
        shutil.copyfile(source, target)
        return
    try:
        with urllib.request.urlopen(source, timeout=60) as response, open(target, "wb") as out:
            shutil.copyfileobj(response, out)
    except urllib.error.HTTPError as exc:
        raise Ephys2txError(f"download of {source} failed: HTTP {exc.code}") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise Ephys2txError(
            f"network unreachable while downloading {source} ({exc}); "
            f"use `--mirror DIR_OR_URL` or set {MIRROR_ENV} to read a local copy"
        ) from exc


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _read_stamps(data_dir: Path) -> dict[str, list[int]]:
    try:
        stamps = json.loads((data_dir / STAMPS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return stamps if isinstance(stamps, dict) else {}


def _record_stamp(data_dir: Path, name: str, path: Path) -> None:
    """Remember that `path` was verified at its current size and mtime (best effort)."""
    stamps = _read_stamps(data_dir)
    stamps[name] = _stamp(path)
    try:
        atomic_write_text(data_dir / STAMPS_FILE, json.dumps(stamps, indent=1, sort_keys=True))
    except OSError:  # a read-only data directory: verification just repeats next time
        pass


def local_state(entry: DataFile, data_dir: Path) -> str:
    """`missing`, `ok` or `altered` (present, but not the pinned bytes) for one data file.

    Re-hashes only when the size or mtime differs from the last verification.
    """
    target = data_dir / entry.name
    if not target.is_file():
        return "missing"
    if _read_stamps(data_dir).get(entry.name) == _stamp(target):
        return "ok"
    if sha256_of(target) != entry.sha256:
        return "altered"
    _record_stamp(data_dir, entry.name, target)
    return "ok"


REPAIRED_NOTE = "the local copy had been changed: replaced by the pinned file"


def altered_files(data_dir: Path, names: Iterable[str] | None = None) -> list[str]:
    """Pinned files present in `data_dir` whose bytes are no longer the pinned ones."""
    chosen = list(names) if names is not None else list(DATA_FILES)
    return [n for n in chosen if local_state(DATA_FILES[n], data_dir) == "altered"]


def fetch_file(entry: DataFile, data_dir: Path, mirror: str | None = None) -> Path:
    """Put one pinned file into `data_dir`, verified; a verified existing copy is reused."""
    target = data_dir / entry.name
    if local_state(entry, data_dir) == "ok":
        return target
    check_writable_folder(target.parent, f"data directory {data_dir}")

    def verified_copy(tmp: Path) -> None:  # raising here keeps the old file and no part
        try:
            _copy_to(_source_of(entry, mirror), tmp)
        except OSError as exc:  # a local copy that fails, e.g. a full disk
            raise Ephys2txError(
                f"cannot copy {entry.name} into {data_dir} ({exc.strerror or one_line(exc)}); "
                "free some space or pass --data-dir a writable folder"
            ) from exc
        got = sha256_of(tmp)
        if got != entry.sha256:
            raise Ephys2txError(
                f"checksum mismatch for {entry.name}: expected sha256 {entry.sha256}, got {got}; "
                "the source changed or the download was corrupted, so nothing was kept"
            )

    atomic_write(target, verified_copy)
    _record_stamp(data_dir, entry.name, target)
    return target


def fetch_all(
    data_dir: Path,
    mirror: str | None = None,
    names: Iterable[str] | None = None,
    on_done: Callable[[DataFile, Path], None] | None = None,
) -> dict[str, Path]:
    """Fetch every pinned file (or the named ones); return name -> local path."""
    chosen = list(names) if names is not None else list(DATA_FILES)
    paths = {}
    for name in chosen:
        entry = DATA_FILES[name]
        paths[name] = fetch_file(entry, data_dir, mirror)
        if on_done is not None:
            on_done(entry, paths[name])
    return paths


def data_path(name: str, data_dir: str | Path | None = None, mirror: str | None = None) -> Path:
    """Local path of a pinned file, fetching it from a configured mirror when it is absent.

    A file that differs from its pinned sha256 (edited after fetch) is an error, not used.
    """
    root = resolve_data_dir(data_dir)
    target = root / name
    state = local_state(DATA_FILES[name], root)
    if state == "ok":
        return target
    if state == "altered":
        raise Ephys2txError(
            f"data file {target} was changed after it was fetched (its sha256 is no longer the "
            f"pinned one); run `ephys2tx fetch` to restore it"
        )
    mirror = resolve_mirror(mirror)
    if mirror is not None:
        return fetch_file(DATA_FILES[name], root, mirror)
    raise DataFileMissing(f"data file {target} is missing; {FETCH_HINT}")
