"""Reader fuzzing: damaged copies of the real ABF and NWB files give a one-line error
(`inspect`) or a row of errors.csv (`extract`), never another exception, a hang or a crash.

A small fixed-seed budget here; `benchmarks/bench_fuzz.py --examples 10000` runs more. Each
file is read in a guarded worker process (`tests/properties/fuzz.py`), so a hang or a crash
fails the test instead of stopping the run."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from conftest import RECORDINGS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from properties.fuzz import MUTATIONS, GuardedReader, damaged_file, mutate
from typer.testing import CliRunner

from ephys2tx.cli import app
from ephys2tx.errors import Ephys2txError
from ephys2tx.features.batch import collect, process_file

ABFS = sorted((RECORDINGS / "abf").glob("*.abf"))
NWB = RECORDINGS / "nwb" / "99111002.nwb"
FUZZ = settings(
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def reader():
    guarded = GuardedReader(timeout=90)
    yield guarded
    guarded.close()


def _check(reader, tmp_path_factory, source, kind, seed) -> None:
    data = mutate(source.read_bytes(), kind, np.random.default_rng(seed), source.suffix)
    path = damaged_file(tmp_path_factory.mktemp("fuzz"), data, source.suffix)
    outcome = reader.read(path)
    assert not outcome.failed, f"{source.name} {kind} seed {seed}: {outcome}"


@settings(FUZZ, max_examples=24)
@given(source=st.sampled_from(ABFS), kind=st.sampled_from(MUTATIONS), seed=st.integers(0, 2**32))
def test_damaged_abf_files_give_one_line_errors(reader, tmp_path_factory, source, kind, seed):
    _check(reader, tmp_path_factory, source, kind, seed)


@settings(FUZZ, max_examples=3)
@given(kind=st.sampled_from(MUTATIONS), seed=st.integers(0, 2**32))
def test_damaged_nwb_files_give_one_line_errors(reader, tmp_path_factory, kind, seed):
    _check(reader, tmp_path_factory, NWB, kind, seed)


@pytest.mark.slow
@settings(FUZZ, max_examples=15)
@given(kind=st.sampled_from(MUTATIONS), seed=st.integers(0, 2**32))
def test_more_damaged_nwb_files(reader, tmp_path_factory, kind, seed):
    _check(reader, tmp_path_factory, NWB, kind, seed)


def test_an_abf_section_count_past_the_end_is_refused_at_once(reader, tmp_path):
    """Found by fuzzing: pyabf looped over a damaged entry count for hours."""
    data = bytearray(ABFS[0].read_bytes())
    struct.pack_into("<i", data, 108 + 8, 2**31 - 1)  # the DAC section's entry count
    path = tmp_path / "dac.abf"
    path.write_bytes(bytes(data))
    outcome = reader.read(path)
    assert outcome.kind == "error" and "DAC section lies beyond the end" in outcome.detail


def test_an_abf_epoch_longer_than_its_sweep_is_refused_at_once(reader, tmp_path):
    """Found by fuzzing: pyabf built a 2**30-point epoch array (gigabytes, minutes)."""
    data = bytearray(ABFS[0].read_bytes())
    block = struct.unpack_from("<I", data, 156)[0]  # the epoch-per-DAC section
    struct.pack_into("<i", data, block * 512 + 14, 2**30)  # first epoch's duration
    path = tmp_path / "epoch.abf"
    path.write_bytes(bytes(data))
    outcome = reader.read(path)
    assert outcome.kind == "error" and "ABF protocol is damaged" in outcome.detail


def test_an_hdf5_file_that_hangs_the_library_is_refused(tmp_path):
    """Found by fuzzing: with 313 bytes of its metadata zeroed, reading an attribute of the
    NWB file never returned; the structure walk in a child process stops it."""
    from ephys2tx.recordings.hdf5_check import check_hdf5_walks

    data = bytearray(NWB.read_bytes())
    data[7432:7745] = bytes(313)
    path = tmp_path / "zeroed.nwb"
    path.write_bytes(bytes(data))
    with pytest.raises(Ephys2txError, match="did not finish in 5 s: the file is damaged"):
        check_hdf5_walks(path, seconds=5)
    check_hdf5_walks(NWB, seconds=60)  # the intact file walks


def test_inspect_and_extract_report_a_damaged_file_in_one_line(tmp_path):
    data = mutate(ABFS[1].read_bytes(), "truncate", np.random.default_rng(3), ".abf")
    path = tmp_path / "cut.abf"
    path.write_bytes(data[:600])
    result = CliRunner().invoke(app, ["inspect", str(path)])
    # `ephys2tx` (cli.main) prints a user error as "error: " + its one line and exits 2
    assert isinstance(result.exception, Ephys2txError)
    assert "\n" not in str(result.exception) and "header is damaged" in str(result.exception)
    _, _, errors = collect([process_file(path, tmp_path / "cache")])
    assert errors["stage"].tolist() == ["read"] and "\n" not in errors["reason"][0]
