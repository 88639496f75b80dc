"""Shared fixtures: the real public tables, read from the ../shared/data mirror."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()
RECORDINGS = SHARED_DATA / "recordings"


@pytest.fixture(scope="session", autouse=True)
def _data_mirror(tmp_path_factory):
    """Point the package at the local mirror and a per-session data directory."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.exit(f"the data mirror {SHARED_DATA} is missing; tests need ../shared/data", 2)
    old = {k: os.environ.get(k) for k in ("EPHYS2TX_MIRROR", "EPHYS2TX_DATA_DIR")}
    os.environ["EPHYS2TX_MIRROR"] = str(SHARED_DATA)
    os.environ["EPHYS2TX_DATA_DIR"] = str(tmp_path_factory.mktemp("data"))
    yield
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def mouse_cells(_data_mirror):
    from ephys2tx.datasets.cells import build_cells

    return build_cells("mouse")[0]


@pytest.fixture(scope="session")
def human_cells(_data_mirror):
    from ephys2tx.datasets.cells import build_cells

    return build_cells("human")[0]


def small_synthetic_cell(subclass: str, seed: int, cell_id: str):
    """A SYNTHETIC Allen-protocol mouse cell cut to its long squares and two short squares.

    Smaller (about 7 MB as NWB) and quicker to extract than the full protocol (no ramp),
    yet every step-based feature family is there.
    """
    import numpy as np

    from ephys2tx.recordings.sweeps import LONG_SQUARE, SHORT_SQUARE
    from ephys2tx.synthetic import simulate_cell

    rec = simulate_cell(subclass, "mouse", np.random.default_rng(seed), cell_id=cell_id)
    shorts = [s for s in rec.sweeps if s.stimulus_type == SHORT_SQUARE][-2:]
    rec.sweeps = [s for s in rec.sweeps if s.stimulus_type == LONG_SQUARE] + shorts
    return rec


@pytest.fixture(scope="session")
def synthetic_recordings():
    """Three small synthetic cells (Pvalb, Sst, Vip), simulated once per test session."""
    return [
        small_synthetic_cell(sub, seed, f"syn{sub}")
        for seed, sub in enumerate(("Pvalb", "Sst", "Vip"), start=21)
    ]


@pytest.fixture(scope="session")
def synthetic_nwb(synthetic_recordings, tmp_path_factory):
    """One small synthetic Allen NWB file (read-only: copy it before changing it)."""
    from ephys2tx.recordings.allen_nwb import write_allen_nwb

    folder = tmp_path_factory.mktemp("synthetic_nwb")
    return write_allen_nwb(folder / "cellA.nwb", synthetic_recordings[0], "SYNTHETIC test cell")
