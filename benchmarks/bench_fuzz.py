"""Fuzz the recording readers with damaged copies of the real ABF and NWB files.

Each example takes one real recording of `../shared/data/recordings`, damages it (cut
short, bits flipped, a run of bytes overwritten, or random bytes; `tests/properties/fuzz.py`)
and reads it as `inspect` and `extract` do, in a guarded worker process. Prints the figures:
examples run, outcomes by kind (ok, one-line error, and the failures: unexpected exception,
multi-line message, hang, crash), failures by mutation, the first failures, and the time.

    EPHYS2TX_MIRROR=../shared/data .venv/bin/python benchmarks/bench_fuzz.py --examples 10000
    ... --examples 200 --seed 1 --timeout 20     # a quick run
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.properties.fuzz import MUTATIONS, GuardedReader, damaged_file, mutate  # noqa: E402

RECORDINGS = REPO.parent / "shared" / "data" / "recordings"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds before a read is a hang")
    ap.add_argument("--recordings", type=Path, default=RECORDINGS)
    ap.add_argument("--show", type=int, default=10, help="failures printed in full")
    ap.add_argument("--save", type=Path, help="keep each failing example in this folder")
    ap.add_argument("--only", type=int, nargs="*", help="read only these example numbers")
    ap.add_argument("--budget-s", type=float, help="stop starting examples after this long")
    args = ap.parse_args()

    sources = sorted(args.recordings.rglob("*.abf")) + sorted(args.recordings.rglob("*.nwb"))
    if not sources:
        sys.exit(f"no .abf or .nwb files under {args.recordings}")
    originals = {p: p.read_bytes() for p in sources}
    rng = np.random.default_rng(args.seed)
    reader = GuardedReader(args.timeout)
    kinds: Counter = Counter()
    by_mutation: Counter = Counter()
    failures = []
    t0 = time.perf_counter()
    slowest = 0.0
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        for i in range(args.examples):
            source = sources[int(rng.integers(len(sources)))]
            mutation = MUTATIONS[int(rng.integers(len(MUTATIONS)))]
            data = mutate(originals[source], mutation, rng, source.suffix)
            if args.only is not None and i not in args.only:
                continue
            if args.budget_s and time.perf_counter() - t0 > args.budget_s:
                print(f"  time budget of {args.budget_s:g} s spent after {i} examples")
                break
            path = damaged_file(Path(tmp), data, source.suffix, f"ex{i}")
            t = time.perf_counter()
            outcome = reader.read(path)
            slowest = max(slowest, time.perf_counter() - t)
            path.unlink()
            path.parent.rmdir()
            kinds[outcome.kind] += 1
            if outcome.failed:
                by_mutation[(source.suffix, mutation, outcome.kind)] += 1
                failures.append((i, source.name, mutation, outcome))
                if args.save:
                    args.save.mkdir(parents=True, exist_ok=True)
                    (args.save / f"ex{i}-{mutation}{source.suffix}").write_bytes(data)
            if (i + 1) % 500 == 0:
                print(f"  {i + 1} examples, {time.perf_counter() - t0:.0f} s: {dict(kinds)}",
                      flush=True)  # fmt: skip
    reader.close()
    seconds = time.perf_counter() - t0
    n_run = sum(kinds.values())
    print(f"examples run: {n_run} of {args.examples} (seed {args.seed}, {len(sources)} files)")
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    print(f"failures: {len(failures)}")
    for (suffix, mutation, kind), n in sorted(by_mutation.items()):
        print(f"  {suffix} {mutation}: {kind} x{n}")
    for i, name, mutation, outcome in failures[: args.show]:
        print(f"  example {i} ({name}, {mutation}): {outcome.kind}: {outcome.detail}")
    print(f"time: {seconds:.1f} s ({seconds / max(n_run, 1) * 1000:.0f} ms per "
          f"example, slowest {slowest:.1f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
