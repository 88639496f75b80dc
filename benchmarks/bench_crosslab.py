"""The cross-lab benchmark (issue 19): the mouse default model on the M1 Patch-seq cells of
Scala et al. 2021 (another lab, another extractor), read through the crosswalk.

Rows on M1's 818 GABAergic cells (5-class subclass, alpha 0.1): (a) the reference as it
is; (b) adapted without labels (the method chosen per fold of mice on the other folds);
(c) adapted with the labelled cells of 10% and 25% of the mice, scored on the other mice,
over 5 draws; (d) the in-domain ceilings, M1 alone on the shared features and on all of its
own columns, 5 folds grouped by mouse, the classifier chosen by inner folds (nested), over
5 shuffles of the mice. Prints the table and writes `crosslab.png` (figures) and
`crosslab.json` into --out; `--jobs 2` fits the ceilings as 2 threads.

    EPHYS2TX_MIRROR=../shared/data OMP_NUM_THREADS=1 .venv/bin/python \\
        benchmarks/bench_crosslab.py --out docs/crosslab --jobs 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from ephys2tx.study.crosslab import TARGETS, crosslab_figure, run_crosslab, table_lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("crosslab"))
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--fractions", default="0.1,0.25")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    start = time.perf_counter()
    fractions = tuple(float(f) for f in args.fractions.split(","))
    result = run_crosslab(args.seed, args.draws, fractions, n_jobs=args.jobs)
    args.out.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    pd.set_option("display.width", 200)
    for line in table_lines(result):
        print(line)
    print("\nunlabelled candidates on all cells (for the record; the choice is nested):")
    for method, figures in result.candidates.items():
        print(f"  {method}: macro-F1 {figures['macro_f1']:.3f}, accuracy {figures['accuracy']:.3f}")
    print(f"nested choice per fold of mice: {result.selection}")
    for key in ("lab_shift_a", "lab_shift_b"):
        print(f"{key}: {result.notes.get(key)}")
    print(f"targets: {TARGETS}")
    crosslab_figure(result, args.out / "crosslab.png")
    payload = {
        "summary": json.loads(summary.to_json(orient="index")),
        "scores": json.loads(result.scores.to_json(orient="records")),
        "selection": result.selection,
        "candidates": result.candidates,
        "notes": result.notes,
        "seconds": round(time.perf_counter() - start, 1),
    }
    (args.out / "crosslab.json").write_text(json.dumps(payload, indent=1, default=str))
    print(f"wrote {args.out}/crosslab.png and crosslab.json in {payload['seconds']} s")


if __name__ == "__main__":
    main()
