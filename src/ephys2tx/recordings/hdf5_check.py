"""Walk an HDF5 file's structure in a child process before reading it here.

Why: on some damaged files the HDF5 library loops forever inside a C call (found by
fuzzing: reading an attribute of a file with a run of overwritten bytes never returned),
and a C-level loop or crash cannot be interrupted or caught in this process. The child
opens the file, visits every group, dataset and attribute and touches each dataset's
first and last element; if it does not finish within the time limit, or dies, the file is
refused with a one-line reason. Errors the child meets are left to the reader, whose
messages say more.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from ..errors import Ephys2txError

log = logging.getLogger(__name__)

# Seconds the walk may take: a damaged file that hangs is refused after this, and a large
# intact one (a 1 GB Allen NWB file holds a few thousand objects) walks in a few seconds.
WALK_SECONDS = 60.0
OK, FAILED = 0, 3  # child exit codes: walked, or an ordinary error (the reader says more)

_WALK = r"""
import sys
import h5py

def touch(name, obj):
    for key in obj.attrs:
        obj.attrs[key]
    if isinstance(obj, h5py.Dataset) and obj.shape and obj.size:
        obj[(0,) * len(obj.shape)]
        obj[tuple(n - 1 for n in obj.shape)]

try:
    with h5py.File(sys.argv[1], "r") as f:
        touch("/", f)
        f.visititems(touch)
except Exception:
    sys.exit(3)
"""


def check_hdf5_walks(path: str | Path, seconds: float = WALK_SECONDS) -> None:
    """Refuse an HDF5 file whose structure cannot be walked in `seconds` or crashes the
    library; return quietly otherwise (ordinary read errors are left to the reader)."""
    path = Path(path)
    try:
        run = subprocess.run(
            [sys.executable, "-c", _WALK, str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=seconds,
            env={**os.environ, "HDF5_USE_FILE_LOCKING": "FALSE"},
        )
    except OSError as exc:  # the interpreter cannot be started (e.g. a venv being replaced)
        log.warning("%s: HDF5 structure not checked (%s); reading it directly", path, exc)
        return
    except subprocess.TimeoutExpired as exc:
        raise Ephys2txError(
            f"{path}: reading its HDF5 structure did not finish in {seconds:g} s: the file is "
            "damaged; copy or download it again"
        ) from exc
    if run.returncode < 0:
        try:
            name = signal.Signals(-run.returncode).name
        except ValueError:
            name = f"signal {-run.returncode}"
        raise Ephys2txError(
            f"{path}: the HDF5 library crashed reading its structure ({name}): the file is "
            "damaged; copy or download it again"
        )
