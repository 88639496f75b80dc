"""Extract many recordings on Dask: per-file cache keyed by content hash, errors table, outputs.

Each file becomes one task: hash -> cached result, or read -> one-pass extraction -> cache
(written atomically, so a killed run resumes without recomputing finished files). Cell ids
come from the files' current names, never from the cache. A file that gives no cell becomes
a row of `errors.csv` and the batch goes on. Outputs in the output folder, written as one
set: `cells.parquet` (with `file` and `sha256`), `feature_vectors.h5` (IPFX layout + mask)
and `errors.csv`.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..console import console
from ..errors import Ephys2txError, import_extra, one_line
from ..files import atomic_write, csv_safe, marked_read_only, sha256_of, staging_folder
from ..recordings.read import broken_link_message, is_broken_link
from ..recordings.sweeps import Recording
from ..schema import FEATURE_DTYPE, ID_COLUMNS
from .analysis import FAILED, MISSING, CellFeatures
from .families import SCALAR_FEATURES, VECTOR_FAMILIES
from .fvfile import write_feature_vectors

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

CONNECT_TIMEOUT = "20s"  # to reach an existing scheduler (--scheduler)
# Local workers run without Dask's MALLOC_TRIM_THRESHOLD_=65536: setting it switches off
# glibc's adaptive mmap threshold, so every large temporary array of the extraction is a fresh
# mmap with page faults, which took more than half the extraction's time (measured:
# docs/guides/recordings.md, "Scaling extraction on Dask"). The sampling profiler and GIL
# monitor are off as well: they wake every 1-10 ms, and with one core per worker that time
# comes out of the extraction.
LOCAL_WORKER_CONFIG = {
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.gil.enabled": False,
}
CACHE_VERSION = 2  # bump when extraction changes so old cache entries are not reused (2: JSON)
ERROR_COLUMNS = ["file", "stage", "reason"]
CELLS_FILE, FV_FILE, ERRORS_FILE, CACHE_DIR = (
    "cells.parquet",
    "feature_vectors.h5",
    "errors.csv",
    "cache",
)

STAGING_NAME = "writing"  # temporary folder `.writing-PID-…` of an output set being written

Reader = Callable[[Path], Recording]
Extractor = Callable[[Recording], CellFeatures]


def _default_reader(path: Path) -> Recording:
    from ..recordings.read import read_recording

    return read_recording(path)


def _peak_rss_mb() -> float:
    """Peak resident memory of this process (MB); Linux reports KiB, macOS bytes."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1 << 20) if sys.platform == "darwin" else rss / 1024


def _json_value(value: object) -> object:
    """numpy scalars and arrays as JSON; anything else cannot be cached (TypeError)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} cannot be cached")


def _write_cached(result: dict, path: Path) -> None:
    """One cell's result as JSON (NaN kept): reading a cache never runs code, even in an
    output folder someone else wrote."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, default=_json_value)
    atomic_write(path, lambda tmp: tmp.write_text(text))


def _read_cached(path: Path) -> dict | None:
    """A cached result of this extraction version (vectors as float arrays), else None."""
    try:
        cached = json.loads(path.read_text())
        if cached.get("cache_version") != CACHE_VERSION:
            return None
        cached["vectors"] = {k: np.asarray(v, dtype=float) for k, v in cached["vectors"].items()}
        return cached
    except Exception:  # a corrupt or foreign entry is recomputed, not fatal
        return None


def _meta(rec: Recording, species: str | None) -> dict:
    md = rec.metadata or {}
    out = {c: md.get(c) for c in ID_COLUMNS}
    out["specimen_id"] = str(md.get("specimen_id") or rec.cell_id)
    out["species"] = species or rec.species or md.get("species")
    return out


NOT_A_FILE = "not a regular file (a device or a pipe); pass a recording file"


def process_file(
    path: str | Path,
    cache_dir: str | Path,
    species: str | None = None,
    reader: Reader | None = None,
    extractor: Extractor | None = None,
) -> dict:
    """One file -> result dict (cached by content hash). Never raises: errors are returned.

    `extractor` defaults to the one-pass `extract_features` (benchmarks swap it).

    Keys: file, sha256, cached, meta, scalars, vectors, family_status, family_reason,
    status, reason, error (None or (stage, reason)), read_seconds, extract_seconds, peak_rss_mb.
    """
    from .extract import extract_features

    t0 = time.perf_counter()
    path = Path(path)
    base = {"file": str(path), "cached": False, "error": None}
    if is_broken_link(path):  # a dangling link: its own row in errors.csv
        return {**base, "sha256": None, "error": ("read", broken_link_message(path))}
    if path.exists() and not path.is_file():  # a device or a pipe: hashing it never ends
        return {**base, "sha256": None, "error": ("read", NOT_A_FILE)}
    try:
        digest = sha256_of(path)  # the cache key: renaming or moving a file keeps its cache
    except FileNotFoundError:
        return {**base, "sha256": None, "error": ("read", "file not found; check the path")}
    except OSError as exc:
        return {**base, "sha256": None, "error": ("read", f"cannot read file: {exc}")}
    cache_file = Path(cache_dir) / f"{digest}.json"
    cached = _read_cached(cache_file) if cache_file.is_file() else None
    if cached is not None:
        hit = {**cached, "file": str(path), "cached": True, "peak_rss_mb": _peak_rss_mb()}
        hit["worker_pid"] = os.getpid()
        if species:
            hit["meta"] = {**hit["meta"], "species": species}
        return hit
    result = {**base, "sha256": digest}
    try:
        rec = (reader or _default_reader)(path)
    except Exception as exc:
        return {**result, "error": ("read", one_line(exc))}
    t_read, cpu_read = time.perf_counter(), time.process_time()
    try:
        cf = (extractor or extract_features)(rec)
    except Exception as exc:
        return {**result, "error": ("extract", one_line(exc))}
    t_done, cpu_done = time.perf_counter(), time.process_time()
    result.update(
        cache_version=CACHE_VERSION,
        meta=_meta(rec, species),
        scalars=cf.scalars,
        vectors=cf.vectors,
        family_status=cf.family_status,
        family_reason=cf.family_reason,
        status=cf.status,
        reason=cf.reason,
        read_seconds=t_read - t0,
        extract_seconds=t_done - t_read,
        extract_cpu_seconds=cpu_done - cpu_read,  # insensitive to other load on the machine
    )
    try:
        _write_cached(result, cache_file)
    except (OSError, TypeError, ValueError) as exc:  # a full disk: the result stands, uncached
        result["cache_error"] = one_line(exc)
    result["peak_rss_mb"] = _peak_rss_mb()
    result["worker_pid"] = os.getpid()
    return result


@dataclass
class BatchResult:
    """What a batch produced: the three tables and per-run figures."""

    cells: pd.DataFrame
    errors: pd.DataFrame
    out_dir: Path
    n_cached: int
    n_computed: int
    seconds: float
    compute_seconds: float  # first submission to last result: excludes cluster start-up
    read_seconds: float  # summed over files computed in this run
    extract_seconds: float  # summed over files computed in this run (feature extraction only)
    extract_cpu_seconds: float  # the same in CPU time of the worker processes
    peak_rss_mb: float  # highest peak RSS seen in any worker process
    warnings: list[str] = field(default_factory=list)  # duplicate names or contents, cache
    peak_rss_mb_by_worker: dict[int, float] = field(default_factory=dict)  # worker pid -> MB


def cell_ids(
    files: Sequence[str | Path], digests: Sequence[str | None]
) -> tuple[list[str], list[str]]:
    """Specimen ids from the current file names, made unique; warnings for duplicates.

    An id is the file's stem. Files sharing a stem (in different folders) get their folder
    name in front, else a short content hash, else a counter. Files with identical contents
    keep their own names, with a warning.
    """
    paths = [Path(f) for f in files]
    ids = [p.stem for p in paths]
    notes: list[str] = []
    by_stem: dict[str, list[int]] = {}
    for k, stem in enumerate(ids):
        by_stem.setdefault(stem, []).append(k)
    for stem, members in by_stem.items():
        if len(members) < 2:
            continue
        candidates = (
            [f"{paths[k].parent.name}_{stem}" for k in members],
            [f"{stem}_{(digests[k] or '')[:8]}" for k in members],
            [f"{stem}_{n}" for n in range(1, len(members) + 1)],
        )
        names = next(
            (c for c in candidates if len(set(c)) == len(c) and not set(c) & set(ids)),
            candidates[-1],
        )
        for k, name in zip(members, names, strict=True):
            ids[k] = name
        notes.append(
            f"{len(members)} files are named {stem!r}: their ids are "
            + ", ".join(f"{ids[k]} ({paths[k]})" for k in members)
        )
    by_digest: dict[str, list[int]] = {}
    for k, digest in enumerate(digests):
        if digest:
            by_digest.setdefault(digest, []).append(k)
    for members in by_digest.values():
        if len(members) > 1:
            notes.append(
                "identical contents under different names: "
                + ", ".join(f"{paths[k]} (id {ids[k]})" for k in members)
            )
    return ids, notes


def collect(results: Sequence[dict]) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Results (in input order) -> cell table, vector arrays (+mask, reasons) and errors.

    A file that gives no usable cell (read or extraction error, or no feature family at all)
    is a row of the errors table with its reason, not a row of the cell table.
    """
    errors_rows = []
    good = []
    for r in results:
        if r.get("error") is not None:
            errors_rows.append((r["file"], *r["error"]))
        elif r.get("status") == FAILED:
            errors_rows.append(
                (r["file"], "extract", f"no feature could be measured: {r['reason']}")
            )
        else:
            good.append(r)
    rows = []
    for r in good:
        row = dict(r["meta"])
        row.update(r["scalars"])
        row.update(status=r["status"], reason=r["reason"], file=r["file"], sha256=r["sha256"])
        rows.append(row)
    columns = list(ID_COLUMNS) + SCALAR_FEATURES + ["status", "reason", "file", "sha256"]
    cells = pd.DataFrame(rows, columns=columns)
    for c in SCALAR_FEATURES:
        cells[c] = cells[c].astype(FEATURE_DTYPE)
    fams = [f.name for f in VECTOR_FAMILIES]
    vectors = {
        f.name: (
            np.vstack([r["vectors"][f.name] for r in good]) if good else np.zeros((0, f.length))
        )
        for f in VECTOR_FAMILIES
    }
    mask = np.array([[r["family_status"][f] != MISSING for f in fams] for r in good], bool).reshape(
        len(good), len(fams)
    )
    reasons = [[r["family_reason"].get(f, "") for f in fams] for r in good]
    errors = pd.DataFrame(errors_rows, columns=ERROR_COLUMNS)
    return cells, {"vectors": vectors, "mask": mask, "reasons": reasons}, errors


def write_outputs(out_dir: Path, cells: pd.DataFrame, fv: dict, errors: pd.DataFrame) -> None:
    """cells.parquet, feature_vectors.h5 and errors.csv as one set: all new ones, or the old.

    All three are written into a temporary folder beside the targets, then moved into place;
    a failure (e.g. a full disk) removes the temporary folder and leaves earlier outputs as
    they were.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(out_dir, STAGING_NAME)  # a killed run's is removed, not a live one's
    try:
        cells.to_parquet(staging / CELLS_FILE, index=False)
        write_feature_vectors(
            staging / FV_FILE,
            list(cells["specimen_id"]),
            fv["vectors"],
            fv["mask"],
            fv["reasons"],
        )
        csv_safe(errors).to_csv(staging / ERRORS_FILE, index=False)  # spreadsheet-safe
        for name in (FV_FILE, ERRORS_FILE, CELLS_FILE):
            os.replace(staging / name, out_dir / name)
    except OSError as exc:
        full = exc.errno == errno.ENOSPC
        raise Ephys2txError(
            f"cannot write the outputs to {out_dir} "
            f"({'no space left on the device' if full else one_line(exc)}); nothing was written "
            "(earlier outputs are unchanged): free space or choose another --out"
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_out_folder(out_dir: Path) -> None:
    """The output folder must be a writable folder (created if absent), checked up front."""
    if out_dir.exists() and not out_dir.is_dir():
        raise Ephys2txError(f"--out {out_dir} is an existing file; give a folder for the outputs")
    existing = next(p for p in [out_dir, *out_dir.parents] if p.exists())
    if existing.is_dir() and marked_read_only(existing):
        raise Ephys2txError(
            f"cannot write to --out {out_dir} ({existing} is marked read-only); "
            "choose a writable folder"
        )
    try:
        (out_dir / CACHE_DIR).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        raise Ephys2txError(
            f"cannot write to --out {out_dir} ({exc.strerror or one_line(exc)}); "
            "choose a writable folder"
        ) from exc


def check_memory_limit(memory_limit: str) -> str:
    """A Dask memory size such as 2GiB or 4GB (or `auto`), checked before a cluster starts."""
    parse_bytes = import_extra("dask.utils", "dask", "--memory-limit").parse_bytes

    if str(memory_limit).strip().lower() == "auto":
        return "auto"
    try:
        size = parse_bytes(str(memory_limit))
    except (ValueError, TypeError):
        size = 0
    if size <= 0:
        raise Ephys2txError(
            f"--memory-limit {memory_limit!r} is not a memory size; give one such as 2GiB or 4GB"
        )
    return str(memory_limit)


def _size_priority(path: Path) -> int:
    """Dask priority of a file's task: its size in kB (a missing file fails fast anyway)."""
    try:
        return path.stat().st_size // 1024
    except OSError:
        return 0


def _warm_up() -> None:
    """Import IPFX and the extractor in each worker before timing starts."""
    from . import extract  # noqa: F401


# Without --dashboard the scheduler's HTTP endpoint (it always has one) takes a free port on
# localhost and serves no dashboard, so runs side by side do not compete for port 8787.
QUIET_HTTP = "127.0.0.1:0"
DASHBOARD_ADDRESS = ":8787"


def dask_client(
    workers: int,
    scheduler: str | None = None,
    memory_limit: str = "2GiB",
    processes: bool = True,
    dashboard: bool = False,
) -> tuple[Client, LocalCluster | None]:
    """Connect to `scheduler`, or start a LocalCluster of `workers` single-threaded workers
    (with the Dask dashboard on port 8787 only when `dashboard` is asked for)."""
    distributed = import_extra("distributed", "dask", "extracting features on Dask")
    Client, LocalCluster = distributed.Client, distributed.LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout=CONNECT_TIMEOUT), None
        except Exception as exc:
            raise Ephys2txError(
                f"cannot reach the Dask scheduler at {scheduler} ({one_line(exc)}); "
                "check the address (tcp://host:8786) or drop --scheduler to run locally"
            ) from exc
    import dask

    # one thread per worker: IPFX/numpy work holds the GIL, processes give the parallelism.
    # A Dask nanny started earlier in this process may have exported MALLOC_TRIM_THRESHOLD_.
    inherited = os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    try:
        with dask.config.set(LOCAL_WORKER_CONFIG):
            # In-process workers (processes=False, tests and notebooks) get no memory limit:
            # their monitor measures the whole host process, and once that passes 80% of the
            # limit it pauses the worker and the batch waits forever (seen in the test suite).
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=processes,
                memory_limit=memory_limit if processes else 0,
                dashboard_address=DASHBOARD_ADDRESS if dashboard else QUIET_HTTP,
                scheduler_kwargs={"dashboard": dashboard},
            )
    finally:
        if inherited is not None:
            os.environ["MALLOC_TRIM_THRESHOLD_"] = inherited
    return Client(cluster), cluster


def run_batch(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    workers: int = 1,
    scheduler: str | None = None,
    species: str | None = None,
    reader: Reader | None = None,
    memory_limit: str = "2GiB",
    processes: bool = True,
    progress: bool = True,
    extractor: Extractor | None = None,
    dashboard: bool = False,
) -> BatchResult:
    """Extract features of many files on Dask and write the outputs to `out_dir` (with the
    Dask dashboard only when `dashboard` is asked for)."""
    import_extra("distributed", "dask", "extracting recordings")
    out_dir = Path(out_dir)
    paths = [Path(p) for p in paths]
    workers = _check_workers(paths, workers, scheduler, processes)
    if scheduler is None:
        memory_limit = check_memory_limit(memory_limit)
    check_out_folder(out_dir)
    t0 = time.perf_counter()
    client, cluster = dask_client(workers, scheduler, memory_limit, processes, dashboard)
    if dashboard and cluster is not None:
        console.print(f"Dask dashboard: {cluster.dashboard_link}", highlight=False)
    try:  # from here on the cluster is closed whatever happens (Ctrl-C during warm-up too)
        client.run(_warm_up)
        t_submit = time.perf_counter()
        jobs = (out_dir / CACHE_DIR, species, reader, extractor)
        results = _extract_all(client, paths, jobs, progress)
        compute_seconds = time.perf_counter() - t_submit
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    ordered = [results[k] for k in range(len(paths))]
    notes = _name_cells(ordered)
    cells, fv, errors = collect(ordered)
    write_outputs(out_dir, cells, fv, errors)
    return BatchResult(
        cells=cells,
        errors=errors,
        out_dir=out_dir,
        n_cached=sum(bool(r.get("cached")) for r in ordered),
        n_computed=sum(r.get("error") is None and not r.get("cached") for r in ordered),
        seconds=time.perf_counter() - t0,
        compute_seconds=compute_seconds,
        read_seconds=sum(r.get("read_seconds", 0.0) for r in ordered if not r.get("cached")),
        extract_seconds=sum(r.get("extract_seconds", 0.0) for r in ordered if not r.get("cached")),
        extract_cpu_seconds=sum(
            r.get("extract_cpu_seconds", 0.0) for r in ordered if not r.get("cached")
        ),
        peak_rss_mb=max((r.get("peak_rss_mb") or 0.0) for r in ordered),
        warnings=notes,
        peak_rss_mb_by_worker=_peaks_by_worker(ordered),
    )


def _check_workers(paths: list[Path], workers: int, scheduler: str | None, processes: bool) -> int:
    """The number of local workers to start, checked before any work: at least 1, no more
    local processes than cores, and no more workers than files (an idle one only costs
    start-up time)."""
    if not paths:
        raise Ephys2txError("no recording files given; pass .abf/.nwb files or a folder")
    if workers < 1:
        raise Ephys2txError(f"--workers must be at least 1, got {workers}")
    cores = os.cpu_count() or 1
    if scheduler is None and processes and workers > cores:
        raise Ephys2txError(
            f"--workers {workers} is more than the {cores} CPU core(s) of this machine; give "
            f"--workers {cores} or fewer (or --scheduler ADDRESS for a cluster)"
        )
    return min(workers, len(paths))


def _extract_all(client, paths: list[Path], jobs: tuple, progress: bool) -> dict[int, dict]:
    """`process_file` of every path on the Dask cluster, largest files first (so no worker
    is left with a big file while the others idle), under a progress bar; `jobs` holds its
    other arguments (cache folder, species, reader, extractor). A worker that died gives an
    error row for its file."""
    from distributed import as_completed
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    cache_dir, species, reader, extractor = jobs
    futures = {
        client.submit(
            process_file,
            str(p),
            str(cache_dir),
            species,
            reader,
            extractor,
            key=f"extract-{k}-{p.name}",
            pure=False,
            priority=_size_priority(p),
        ): k
        for k, p in enumerate(paths)
    }
    results: dict[int, dict] = {}
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not progress,
    ) as bar:
        task = bar.add_task("extracting", total=len(paths))
        for fut in as_completed(futures):
            k = futures[fut]
            try:
                results[k] = fut.result()
            except Exception as exc:  # a worker died (e.g. memory limit): one error row
                results[k] = {"file": str(paths[k]), "error": ("worker", one_line(exc))}
            bar.advance(task)
    return results


def _name_cells(ordered: list[dict]) -> list[str]:
    """Give each extracted cell its specimen id (from the file's current name, never the
    cache); returns the notes on ids and on results that could not be cached."""
    ids, notes = cell_ids([r["file"] for r in ordered], [r.get("sha256") for r in ordered])
    for r, cell_id in zip(ordered, ids, strict=True):
        if r.get("error") is None:
            r["meta"] = {**r["meta"], "specimen_id": cell_id}
    if failed := [r for r in ordered if r.get("cache_error")]:
        notes.append(f"{len(failed)} result(s) not cached: {failed[0]['cache_error']}")
    return notes


def _peaks_by_worker(results: Sequence[dict]) -> dict[int, float]:
    """Highest peak RSS reported by each worker process (a restarted worker is a new pid)."""
    peaks: dict[int, float] = {}
    for r in results:
        if (pid := r.get("worker_pid")) is not None:
            peaks[pid] = max(peaks.get(pid, 0.0), r.get("peak_rss_mb") or 0.0)
    return peaks
