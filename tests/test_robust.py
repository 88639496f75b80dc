"""Bad and awkward inputs of issue 12: each gives the right cells or a one-line error."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import (
    RECORDINGS,
    SHARED_DATA,
    assert_one_line_error,
    run_cli_in_process,
    run_cli_subprocess,
)

from ephys2tx.errors import Ephys2txError

ABF = RECORDINGS / "abf" / "171116sh_0018.abf"


# in this process, through `cli.main`: the same message and status as the installed command
run_cli = run_cli_in_process


def batch(files, out, **kw):
    from ephys2tx.features.batch import run_batch

    return run_batch(files, out, workers=1, processes=False, progress=False, **kw)


# ------------------------------------------------------------------ 1. names from the cache


def test_ids_come_from_the_current_path_never_the_cache(synthetic_nwb, tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    cell_a = data / "cellA.nwb"
    shutil.copy(synthetic_nwb, cell_a)
    first = batch([cell_a], out)
    assert first.cells["specimen_id"].tolist() == ["cellA"]

    cell_b = cell_a.rename(data / "cellB.nwb")  # rename and rerun: served from the cache
    again = batch([cell_b], out)
    assert again.n_cached == 1
    assert again.cells["specimen_id"].tolist() == ["cellB"]
    assert again.cells["file"].tolist() == [str(cell_b)]
    assert again.cells["sha256"].tolist() == first.cells["sha256"].tolist()
    assert len(again.cells["sha256"].iloc[0]) == 64

    # a copy under another name, and a file of the same stem in a subfolder
    shutil.copy(cell_b, data / "cellC.nwb")
    (data / "sub").mkdir()
    shutil.copy(cell_b, data / "sub" / "cellB.nwb")
    files = [cell_b, data / "cellC.nwb", data / "sub" / "cellB.nwb"]
    res = batch(files, out)
    ids = res.cells["specimen_id"].tolist()
    assert ids == ["data_cellB", "cellC", "sub_cellB"]
    assert len(set(ids)) == 3
    assert any("named 'cellB'" in w for w in res.warnings)
    assert any("identical contents" in w for w in res.warnings)
    written = pd.read_parquet(out / "cells.parquet")
    assert written["specimen_id"].tolist() == ids
    with h5py.File(out / "feature_vectors.h5") as h5:
        assert [i.decode() for i in h5["ids"][()]] == ids


def test_cell_ids_fall_back_to_hashes_and_counters():
    from ephys2tx.features.batch import cell_ids

    ids, notes = cell_ids(["a/x.abf", "b/x.abf", "c.abf"], ["1" * 64, "2" * 64, "3" * 64])
    assert ids == ["a_x", "b_x", "c"] and len(notes) == 1
    ids, _ = cell_ids(["a/x.abf", "a/x.nwb"], ["1" * 64, "2" * 64])  # same folder, same stem
    assert ids == ["x_11111111", "x_22222222"]
    ids, notes = cell_ids(["a/x.abf", "a/x.nwb"], ["1" * 64, "1" * 64])
    assert ids == ["x_1", "x_2"] and len(notes) == 2


# ------------------------------------------------------------------ 2. --exclude-ids


def test_headerless_exclusion_list_is_read_whole(tmp_path, human_cells):
    from ephys2tx.commands.common import training_cells

    ids = human_cells["specimen_id"].head(5).tolist()
    listing = tmp_path / "ids.txt"
    listing.write_text("\n".join(map(str, ids)) + "\n")
    cells, _ = training_cells("human", None, listing)
    assert len(cells) == len(human_cells) - 5
    assert not set(ids) & set(cells["specimen_id"])
    # the same ids under a header, in a `specimen_id` column that is not the first
    table = tmp_path / "ids.csv"
    pd.DataFrame({"note": ["x"] * 5, "specimen_id": ids}).to_csv(table, index=False)
    assert len(training_cells("human", None, table)[0]) == len(human_cells) - 5


def test_unknown_malformed_and_empty_exclusion_lists(tmp_path, human_cells):
    from ephys2tx.commands.common import training_cells

    known = int(human_cells["specimen_id"].iloc[0])
    unknown = tmp_path / "unknown.txt"
    unknown.write_text(f"{known}\n123\n")
    with pytest.raises(Ephys2txError, match="1 id.* match no training cell .*--allow-unknown-ids"):
        training_cells("human", None, unknown)
    cells, _ = training_cells("human", None, unknown, allow_unknown_ids=True)
    assert len(cells) == len(human_cells) - 1
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{known}\n12x4\n")
    with pytest.raises(Ephys2txError, match="'12x4' on line 2"):
        training_cells("human", None, bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(Ephys2txError, match="is empty"):
        training_cells("human", None, empty)


def test_one_exclusion_list_for_both_species_of_transfer(tmp_path):
    from ephys2tx.commands.common import exclude_specimens

    human = pd.DataFrame({"specimen_id": [1, 2, 3], "species": "human"})
    mouse = pd.DataFrame({"specimen_id": [10, 20], "species": "mouse"})
    listing = tmp_path / "ids.txt"
    listing.write_text("2\n20\n")
    h, m = exclude_specimens([human, mouse], listing)
    assert h["specimen_id"].tolist() == [1, 3] and m["specimen_id"].tolist() == [10]


def test_cli_empty_exclusion_list_is_one_line(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    res = run_cli(
        "train", "rf", "--species", "human", "--exclude-ids", tmp_path / "empty.csv",
        "--out", tmp_path / "m",
    )  # fmt: skip
    assert_one_line_error(res, "is empty")


# ------------------------------------------------------------------ 3. extract hides failures


@pytest.mark.slow
def test_extract_reads_subfolders_and_fails_when_nothing_extracted(tmp_path):
    data = tmp_path / "data"
    (data / "day2").mkdir(parents=True)
    shutil.copy(ABF, data / "a.abf")
    shutil.copy(RECORDINGS / "abf" / "17o05028_ic_steps.abf", data / "day2" / "b.abf")
    (data / "day2" / "broken.nwb").write_bytes(b"not an nwb file")
    # end to end: the installed command in its own process, with its local Dask worker
    res = run_cli_subprocess("extract", data, "--out", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    assert f"3 recording(s): 1 in {data}, 2 in {data / 'day2'}" in res.stderr
    cells = pd.read_parquet(tmp_path / "out" / "cells.parquet")
    assert cells["specimen_id"].tolist() == ["a", "b"]
    errors = pd.read_csv(tmp_path / "out" / "errors.csv")
    assert errors["file"].tolist() == [str(data / "day2" / "broken.nwb")]

    missing = run_cli("extract", tmp_path / "nope.abf", "--out", tmp_path / "out2")
    assert_one_line_error(missing, "no cell could be extracted")
    errors = pd.read_csv(tmp_path / "out2" / "errors.csv")
    assert errors["file"].tolist() == [str(tmp_path / "nope.abf")]


def test_inspect_lists_recordings_in_subfolders(tmp_path):
    from typer.testing import CliRunner

    from ephys2tx.cli import app

    (tmp_path / "day2").mkdir()
    shutil.copy(ABF, tmp_path / "day2" / "a.abf")
    result = CliRunner().invoke(app, ["inspect", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "day2/a.abf" in result.output and "long_square x17" in result.output


def _other_only_reader(path: Path):
    """A readable cell with no sweep any feature family can use."""
    from ephys2tx.recordings.sweeps import OTHER, Recording, Sweep

    v = np.full(20_000, -70.0) + np.random.default_rng(0).normal(0, 0.1, 20_000)
    return Recording(path, path.stem, [Sweep(0, v, np.zeros_like(v), 20_000.0, OTHER)])


def test_a_cell_with_no_feature_is_an_error_row_not_a_cell(tmp_path):
    path = tmp_path / "flat.abf"
    path.write_bytes(b"stand-in")
    res = batch([path], tmp_path / "out", reader=_other_only_reader)
    assert res.cells.empty
    assert res.errors["file"].tolist() == [str(path)]
    assert res.errors["stage"].tolist() == ["extract"]
    assert "long-square" in res.errors["reason"].iloc[0]


def _altered_copy(source: Path, target: Path, acquisition: str, stimulus: str) -> Path:
    shutil.copy(source, target)
    with h5py.File(target, "a") as f:
        for name in f["acquisition"]:
            f["acquisition"][name].attrs["neurodata_type"] = acquisition
        for name in f["stimulus/presentation"]:
            f["stimulus/presentation"][name].attrs["neurodata_type"] = stimulus
    return target


def test_voltage_clamp_is_reported_as_such_by_inspect_and_extract(synthetic_nwb, tmp_path):
    from ephys2tx.recordings.read import read_recording

    vc = _altered_copy(
        synthetic_nwb, tmp_path / "vc.nwb", "VoltageClampSeries", "VoltageClampStimulusSeries"
    )
    with pytest.raises(Ephys2txError, match="voltage clamp"):
        read_recording(vc)
    assert_one_line_error(run_cli("inspect", vc), "voltage clamp")
    res = batch([vc], tmp_path / "out")
    assert res.cells.empty and "voltage clamp" in res.errors["reason"].iloc[0]


@pytest.mark.slow
def test_uncoded_allen_sweeps_are_classified_from_the_command(
    synthetic_recordings, synthetic_nwb, tmp_path
):
    from ephys2tx.features.extract import extract_features
    from ephys2tx.recordings.allen_nwb import write_allen_nwb
    from ephys2tx.recordings.read import read_recording

    rec = synthetic_recordings[0]
    coded = read_recording(synthetic_nwb)
    uncoded_rec = type(rec)(rec.source, rec.cell_id, [s for s in rec.sweeps], rec.species)
    uncoded_rec.sweeps = [type(s)(**{**s.__dict__, "stimulus_code": None}) for s in rec.sweeps]
    path = write_allen_nwb(tmp_path / "uncoded.nwb", uncoded_rec, "no stimulus codes")
    uncoded = read_recording(path)
    assert [s.stimulus_code for s in uncoded.sweeps] == ["unknown"] * len(rec.sweeps)
    assert [s.stimulus_type for s in uncoded.sweeps] == [s.stimulus_type for s in coded.sweeps]
    assert [s.amplitude for s in uncoded.sweeps] == [s.amplitude for s in coded.sweeps]
    a, b = extract_features(coded), extract_features(uncoded)
    assert a.family_status == b.family_status
    np.testing.assert_allclose(list(a.scalars.values()), list(b.scalars.values()))


# ------------------------------------------------------------------ 4. one-line errors


def test_extract_out_that_is_a_file_or_read_only(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("x")
    assert_one_line_error(run_cli("extract", ABF, "--out", taken), "existing file")
    assert_one_line_error(run_cli("extract", ABF, "--out", taken / "sub"), "cannot write")
    read_only = tmp_path / "ro"
    read_only.mkdir()
    mounted = False
    if os.geteuid() == 0:  # root writes through permissions: use a read-only mount
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs",
                                  str(read_only)], capture_output=True).returncode == 0  # fmt: skip
        if not mounted:
            pytest.skip("running as root without mount: cannot make a read-only folder")
    else:
        read_only.chmod(0o555)
    try:
        assert_one_line_error(run_cli("extract", ABF, "--out", read_only / "out"), "cannot write")
    finally:
        if mounted:
            subprocess.run(["umount", str(read_only)], check=True)
        read_only.chmod(0o755)


def test_memory_limit_that_is_not_a_size(tmp_path):
    res = run_cli("extract", ABF, "--out", tmp_path / "o", "--memory-limit", "lots")
    assert_one_line_error(res, "--memory-limit 'lots'", "2GiB")


@pytest.mark.parametrize(
    "content, words",
    [
        ("specimen_id,tau\n1,0.01\n2,abc\n", ["`tau`", "line 3", "'abc'"]),
        ('specimen_id,tau\n1,"0,01"\n', ["`tau`", "line 2", "decimal point"]),
        ("specimen_id,tau\n1,0.01\n2,inf\n", ["`tau`", "line 3", "finite"]),
        ("specimen_id,rheobase_i\n1,-inf\n", ["`rheobase_i`", "line 2", "finite"]),
        ("specimen_id,tau\n", ["no rows"]),
        ("", ["is empty"]),
        ("specimen_id,tau\n1,0.01\n2,0.02\n1,0.03\n", ["specimen_id 1", "lines 2, 4"]),
        ("specimen_id,tau\n1,0.01\n,0.02\n", ["empty on line 3"]),
        ("specimen_id,tau\n1,1e300\n", ["`tau`", "line 2", "too large"]),
        ("specimen_id;tau\n1;0.01\n", ["no `specimen_id` column", "with commas"]),
    ],
)
def test_malformed_csv_cell_tables(tmp_path, content, words):
    from ephys2tx.datasets.cells import read_cell_table

    path = tmp_path / "cells.csv"
    path.write_text(content)
    with pytest.raises(Ephys2txError) as err:
        read_cell_table(path)
    for word in words:
        assert word in str(err.value)
    assert "\n" not in str(err.value)


def test_cli_predict_on_a_comma_decimal_table_is_one_line(tmp_path):
    from ephys2tx.models.bundle import ModelCard, save_model

    model = tmp_path / "model"  # read before the table; the table's error comes first
    save_model(model, {"stand-in": "estimator"}, ModelCard("rf-raw", "human", "label", [], []))
    table = tmp_path / "cells.csv"
    table.write_text('specimen_id,tau,rheobase_i\n1,0.01,50\n2,"0,02",70\n')
    res = run_cli("predict", model, table, "--out", tmp_path / "p.csv")
    assert_one_line_error(res, "`tau`", "line 3", "'0,02'", "decimal point")


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        ("card_json", ["model.json", "damaged"]),
        ("card_fields", ["older or unknown format", "train it again"]),
        ("pickle", ["model.skops", "cannot be read"]),
    ],
)
def test_cli_predict_with_a_damaged_model_directory_is_one_line(tmp_path, damage, words):
    from ephys2tx.models.bundle import META_FILE, MODEL_FILE, ModelCard, save_model

    model = tmp_path / "model"
    save_model(model, {"stand-in": "estimator"}, ModelCard("rf-raw", "human", "label", [], []))
    if damage == "card_json":
        (model / META_FILE).write_text("{oops")
    elif damage == "card_fields":
        (model / META_FILE).write_text(json.dumps({"colour": "blue"}))
    else:
        (model / MODEL_FILE).write_bytes((model / MODEL_FILE).read_bytes()[:20])
    table = tmp_path / "cells.csv"
    table.write_text("specimen_id,tau,rheobase_i\n1,0.01,50\n")
    res = run_cli("predict", model, table, "--out", tmp_path / "p.csv")
    assert_one_line_error(res, *words)


def test_corrupt_parquet_and_missing_values_stay_nan(tmp_path):
    from ephys2tx.datasets.cells import read_cell_table

    good = tmp_path / "good.parquet"
    pd.DataFrame({"specimen_id": [1, 2], "tau": [0.01, np.nan]}).to_parquet(good)
    table = read_cell_table(good)
    assert np.isnan(table["tau"].iloc[1])
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(Ephys2txError, match="damaged"):
        read_cell_table(corrupt)
    csv = tmp_path / "ok.csv"
    csv.write_text("specimen_id,tau\n1,0.01\n2,\n")
    assert read_cell_table(csv)["tau"].isna().tolist() == [False, True]


def test_train_refuses_a_file_or_a_model_before_training(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("x")
    res = run_cli("train", "rf", "--species", "human", "--out", taken)
    assert_one_line_error(res, "existing file")
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text(json.dumps({"kind": "rf"}))
    res = run_cli("train", "bilstm", "--species", "human", "--out", model)
    assert_one_line_error(res, "already holds a model", "--overwrite")
    assert (model / "model.json").read_text() == json.dumps({"kind": "rf"})


def test_check_out_dir_accepts_overwrite_and_new_folders(tmp_path):
    from ephys2tx.commands.common import check_out_dir

    model = tmp_path / "model"
    model.mkdir()
    (model / "model.skops").write_bytes(b"")
    with pytest.raises(Ephys2txError, match="--overwrite"):
        check_out_dir(model)
    check_out_dir(model, overwrite=True)
    check_out_dir(tmp_path / "new" / "deeper")


# ------------------------------------------------------------------ 5. full disk


def test_a_failed_write_leaves_the_previous_output_set(synthetic_nwb, tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = batch([synthetic_nwb], out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert set(before) == {"cells.parquet", "feature_vectors.h5", "errors.csv"}

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)  # errors.csv is written last
    renamed = tmp_path / "renamed.nwb"
    shutil.copy(synthetic_nwb, renamed)
    with pytest.raises(Ephys2txError, match="no space left") as err:
        batch([renamed], out)
    assert "nothing was written" in str(err.value)
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before  # the old set, whole: no new cells.parquet beside an old errors.csv
    assert sorted(p.name for p in out.iterdir()) == ["cache", *sorted(before)]
    assert first.cells["specimen_id"].tolist() == ["cellA"]


def test_full_disk_gives_one_line_and_no_outputs(tmp_path):
    """A real 100 KB tmpfs as --out (root only; the outputs take ~130 KB, the cache ~65 KB):
    exit 2, one line, no half-written set."""
    full = tmp_path / "full"
    full.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = ["mount", "-t", "tmpfs", "-o", "size=100k", "tmpfs", str(full)]
    if subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        files = [
            RECORDINGS / "abf" / name for name in ("171116sh_0019.abf", "2019_07_24_0055_fsi.abf")
        ]
        res = run_cli("extract", *files, "--out", full / "out")
        assert_one_line_error(res, "no space left")
        leftovers = {p.name for p in (full / "out").iterdir()}
        assert leftovers <= {"cache"}, leftovers
    finally:
        subprocess.run(["umount", str(full)], check=True)


# ------------------------------------------------------------------ 6. altered data file


def test_a_data_file_changed_after_fetch_is_refused_then_repaired(tmp_path):
    from ephys2tx.datasets.fetch import data_path, fetch_file
    from ephys2tx.datasets.sources import DATA_FILES

    entry = DATA_FILES["homology/hodge_taxonomy.csv"]
    target = fetch_file(entry, tmp_path, str(SHARED_DATA))
    assert data_path(entry.name, tmp_path) == target
    text = target.read_bytes()
    k = text.index(b"1")
    target.write_bytes(text[:k] + b"2" + text[k + 1 :])  # same size, one digit changed
    with pytest.raises(Ephys2txError) as err:
        data_path(entry.name, tmp_path)
    assert "hodge_taxonomy.csv" in str(err.value) and "ephys2tx fetch" in str(err.value)
    res = run_cli("fetch", "--data-dir", tmp_path)
    assert res.returncode == 0, res.stderr
    assert "hodge_taxonomy.csv (the local copy had been changed" in " ".join(res.stderr.split())
    assert data_path(entry.name, tmp_path).read_bytes() == text


def test_in_process_workers_have_no_memory_limit_to_pause_on():
    """An in-process worker's monitor measures the whole host process: with a limit it
    paused once the test session passed 80% of it, and the batch waited forever."""
    from ephys2tx.features.batch import dask_client

    client, cluster = dask_client(1, None, "2GiB", processes=False)
    try:
        limits = [w.memory_manager.memory_limit for w in cluster.workers.values()]
        assert limits and all(not limit for limit in limits)
    finally:
        client.close()
        cluster.close()


# ------------------------------------------------------------------ 7. probed as a new user


def test_usage_errors_are_one_line_with_the_help_command():
    res = run_cli("inspect", "--bogus", ABF)
    assert_one_line_error(res, "No such option: --bogus", "`ephys2tx inspect --help`")
    res = run_cli("predict", "--alpha", "abc", "model")
    assert_one_line_error(res, "'--alpha'", "`ephys2tx predict --help`")
    assert_one_line_error(run_cli("cells"), "Missing argument", "`ephys2tx cells --help`")


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    from ephys2tx import cli
    from ephys2tx.recordings import read

    def broken(path):
        raise RuntimeError("boom")

    monkeypatch.setattr(read, "read_recording", broken)
    monkeypatch.setenv(cli.DEBUG_ENV, "")  # restored after the test: --debug sets it
    monkeypatch.setattr(sys, "argv", ["ephys2tx", "inspect", str(ABF)])
    with pytest.raises(SystemExit) as stop:
        cli.main()
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: unexpected RuntimeError: boom")
    assert "--debug" in err
    monkeypatch.setattr(sys, "argv", ["ephys2tx", "--debug", "inspect", str(ABF)])
    with pytest.raises(RuntimeError, match="boom"):
        cli.main()


@pytest.mark.parametrize("where", ["folder", "pipe", "under_a_file"])
def test_output_files_that_cannot_be_written_are_refused_first(tmp_path, where):
    plain = tmp_path / "plain.csv"
    plain.write_text("x")
    out = {"folder": tmp_path, "pipe": tmp_path / "pipe.csv", "under_a_file": plain / "p.csv"}
    if where == "pipe":
        os.mkfifo(out["pipe"])  # not a regular file: an atomic rename would replace it
    words = {"folder": "is a folder", "pipe": "not a regular file", "under_a_file": "is a file"}
    # checked before the model or the cells are read: neither exists here
    res = run_cli("predict", tmp_path / "no-model", tmp_path / "no.csv", "--out", out[where])
    assert_one_line_error(res, "--out", words[where])
    res = run_cli("predict", tmp_path / "m", tmp_path / "c.csv", "--report", out[where])
    assert_one_line_error(res, "--report", words[where])
    if where == "folder":  # a folder named like a table
        (tmp_path / "d.csv").mkdir()
        out["folder"] = tmp_path / "d.csv"
    res = run_cli("cells", "human", "--out", out[where])
    assert_one_line_error(res, "--out", words[where])
    assert plain.read_text() == "x"


def test_cells_out_and_data_dir_are_checked_before_any_work(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("x")
    assert_one_line_error(run_cli("cells", "human", "--out", tmp_path / "c.txt"), ".parquet")
    res = run_cli("cells", "human", "--data-dir", plain)
    assert_one_line_error(res, "data directory", "is a file, not a folder")
    res = run_cli("fetch", "--data-dir", plain / "sub", "--mirror", SHARED_DATA)
    assert_one_line_error(res, "data directory", "is a file, not a folder")


def test_the_same_cell_in_two_inputs_is_an_error(tmp_path):
    from ephys2tx.predictor import read_cells

    path = tmp_path / "cells.csv"
    path.write_text("specimen_id,tau\n1,0.01\n2,0.02\n")
    assert len(read_cells([path], tmp_path / "f")) == 2
    with pytest.raises(Ephys2txError, match="specimen_id 1 appears"):
        read_cells([path, path], tmp_path / "f")


@pytest.mark.parametrize(
    "args, words",
    [
        (["--seed", "-1"], ["--seed -1", "0 to 4294967295"]),
        (["--seed", str(2**32)], ["out of range"]),
        (["--jobs", "0"], ["--jobs 0"]),
    ],
)
def test_synth_options_out_of_range(tmp_path, args, words):
    res = run_cli("synth", "--species", "human", "--n-per-class", "1", "--out", tmp_path, *args)
    assert_one_line_error(res, *words)
    assert not (tmp_path / "cohort.csv").exists()


def test_synth_out_that_is_a_file(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("x")
    res = run_cli("synth", "--species", "human", "--n-per-class", "1", "--out", plain)
    assert_one_line_error(res, "--out", "is a file, not a folder")


def test_a_synthetic_nwb_that_does_not_fit_is_refused_whole(synthetic_nwb, tmp_path, monkeypatch):
    import shutil as shell

    from ephys2tx.recordings import allen_nwb
    from ephys2tx.recordings.read import read_recording

    recording = read_recording(synthetic_nwb)
    usage = shell.disk_usage(tmp_path)
    monkeypatch.setattr(allen_nwb.shutil, "disk_usage", lambda p: usage._replace(free=10_000))
    with pytest.raises(Ephys2txError, match="MB needed"):
        allen_nwb.write_allen_nwb(tmp_path / "c.nwb", recording, "test")
    assert list(tmp_path.iterdir()) == []


def test_extract_workers_beyond_the_cores(tmp_path):
    res = run_cli("extract", ABF, "--out", tmp_path / "o", "--workers", (os.cpu_count() or 1) + 1)
    assert_one_line_error(res, "CPU core", "--workers")


def test_an_nwb_whose_sweep_data_is_missing_is_one_line(tmp_path):
    from ephys2tx.recordings.read import read_recording

    damaged = tmp_path / "cell.nwb"
    shutil.copy(RECORDINGS / "nwb" / "99111002.nwb", damaged)
    with h5py.File(damaged, "a") as h5:
        del h5["acquisition"]
    with pytest.raises(Ephys2txError, match="cannot read its sweeps") as err:
        read_recording(damaged)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "command", [["embed", "human"], ["evaluate", "rf", "--species", "human"],
                ["evaluate", "bilstm", "--species", "human"]],
)  # fmt: skip
def test_out_folders_that_are_files_are_refused_while_parsing(tmp_path, command):
    plain = tmp_path / "plain"
    plain.write_text("x")
    assert_one_line_error(run_cli(*command, "--out", plain), "--out", "is a file, not a folder")


def test_a_features_dir_that_is_a_file_is_named_as_such(tmp_path):
    from ephys2tx.predictor import read_cells

    plain = tmp_path / "plain"
    plain.write_text("x")
    with pytest.raises(Ephys2txError, match="--features-dir"):
        read_cells([ABF], plain)


def test_read_only_files_and_folders_are_not_replaced(tmp_path):
    """An atomic rename ignores a file's own permissions (and root ignores a folder's): the
    read-only marks are honoured, so a shared data mirror is never written into."""
    table = tmp_path / "t.csv"
    table.write_text("specimen_id,tau\n1,0.01\n")
    table.chmod(0o444)
    res = run_cli("cells", "human", "--out", table)
    assert_one_line_error(res, "--out", "read-only file")
    assert table.read_text() == "specimen_id,tau\n1,0.01\n"
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    mirror.chmod(0o555)
    try:
        res = run_cli("cells", "human", "--out", mirror / "sub" / "c.csv")
        assert_one_line_error(res, "marked read-only")
        res = run_cli("extract", ABF, "--out", mirror / "out")
        assert_one_line_error(res, "marked read-only")
        assert list(mirror.iterdir()) == []
    finally:
        mirror.chmod(0o755)


def test_predict_refuses_to_write_over_its_input(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("specimen_id,tau\n1,0.01\n")
    res = run_cli("predict", tmp_path / "m", table, "--out", table)
    assert_one_line_error(res, "is one of the inputs")
    assert table.read_text() == "specimen_id,tau\n1,0.01\n"


def test_a_pipe_given_as_a_recording_is_an_error_not_a_hang(tmp_path):
    from ephys2tx.datasets.cells import read_cell_table
    from ephys2tx.features.batch import process_file
    from ephys2tx.recordings.read import read_recording

    pipe = tmp_path / "cell.abf"
    os.mkfifo(pipe)  # reading (or hashing) it would wait for a writer forever
    with pytest.raises(Ephys2txError, match="not a regular file"):
        read_recording(pipe)
    assert "not a regular file" in process_file(pipe, tmp_path / "cache")["error"][1]
    table = tmp_path / "cells.csv"
    os.mkfifo(table)
    with pytest.raises(Ephys2txError, match="not a regular file"):
        read_cell_table(table)


def test_fetch_nwb_out_is_checked_before_the_network(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("x")
    res = run_cli("fetch-nwb", "--dandiset", "000020", "--out", plain, "--limit", "1")
    assert_one_line_error(res, "--out", "is a file, not a folder")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--out", "{file}"], ["--out", "is a file"]),
        (["--out", "{tmp}/r", "--update-readme", "{tmp}"], ["--update-readme", "is a folder"]),
        (["--out", "{tmp}/r", "--jobs", "0"], ["--jobs 0"]),
    ],
)
def test_reproduce_checks_its_outputs_and_jobs_before_any_step(tmp_path, args, words):
    afile = tmp_path / "afile"
    afile.write_text("")
    args = [a.format(file=afile, tmp=tmp_path) for a in args]
    res = run_cli("reproduce", "--quick", *args)
    assert_one_line_error(res, *words)
    assert not (tmp_path / "r" / "steps").exists()  # refused before the data step
