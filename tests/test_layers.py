"""The bottom layer and the layer contract: schema facts, the one error formatter, the one
file hash, option checks at parse time, and `lint-imports` on the package."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from ephys2tx.errors import ONE_LINE_LIMIT, Ephys2txError, one_line
from ephys2tx.files import sha256_of
from ephys2tx.schema import (
    DEFAULT_LABEL,
    LABEL_COLUMNS,
    MOUSE_TO_ALIGNED,
    SPECIES,
    SUBCLASSES,
    species_from_text,
)

REPO = Path(__file__).resolve().parents[1]


def test_subclasses_and_label_map_agree_with_the_label_columns():
    assert SUBCLASSES["mouse"] == LABEL_COLUMNS["label5"]
    assert SUBCLASSES["human"] == LABEL_COLUMNS["label"]
    assert set(MOUSE_TO_ALIGNED) == set(SUBCLASSES["mouse"])
    assert set(MOUSE_TO_ALIGNED.values()) == set(LABEL_COLUMNS["label"])
    assert set(DEFAULT_LABEL) == set(SPECIES)


@pytest.mark.parametrize(
    "text, species",
    [("Mus musculus", "mouse"), ("Homo sapiens", "human"), (" Human ", "human"), ("rat", None)],
)
def test_species_from_text(text, species):
    assert species_from_text(text) == species


def test_one_line_keeps_our_errors_whole_and_shortens_others():
    ours = Ephys2txError("file.abf: cannot read\n  it; " + "x" * 300)
    assert one_line(ours) == "file.abf: cannot read it; " + "x" * 300  # the hint is never cut
    theirs = one_line(ValueError("first line\nsecond   line " + "y" * 300))
    assert theirs.startswith("ValueError: first line second line y")
    assert len(theirs) == ONE_LINE_LIMIT and theirs.endswith("...")
    assert one_line(KeyError()) == "KeyError"


def test_sha256_of_matches_hashlib(tmp_path):
    path = tmp_path / "blob.bin"
    data = bytes(range(256)) * 5000  # more than one chunk at chunk=4096
    path.write_bytes(data)
    assert sha256_of(path, chunk=4096) == hashlib.sha256(data).hexdigest()


def test_species_option_is_checked_while_parsing(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "ephys2tx.cli", "synth", "--species", "rat", "--out", tmp_path],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    assert res.stderr.strip() == "error: unknown species 'rat'; choose one of: mouse, human"
    assert not any(tmp_path.iterdir())  # nothing simulated or written


def test_the_import_contracts_are_all_declared():
    """`make test` runs `lint-imports`, which checks the contracts pyproject declares; this
    checks that none of them has been dropped or turned into a weaker kind."""
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert config["root_package"] == "ephys2tx"
    assert sorted(c["type"] for c in config["contracts"]) == ["acyclic_siblings", "layers"]
    contracts = {c["type"]: c for c in config["contracts"]}
    layers = contracts["layers"]
    assert layers["containers"] == ["ephys2tx"] and layers["exhaustive"] is True
    assert contracts["acyclic_siblings"]["ancestors"] == ["ephys2tx"]
