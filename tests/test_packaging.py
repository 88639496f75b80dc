"""Packaging: a core install needs no torch, Dask or DANDI to import or to predict.

The extras (`nn`, `dask`, `dandi`) are imported only by the commands that need them, and
say in one line which extra to install when they are missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ephys2tx.errors import MissingExtra, import_extra

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = ("torch", "dask", "distributed", "dandi")


def _modules_after(code: str) -> set[str]:
    """Top-level module names in sys.modules after running `code` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_import_ephys2tx_loads_no_optional_dependency():
    loaded = _modules_after("import ephys2tx")
    assert not loaded & set(OPTIONAL), sorted(loaded & set(OPTIONAL))


def test_the_predict_path_loads_no_optional_dependency():
    # everything `predict` and `cells` import before they run: the CLI with every command
    # registered, the default model and the trust columns
    code = (
        "import ephys2tx.cli, ephys2tx.models.recipes, ephys2tx.models.bundle\n"
        "import ephys2tx.commands.predict, ephys2tx.commands.train, ephys2tx.predictor"
    )
    loaded = _modules_after(code)
    assert not loaded & set(OPTIONAL), sorted(loaded & set(OPTIONAL))


def test_pyproject_gives_ranges_not_exact_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    pinned = [r for r in requirements if "==" in r or "===" in r]
    assert not pinned, f"exact pins belong in requirements.lock: {pinned}"
    assert not any(
        r.split("[")[0].split(">")[0].startswith("torch") for r in project["dependencies"]
    )
    assert {"nn", "dask", "dandi", "docs", "dev"} <= set(project["optional-dependencies"])


def test_a_missing_extra_is_one_line_naming_the_extra():
    with pytest.raises(MissingExtra) as caught:
        import_extra("ephys2tx_no_such_module", "nn", "the BiLSTM")
    message = str(caught.value)
    assert "\n" not in message
    assert "pip install 'ephys2tx[nn]'" in message and message.startswith("the BiLSTM needs")


def test_an_installed_extra_is_returned():
    assert import_extra("json", "nn", "x") is json
