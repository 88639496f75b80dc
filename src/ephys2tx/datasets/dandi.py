"""Patch-seq NWB files from the DANDI archive: list assets, download with resume + sha256.

Listing goes through the official `dandi` client; the download itself only needs a URL
and the expected sha256, so it can be tested against a local HTTP server. A download is
written to `<name>.part`, resumed with an HTTP Range request, verified, and only then
renamed to its final name, so a final file is always complete and verified.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import Ephys2txError, import_extra, one_line
from ..files import CHUNK, sha256_of

DANDISETS = {
    "000020": "mouse visual cortex Patch-seq (Gouwens et al. 2020)",
    "000636": "human neocortex Patch-seq GABAergic interneurons (Lee et al. 2023)",
}
SHA256_KEY = "dandi:sha2-256"
DANDI_API_HOST = "api.dandiarchive.org"
NETWORK_HINT = "check the internet connection (or proxy settings) and run the command again"


@dataclass(frozen=True)
class DandiAsset:
    """One file of a dandiset: its path there, size in bytes, sha256 and download URL."""

    path: str
    size: int | None
    sha256: str | None
    url: str


class _QuietLogger:
    """Silence a library logger for a while (restores its level afterwards)."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)
        self.level = self.logger.level

    def __enter__(self) -> None:
        self.logger.setLevel(logging.CRITICAL + 1)

    def __exit__(self, *exc: object) -> None:
        self.logger.setLevel(self.level)


def _check_id(dandiset_id: str) -> str:
    dandiset_id = str(dandiset_id).strip().zfill(6)
    if dandiset_id not in DANDISETS:
        known = ", ".join(f"{k} ({v})" for k, v in DANDISETS.items())
        raise Ephys2txError(f"unknown dandiset {dandiset_id}; choose one of {known}")
    return dandiset_id


def _network_error(exc: BaseException) -> bool:
    import requests

    return isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout)


def _probe(host: str, port: int = 443, timeout: float = 5.0) -> None:
    """Raise a one-line error when `host` cannot be reached (DNS or TCP).

    Skipped behind a proxy, where direct connections may be blocked but requests work.
    """
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise Ephys2txError(
            f"network unreachable: cannot connect to {host} ({exc.strerror or exc}); {NETWORK_HINT}"
        ) from exc


def _collect(dandiset_id, version, suffix, limit, client) -> list[DandiAsset]:
    dandiset = client.get_dandiset(dandiset_id, version)
    assets = []
    for asset in dandiset.get_assets():
        if not asset.path.lower().endswith(suffix):
            continue
        digest = (asset.get_raw_metadata().get("digest") or {}).get(SHA256_KEY)
        assets.append(DandiAsset(asset.path, asset.size, digest, asset.base_download_url))
        if limit is not None and len(assets) >= limit:
            break
    return assets


def list_assets(
    dandiset_id: str,
    *,
    limit: int | None = None,
    version: str | None = None,
    suffix: str = ".nwb",
    client=None,
) -> list[DandiAsset]:
    """The first `limit` NWB assets of a dandiset, with sha256 from the asset metadata."""
    dandiset_id = _check_id(dandiset_id)
    if limit is not None and limit < 1:
        raise Ephys2txError(f"--limit must be at least 1, not {limit}")
    if client is None:
        DandiAPIClient = import_extra("dandi.dandiapi", "dandi", "fetch-nwb").DandiAPIClient

        _probe(DANDI_API_HOST)  # fail in seconds, not after the client's minute of retries
        client = DandiAPIClient()
    try:
        # the dandi client logs full tracebacks on network errors; we report one line
        with _QuietLogger("dandi"):
            assets = _collect(dandiset_id, version, suffix, limit, client)
    except Ephys2txError:
        raise
    except Exception as exc:
        if _network_error(exc) or isinstance(exc, OSError):
            raise Ephys2txError(
                f"network unreachable: cannot list dandiset {dandiset_id} on the DANDI archive "
                f"({type(exc).__name__}); {NETWORK_HINT}"
            ) from exc
        raise Ephys2txError(
            f"listing dandiset {dandiset_id} failed ({one_line(exc)}); "
            "try again later or pass --version"
        ) from exc
    return assets


def part_path(target: Path) -> Path:
    """Where the incomplete download of `target` lives until it is verified."""
    return target.with_name(target.name + ".part")


def is_complete(target: Path, sha256: str | None, size: int | None = None) -> bool:
    """True when `target` exists with the expected size and sha256 (when known)."""
    if not target.is_file():
        return False
    if size is not None and target.stat().st_size != size:
        return False
    return sha256 is None or sha256_of(target) == sha256.lower()


def download(
    url: str,
    target: str | Path,
    sha256: str | None,
    *,
    size: int | None = None,
    on_bytes: Callable[[int], None] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download `url` to `target`, resuming a `.part` file, verifying sha256, renaming atomically.

    A checksum mismatch deletes the partial file and raises; no final file is left.
    `on_bytes(n)` is called with the number of bytes already present and then per chunk.
    """
    import requests

    target = Path(target)
    if is_complete(target, sha256, size):
        if on_bytes:
            on_bytes(target.stat().st_size)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(target)
    offset = part.stat().st_size if part.is_file() else 0
    if size is not None and offset > size:  # not a prefix of this file: start again
        part.unlink()
        offset = 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        with requests.get(url, headers=headers, stream=True, timeout=timeout) as response:
            if response.status_code == 416:  # nothing left to send: the part is complete
                pass
            elif response.status_code not in (200, 206):
                raise Ephys2txError(
                    f"download of {url} failed: HTTP {response.status_code}; "
                    "try again later (the archive may be busy)"
                )
            else:
                if response.status_code == 200 and offset:  # server ignored Range
                    offset = 0
                mode = "ab" if offset else "wb"
                if on_bytes:
                    on_bytes(offset)
                with open(part, mode) as out:
                    for chunk in response.iter_content(CHUNK):
                        out.write(chunk)
                        if on_bytes:
                            on_bytes(len(chunk))
    except Ephys2txError:
        raise
    except requests.exceptions.RequestException as exc:
        kind = "network unreachable" if _network_error(exc) else "download interrupted"
        raise Ephys2txError(
            f"{kind} while downloading {url} ({type(exc).__name__}); {NETWORK_HINT} "
            f"(the partial file {part.name} is kept and resumed)"
        ) from exc
    if sha256 is not None:
        got = sha256_of(part)
        if got != sha256.lower():
            part.unlink(missing_ok=True)
            raise Ephys2txError(
                f"checksum mismatch for {target.name}: expected sha256 {sha256}, got {got}; "
                "the download was corrupted and deleted, run the command again"
            )
    # Not `files.atomic_write`: the `.part` is a resume file that must outlive a failed run.
    # It lies beside the target, so this rename is atomic (one file system): readers see no
    # file or the whole verified one. Flushed first, so that a crash cannot leave the target
    # renamed into place with its bytes still unwritten.
    with open(part, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(part, target)
    return target


def fetch_assets(
    assets: Iterable[DandiAsset],
    out_dir: str | Path,
    *,
    on_start: Callable[[DandiAsset, bool], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> list[Path]:
    """Download each asset under `out_dir` (keeping its dandiset path); skip complete ones.

    `on_start(asset, already_complete)` is called before each file, for progress display.
    """
    out_dir = Path(out_dir).expanduser()
    paths = []
    for asset in assets:
        target = out_dir / Path(*Path(asset.path).parts)
        if not target.resolve().is_relative_to(out_dir.resolve()):
            raise Ephys2txError(f"asset path {asset.path!r} leaves {out_dir}; refusing to write")
        complete = is_complete(target, asset.sha256, asset.size)
        if on_start:
            on_start(asset, complete)
        paths.append(
            target
            if complete
            else download(asset.url, target, asset.sha256, size=asset.size, on_bytes=on_bytes)
        )
    return paths
