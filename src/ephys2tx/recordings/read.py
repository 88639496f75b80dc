"""`read_recording(path)`: one entry point for every supported recording format."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import Ephys2txError, NoCurrentClampSweeps, one_line
from .sweeps import Recording

log = logging.getLogger(__name__)

SUFFIXES = (".abf", ".nwb")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def looks_like_allen_nwb(path: Path) -> bool:
    """True for Allen / MIES files: NWB 1 layout, MIES lab notebook, the legacy sweep table
    (which IPFX reads), or Allen stimulus codes.

    Reads only HDF5 attributes and group names, so it is cheap; any read problem means
    "no" and is reported by the reader that runs next.
    """
    import h5py

    from .nwb import is_allen_code

    try:
        with h5py.File(path, "r") as f:
            version = f.attrs.get("nwb_version", b"")
            version = version.decode() if isinstance(version, bytes) else str(version)
            if version.startswith("NWB-1") or "acquisition/timeseries" in f:
                return True
            legacy = (
                "general/labnotebook",
                "general/stimsets",
                "general/intracellular_ephys/sweep_table",
            )
            if any(name in f for name in legacy):
                return True
            for group in ("acquisition", "stimulus/presentation"):
                if group not in f:
                    continue
                for name in list(f[group])[:50]:
                    description = f[group][name].attrs.get("stimulus_description", "")
                    if isinstance(description, bytes):
                        description = description.decode(errors="replace")
                    if is_allen_code(description):
                        return True
    except Exception:  # noqa: BLE001 - a bad file is reported by the reader itself
        return False
    return False


def _read_nwb_any(path: Path) -> Recording:
    from .hdf5_check import check_hdf5_walks
    from .nwb import read_nwb

    check_hdf5_walks(path)  # a damaged file can hang or crash the HDF5 library itself
    if looks_like_allen_nwb(path):
        from .allen_nwb import read_allen_nwb

        try:
            return read_allen_nwb(path)
        except NoCurrentClampSweeps:  # read fine, and all voltage clamp: nothing to fall back to
            raise
        except Exception as allen_error:  # noqa: BLE001 - fall back to the generic reader
            log.info("Allen reader failed on %s (%s); trying the NWB 2 reader", path, allen_error)
            try:
                return read_nwb(path)
            except Ephys2txError as exc:
                raise Ephys2txError(
                    f"{exc} (the Allen reader also failed: {one_line(allen_error)})"
                ) from exc
    return read_nwb(path)


def _sniff(path: Path) -> str:
    """Format from the first bytes, for files whose suffix is missing or wrong."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head[:4] in (b"ABF ", b"ABF2"):
        return ".abf"
    if head == HDF5_SIGNATURE:
        return ".nwb"
    return ""


def is_broken_link(path: Path) -> bool:
    """A symbolic link whose target does not exist (a file moved or a disk not mounted)."""
    return path.is_symlink() and not path.exists()


def broken_link_message(path: Path) -> str:
    """Why a broken link gives no recording, naming its target (without the path itself)."""
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return (
        f"broken symbolic link to {target} (the target does not exist or loops); "
        "fix or remove the link"
    )


def read_recording(path: str | Path) -> Recording:
    """Read one ABF or NWB recording into the sweep model (voltage mV, current pA)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise Ephys2txError(f"{path} is a folder; pass one .abf or .nwb file (or use read_folder)")
    if path.exists() and not path.is_file():
        raise Ephys2txError(f"{path}: not a regular file (a device or a pipe); pass a recording")
    if is_broken_link(path):
        raise Ephys2txError(f"{path}: {broken_link_message(path)}")
    if not path.is_file():
        raise Ephys2txError(f"{path}: file not found; check the path")
    if path.stat().st_size == 0:
        raise Ephys2txError(f"{path}: the file is empty; copy or download it again")
    # the content decides (an ABF saved as .nwb is read as ABF); the suffix only when the
    # first bytes name no known format
    kind = _sniff(path) or path.suffix.lower()
    if kind not in SUFFIXES:
        raise Ephys2txError(
            f"{path}: unknown recording format {path.suffix or '(no extension)'!r}; "
            "ephys2tx reads Axon .abf and NWB 2 .nwb files (convert others to NWB)"
        )
    if kind == ".abf":
        from .abf import read_abf

        return read_abf(path)
    return _read_nwb_any(path)


def recording_files(folder: str | Path) -> list[Path]:
    """The .abf / .nwb files in a folder and its subfolders (sorted); an error when none.

    Hidden files and folders (name starting with a dot) are skipped. A broken symbolic link
    with a recording suffix is kept, so that the reader reports it rather than it vanishing.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise Ephys2txError(f"{folder}: not a folder; check the path")
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and (p.is_file() or is_broken_link(p))
    )
    if not files:
        raise Ephys2txError(
            f"{folder}: no .abf or .nwb recordings in this folder or its subfolders; point to "
            "the folder holding your recordings"
        )
    return files


def is_recording_input(path: Path) -> bool:
    """A folder, or a file with a recording suffix (anything else is taken for a cell table)."""
    return path.is_dir() or path.suffix.lower() in SUFFIXES


def expand_recordings(paths: Iterable[str | Path]) -> tuple[list[Path], list[str]]:
    """Files as given; folders become their .abf/.nwb files, subfolders included.

    Returns the files (each once) and one line per folder saying how many were found where
    (or, for a folder without recordings, why). A path that does not exist stays in the list:
    the batch reports it as a file without a cell.
    """
    files: list[Path] = []
    found: list[str] = []
    for p in map(Path, paths):
        if not p.is_dir():
            files.append(p)
            continue
        try:
            inside = recording_files(p)
        except Ephys2txError as exc:
            found.append(str(exc))
            continue
        where = Counter(str(f.parent.relative_to(p)) for f in inside)
        shown = ", ".join(
            f"{n} in {p if sub == '.' else p / sub}" for sub, n in sorted(where.items())
        )
        found.append(f"{p}: {len(inside)} recording(s): {shown}")
        files.extend(inside)
    seen: set[Path] = set()
    unique = []
    for f in files:
        if (key := f.resolve()) not in seen:
            seen.add(key)
            unique.append(f)
    return unique, found


def read_folder(folder: str | Path) -> Iterator[tuple[Path, Recording | Ephys2txError]]:
    """Read every recording of a folder; a bad file yields its error and the rest goes on."""
    for path in recording_files(folder):
        try:
            yield path, read_recording(path)
        except Ephys2txError as exc:
            yield path, exc
