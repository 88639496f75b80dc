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
