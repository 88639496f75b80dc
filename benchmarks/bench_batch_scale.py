"""300 synthetic cells through 2 local Dask workers under a memory limit.

Prints throughput (cells/min, first submission to last result, and end to end with cluster
start-up), peak resident memory of each worker process, and whether every worker stayed
under `--memory-limit` (the nanny would restart a worker that passed 95% of it: a restart
shows up as a third worker process).

    .venv/bin/python benchmarks/bench_batch_scale.py [--cells 300] [--distinct 20]
        [--memory-limit 2GiB] [--workers 2]

Files: `--distinct` SYNTHETIC cells with the full Allen protocol (`synthetic`), each
written once as Allen NWB and copied until there are `--cells` files; every copy gets its own
NWB identifier, so contents and cache keys differ and every file is extracted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

SUBCLASSES = ("Lamp5", "Pvalb", "Sncg", "Sst", "Vip")


def make_files(n_cells: int, n_distinct: int, out: Path) -> list[Path]:
    """`n_cells` NWB files from `n_distinct` simulated cells (copies differ in identifier)."""
    import h5py

    from ephys2tx.recordings.allen_nwb import write_allen_nwb
    from ephys2tx.synthetic import simulate_cell

    out.mkdir(parents=True, exist_ok=True)
    originals = []
    for k in range(n_distinct):
        sub = SUBCLASSES[k % len(SUBCLASSES)]
        rec = simulate_cell(sub, "mouse", np.random.default_rng([7, k]), cell_id=f"orig{k:03d}")
        originals.append(write_allen_nwb(out / f"orig{k:03d}.nwb", rec, "SYNTHETIC benchmark"))
    files = []
    for k in range(n_cells):
        target = out / "cells" / f"syn{k:04d}.nwb"
        target.parent.mkdir(exist_ok=True)
        shutil.copy(originals[k % n_distinct], target)
        with h5py.File(target, "a") as h5:
            h5["identifier"][()] = target.stem
        files.append(target)
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=300)
    ap.add_argument("--distinct", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="2GiB")
    ap.add_argument("--keep", type=Path, default=None, help="keep files and outputs here")
    args = ap.parse_args()

    from dask.utils import format_bytes, parse_bytes

    from ephys2tx.features.batch import run_batch

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_batch_scale_"))
    try:
        t0 = time.perf_counter()
        files = make_files(args.cells, args.distinct, work / "data")
        size = sum(f.stat().st_size for f in files)
        print(
            f"files: {len(files)} SYNTHETIC Allen NWB ({args.distinct} distinct cells, "
            f"{size / 1e9:.2f} GB) written in {time.perf_counter() - t0:.0f} s"
        )
        load0 = os.getloadavg()[0]
        print(f"machine: {os.cpu_count()} CPU cores, load average {load0:.1f} (shared)")
        out = work / "out"
        shutil.rmtree(out, ignore_errors=True)
        res = run_batch(
            files, out, workers=args.workers, memory_limit=args.memory_limit, progress=True
        )
        n = len(res.cells)
        limit_mb = parse_bytes(args.memory_limit) / 2**20
        print(f"\n{n} cells extracted, {len(res.errors)} errors, {res.n_cached} from cache")
        print(
            f"throughput: {60 * n / res.compute_seconds:.1f} cells/min "
            f"({res.compute_seconds:.0f} s first submission to last result), "
            f"{60 * n / res.seconds:.1f} cells/min end to end ({res.seconds:.0f} s, "
            "cluster start-up and output writing included)"
        )
        print(
            f"per cell: read {res.read_seconds / n:.2f} s, extract {res.extract_seconds / n:.2f}"
            f" s wall / {res.extract_cpu_seconds / n:.2f} s CPU (worker time, summed)"
        )
        peaks = res.peak_rss_mb_by_worker
        print(f"worker processes seen: {len(peaks)} (a restarted worker would add one)")
        for pid, mb in sorted(peaks.items()):
            print(f"  worker pid {pid}: peak {mb:.0f} MB")
        worst = max(peaks.values()) if peaks else float("nan")
        under = worst < limit_mb and len(peaks) == args.workers
        print(
            f"memory limit {format_bytes(parse_bytes(args.memory_limit))} per worker: highest "
            f"peak {worst:.0f} MB ({worst / limit_mb:.0%} of it): "
            f"{'STAYED UNDER' if under else 'NOT UNDER (or a worker restarted)'}"
        )
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
