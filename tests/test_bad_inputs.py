"""Issue 21 item 8: smaller bad inputs (a dangling link, an ABF named .nwb, formula-like ids,
the accepted table formats, the Dask port), each a one-line error or a safe output."""

from __future__ import annotations

import shutil
import socket
import warnings

import pandas as pd
import pytest
from conftest import RECORDINGS

from ephys2tx.datasets.cells import read_cell_table
from ephys2tx.errors import Ephys2txError
from ephys2tx.features.batch import collect, process_file, write_outputs
from ephys2tx.recordings.read import expand_recordings, read_recording

ABF = RECORDINGS / "abf" / "171116sh_0018.abf"


def test_a_dangling_link_in_a_folder_is_a_row_of_errors_csv(tmp_path):
    folder = tmp_path / "recs"
    folder.mkdir()
    (folder / "gone.abf").symlink_to(tmp_path / "moved-away.abf")
    files, found = expand_recordings([folder])
    assert [f.name for f in files] == ["gone.abf"], found
    result = process_file(files[0], tmp_path / "cache")
    _, _, errors = collect([result])
    assert errors["file"].tolist() == [str(folder / "gone.abf")]
    assert "broken symbolic link to" in errors["reason"][0]
    assert "moved-away.abf" in errors["reason"][0]
    with pytest.raises(Ephys2txError, match="broken symbolic link"):
        read_recording(folder / "gone.abf")


def test_an_abf_saved_as_nwb_is_read_by_its_content(tmp_path):
    renamed = tmp_path / "cell.nwb"
    shutil.copy(ABF, renamed)
    rec = read_recording(renamed)
    assert rec.metadata["format"].startswith("ABF") and len(rec.sweeps) == 17


@pytest.mark.parametrize("cell_id", ["=1+2", "+SUM(A1)", "-2+3", "@cmd", "\tx", "=HYPERLINK(1)"])
def test_formula_like_text_is_neutralized_in_errors_csv(tmp_path, cell_id):
    missing = tmp_path / f"{cell_id}.abf"
    result = process_file(missing, tmp_path / "cache")
    cells, fv, errors = collect([result])
    # the file column holds the path; a name that itself starts the cell must be neutral
    errors["file"] = [cell_id + ".abf"]
    write_outputs(tmp_path / "out", cells, fv, errors)
    written = pd.read_csv(tmp_path / "out" / "errors.csv", keep_default_na=False)
    assert written["file"][0] == "'" + cell_id + ".abf"
    assert not written["reason"][0].startswith(("=", "+", "-", "@"))


def test_negative_numbers_are_not_text_and_stay(tmp_path):
    from ephys2tx.files import csv_safe

    table = pd.DataFrame({"specimen_id": [-5, 7], "name": ["-5", "ok"], "x": [-1.5, 2.0]})
    safe = csv_safe(table)
    assert safe["specimen_id"].tolist() == [-5, 7] and safe["x"].tolist() == [-1.5, 2.0]
    assert safe["name"].tolist() == ["'-5", "ok"]  # text: a spreadsheet would compute it


def test_the_table_format_error_names_every_accepted_suffix(tmp_path):
    path = tmp_path / "cells.txt"
    path.write_text("specimen_id,tau\n1,0.01\n")
    with pytest.raises(Ephys2txError) as err:
        read_cell_table(path)
    assert ".parquet" in str(err.value) and ".csv" in str(err.value)
    assert ".tsv" in str(err.value)
    tsv = tmp_path / "cells.tsv"
    tsv.write_text("specimen_id\ttau\n1\t0.01\n")
    assert read_cell_table(tsv)["tau"].tolist() == [0.01]


def test_ids_are_read_as_written(tmp_path):
    path = tmp_path / "cells.csv"
    path.write_text("specimen_id,tau\n007,0.01\n1e3,0.02\n12,0.03\n")
    assert read_cell_table(path)["specimen_id"].tolist() == ["007", "1e3", "12"]


def test_extract_serves_no_dashboard_port_unless_asked():
    from ephys2tx.features.batch import dask_client

    holder = socket.socket()
    try:  # hold 8787 as an overlapping run would (if another process holds it, the same)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("0.0.0.0", 8787))
        holder.listen()
    except OSError:
        pass
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            client, cluster = dask_client(1, processes=False)
            ports = [s.getsockname()[1] for s in cluster.scheduler.http_server._sockets.values()]
            client.close()
            cluster.close()
    finally:
        holder.close()
    assert not [w for w in seen if "already in use" in str(w.message)]
    assert 8787 not in ports
