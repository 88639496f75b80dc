"""Fetch: mirror copy, sha256 verification, atomic writes, clear errors."""

import socket
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from ephys2tx.datasets.fetch import data_path, fetch_all, fetch_file
from ephys2tx.datasets.sources import DATA_FILES
from ephys2tx.errors import DataFileMissing, Ephys2txError

SMALL = DATA_FILES["homology/hodge_taxonomy.csv"]


def test_every_pinned_file_is_in_the_mirror_with_its_checksum(tmp_path):
    paths = fetch_all(tmp_path, str(SHARED_DATA))
    assert set(paths) == set(DATA_FILES)
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())


def test_checksum_mismatch_leaves_no_file_and_names_both_hashes(tmp_path):
    wrong = replace(SMALL, sha256="0" * 64)
    with pytest.raises(Ephys2txError) as err:
        fetch_file(wrong, tmp_path, str(SHARED_DATA))
    message = str(err.value)
    assert SMALL.name in message and "0" * 64 in message and SMALL.sha256 in message
    assert list(tmp_path.rglob("*hodge*")) == []


def test_verified_copy_is_reused_and_a_corrupt_one_replaced(tmp_path):
    target = fetch_file(SMALL, tmp_path, str(SHARED_DATA))
    before = target.stat().st_mtime_ns
    assert fetch_file(SMALL, tmp_path, str(SHARED_DATA)).stat().st_mtime_ns == before
    target.write_text("corrupt")
    fetch_file(SMALL, tmp_path, str(SHARED_DATA))
    assert target.read_bytes() == (SHARED_DATA / SMALL.name).read_bytes()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_network_says_how_to_use_the_mirror(tmp_path):
    with pytest.raises(Ephys2txError, match="--mirror"):
        fetch_file(SMALL, tmp_path, f"http://127.0.0.1:{_closed_port()}/data")
    assert not (tmp_path / SMALL.name).exists()


def test_missing_file_without_mirror_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.delenv("EPHYS2TX_MIRROR")
    with pytest.raises(DataFileMissing, match="ephys2tx fetch"):
        data_path(SMALL.name, tmp_path)


def test_mirror_without_the_file(tmp_path):
    with pytest.raises(Ephys2txError, match="mirror has no file"):
        fetch_file(SMALL, tmp_path / "data", str(tmp_path / "empty"))
    assert not Path(tmp_path / "data" / SMALL.name).exists()


def test_mirror_url_over_http(tmp_path):
    """A base URL works as a mirror (served here from the shared folder on loopback)."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(SHARED_DATA))
    handler.log_message = lambda *a, **k: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        path = fetch_file(SMALL, tmp_path, url)
        assert path.read_bytes() == (SHARED_DATA / SMALL.name).read_bytes()
        with pytest.raises(Ephys2txError, match="HTTP 404"):
            fetch_file(replace(SMALL, name="homology/absent.csv"), tmp_path, url)
    finally:
        server.shutdown()
        server.server_close()
