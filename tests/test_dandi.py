"""DANDI asset listing (fake client) and resumable, verified download (loopback HTTP server)."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import requests

from ephys2tx.datasets import dandi
from ephys2tx.errors import Ephys2txError

PAYLOAD = np.random.default_rng(0).bytes(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at any path; honours `Range: bytes=N-` unless the server says not to."""

    def do_GET(self):  # noqa: N802 - http.server's naming
        server = self.server
        server.requests.append(self.headers.get("Range"))
        body, status = server.payload, 200
        spec = self.headers.get("Range")
        if spec and server.honour_range:
            start = int(spec.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            body, status = body[start:], 206
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            total = len(server.payload)
            self.send_header("Content-Range", f"bytes {total - len(body)}-{total - 1}/{total}")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.payload, httpd.requests, httpd.honour_range = PAYLOAD, [], True
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}/asset.nwb"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def test_download_verifies_and_renames(server, tmp_path):
    _, url = server
    seen = []
    target = dandi.download(url, tmp_path / "a.nwb", SHA, size=len(PAYLOAD), on_bytes=seen.append)
    assert target.read_bytes() == PAYLOAD
    assert not dandi.part_path(target).exists()
    assert sum(seen) == len(PAYLOAD)


def test_resume_from_partial_file(server, tmp_path):
    httpd, url = server
    target = tmp_path / "a.nwb"
    dandi.part_path(target).write_bytes(PAYLOAD[:120_000])
    dandi.download(url, target, SHA, size=len(PAYLOAD), timeout=5)
    assert httpd.requests == ["bytes=120000-"]
    assert target.read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    httpd, url = server
    httpd.honour_range = False
    target = tmp_path / "a.nwb"
    dandi.part_path(target).write_bytes(PAYLOAD[:5000])
    dandi.download(url, target, SHA, timeout=5)
    assert target.read_bytes() == PAYLOAD  # not the 5000 bytes twice


def test_complete_partial_file_gets_416_and_is_kept(server, tmp_path):
    httpd, url = server
    target = tmp_path / "a.nwb"
    dandi.part_path(target).write_bytes(PAYLOAD)
    dandi.download(url, target, SHA, timeout=5)
    assert httpd.requests == [f"bytes={len(PAYLOAD)}-"]
    assert target.read_bytes() == PAYLOAD


def test_checksum_mismatch_leaves_no_file(server, tmp_path):
    _, url = server
    target = tmp_path / "a.nwb"
    with pytest.raises(Ephys2txError, match="checksum mismatch for a.nwb.*deleted"):
        dandi.download(url, target, "0" * 64, timeout=5)
    assert not target.exists()
    assert not dandi.part_path(target).exists()


def test_complete_file_is_not_downloaded_again(server, tmp_path):
    httpd, url = server
    target = tmp_path / "a.nwb"
    target.write_bytes(PAYLOAD)
    dandi.download(url, target, SHA, size=len(PAYLOAD), timeout=5)
    assert httpd.requests == []


def test_unreachable_network_is_one_line(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(Ephys2txError, match="network unreachable") as err:
        dandi.download(f"http://127.0.0.1:{port}/x.nwb", tmp_path / "x.nwb", SHA, timeout=2)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "x.nwb").exists()


# ---------------------------------------------------------------- listing


class _FakeAsset:
    def __init__(self, path, url, sha):
        self.path, self.size, self.base_download_url, self._sha = path, len(PAYLOAD), url, sha

    def get_raw_metadata(self):
        return {"digest": {"dandi:dandi-etag": "x-1", "dandi:sha2-256": self._sha}}


class _FakeClient:
    def __init__(self, assets, error=None):
        self.assets, self.error, self.calls = assets, error, []

    def get_dandiset(self, dandiset_id, version=None):
        self.calls.append((dandiset_id, version))
        if self.error:
            raise self.error
        return self

    def get_assets(self):
        yield from self.assets


def _assets(url, n=3):
    return [
        _FakeAsset("dataset_description.json", url, "f" * 64),
        *[_FakeAsset(f"sub-{k}/sub-{k}_ses-{k}_icephys.nwb", url, SHA) for k in range(n)],
    ]


def test_list_assets_keeps_nwb_and_limit():
    client = _FakeClient(_assets("http://example/x"))
    assets = dandi.list_assets("20", limit=2, client=client)
    assert client.calls == [("000020", None)]
    assert [a.path for a in assets] == [
        "sub-0/sub-0_ses-0_icephys.nwb",
        "sub-1/sub-1_ses-1_icephys.nwb",
    ]
    assert all(a.sha256 == SHA and a.size == len(PAYLOAD) for a in assets)


def test_list_assets_errors():
    with pytest.raises(Ephys2txError, match="unknown dandiset 000999"):
        dandi.list_assets("000999", client=_FakeClient([]))
    with pytest.raises(Ephys2txError, match="--limit must be at least 1"):
        dandi.list_assets("000636", limit=0, client=_FakeClient([]))
    offline = _FakeClient([], error=requests.exceptions.ConnectionError("no route"))
    with pytest.raises(Ephys2txError, match="network unreachable.*000636"):
        dandi.list_assets("000636", client=offline)


def test_fetch_assets_downloads_then_skips(server, tmp_path):
    httpd, url = server
    assets = dandi.list_assets("000636", limit=2, client=_FakeClient(_assets(url)))
    started = []
    paths = dandi.fetch_assets(assets, tmp_path, on_start=lambda a, done: started.append(done))
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [a.path for a in assets]
    assert all(p.read_bytes() == PAYLOAD for p in paths)
    assert started == [False, False] and len(httpd.requests) == 2
    dandi.fetch_assets(assets, tmp_path, on_start=lambda a, done: started.append(done))
    assert started[2:] == [True, True] and len(httpd.requests) == 2  # nothing fetched again


def test_fetch_refuses_paths_outside_out_dir(tmp_path):
    evil = dandi.DandiAsset("../../etc/x.nwb", 1, None, "http://127.0.0.1:9/x")
    with pytest.raises(Ephys2txError, match="leaves"):
        dandi.fetch_assets([evil], tmp_path / "out")


def test_cli_fetch_nwb(server, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from ephys2tx.cli import app

    _, url = server
    real = dandi.list_assets
    monkeypatch.setattr(
        dandi, "list_assets", lambda d, **kw: real(d, client=_FakeClient(_assets(url)), **kw)
    )
    out = tmp_path / "nwb"
    args = ["fetch-nwb", "--dandiset", "000020", "--limit", "1", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "sub-0" / "sub-0_ses-0_icephys.nwb").read_bytes() == PAYLOAD
    assert "1 NWB files" in result.output and "0 already complete" in result.output
    again = CliRunner().invoke(app, args)
    assert "1 already complete" in again.output
    assert Path(out).is_dir()
