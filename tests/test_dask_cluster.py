"""`extract --scheduler` on a real Dask cluster of separate processes, losing a worker mid-batch.

The test starts `dask scheduler` and two `dask worker` processes on the loopback interface,
extracts 18 small synthetic NWB files (6 copies of each of 3 cells) through the CLI, SIGKILLs
one worker once the first results are in, and checks that every file is in the output exactly
once, with the features a one-worker run measures on the cell it is a copy of.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

DASK = Path(sys.executable).parent / "dask"
N_COPIES = 6  # of each of the three synthetic cells: 18 files


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(procs: list[subprocess.Popen]) -> None:
    """Workers first, then the scheduler; whatever lingers past 3 s is killed."""
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
    for p in reversed(procs):
        try:
            p.wait(timeout=3)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture
def cluster(tmp_path):
    """A scheduler and two single-threaded workers (no nanny: a SIGKILL loses the worker)."""
    from distributed import Client

    # Workers get a plain environment: no MALLOC_TRIM_THRESHOLD_ (README, "Scaling extraction").
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> subprocess.Popen:
        log = open(logs / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([str(DASK), *args], env=env, stdout=log, stderr=log)
        procs.append(proc)
        return proc

    try:
        start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port),
              "--no-dashboard")  # fmt: skip
        workers = [
            start(
                f"worker{i}",
                "worker",
                address,
                "--name",
                f"w{i}",
                "--nthreads",
                "1",
                "--no-nanny",
                "--host",
                "127.0.0.1",
                "--no-dashboard",
                "--memory-limit",
                "2GiB",
            )  # fmt: skip
            for i in range(2)
        ]
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
            assert list(client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_").values()) == [
                None,
                None,
            ]
        yield address, workers
    finally:
        _stop(procs)


@pytest.fixture
def copied_cells(synthetic_recordings, tmp_path):
    """N_COPIES small synthetic NWB files per cell, each with its own NWB identifier (so
    contents, and cache keys, differ); also the one file each copy was made from."""
    import h5py

    from ephys2tx.recordings.allen_nwb import write_allen_nwb

    folder = tmp_path / "cells"
    folder.mkdir()
    files, originals = [], []
    for rec in synthetic_recordings:
        first = write_allen_nwb(tmp_path / f"{rec.cell_id}.nwb", rec, "SYNTHETIC test cell")
        originals.append(first)
        for k in range(N_COPIES):
            target = folder / f"{rec.cell_id}_{k:02d}.nwb"
            shutil.copy(first, target)
            with h5py.File(target, "a") as h5:
                h5["identifier"][()] = target.stem
            files.append(target)
    return folder, files, originals


@pytest.mark.slow
def test_extract_survives_a_killed_worker(cluster, copied_cells, tmp_path):
    from ephys2tx.features.batch import run_batch

    address, workers = cluster
    folder, files, originals = copied_cells
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ephys2tx.cli", "extract", str(folder), "--scheduler", address,
           "--out", str(out)]  # fmt: skip

    extract = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(list((out / "cache").glob("*.json"))) < 2:  # the first results are in
            assert extract.poll() is None, extract.communicate()
            assert time.monotonic() < deadline, "no result within 120 s"
            time.sleep(0.05)
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(timeout=10)
        done_at_kill = len(list((out / "cache").glob("*.json")))
        stdout, stderr = extract.communicate(timeout=180)
    finally:
        if extract.poll() is None:
            extract.kill()
    assert done_at_kill < len(files), "the batch ended before the worker was killed"
    assert extract.returncode == 0, stderr
    assert f"{len(files)} cells" in " ".join(stderr.split()), stderr

    cells = pd.read_parquet(out / "cells.parquet")
    errors = pd.read_csv(out / "errors.csv")
    assert errors.empty, errors
    assert sorted(cells["file"]) == sorted(map(str, files))  # every file, exactly once
    assert cells["specimen_id"].is_unique and cells["sha256"].is_unique

    # a copy differs from its cell only in the NWB identifier: same features, same status
    one = run_batch(originals, tmp_path / "one", workers=1, processes=False, progress=False)
    measured = [c for c in one.cells.columns if c not in ("specimen_id", "file", "sha256")]
    expected = one.cells.set_index(one.cells["file"].map(lambda f: Path(f).stem))[measured]
    copy_of = cells["file"].map(lambda f: Path(f).stem.rsplit("_", 1)[0])
    pd.testing.assert_frame_equal(
        cells[measured].reset_index(drop=True),
        expected.loc[copy_of].reset_index(drop=True),
    )
