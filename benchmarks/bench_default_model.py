"""The default model's acceptance figures on the reported seed-0 donor-grouped 5x3 folds:
subclass macro-F1, t-type accuracy and macro-F1 (t-types with >= 10 cells), subclass ECE
with and without the temperature, conformal coverage and mean set size per level at alpha 0.1, first-use training time, and the time of
`predict` on 100 cells with the cached model. Run with the data mirror:

    EPHYS2TX_MIRROR=../shared/data .venv/bin/python benchmarks/bench_default_model.py --jobs 1
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ephys2tx.default_model import (
    cached_default_model,
    default_training_cells,
    evaluate_default_model,
)
from ephys2tx.evaluation.splits import DonorKFold

TARGETS = {  # species: (subclass macro-F1, t-type accuracy, t-type macro-F1)
    "human": (0.82, 0.45, None),
    "mouse": (0.91, 0.55, 0.45),
}


def _speed(species: str, jobs: int) -> tuple[float, float, float]:
    """Wall and CPU seconds of a first-use fit (fresh data directory; CPU counts this process
    only, so it is complete with --jobs 1) and wall seconds of `predict` on 100 cells."""
    with tempfile.TemporaryDirectory() as tmp:
        start, cpu = time.perf_counter(), time.process_time()
        model_dir = cached_default_model(species, Path(tmp) / "data", say=print, n_jobs=jobs)
        first_use, cpu = time.perf_counter() - start, time.process_time() - cpu
        cells = Path(tmp) / "cells.csv"
        default_training_cells(species, Path(tmp) / "data").head(100).to_csv(cells, index=False)
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "ephys2tx.cli", "predict", str(model_dir), str(cells),
             "--out", str(Path(tmp) / "pred.csv")],
            check=True, capture_output=True,
        )  # fmt: skip
        return first_use, cpu, time.perf_counter() - start


def _accuracy_lines(species: str, args) -> list[str]:
    """The cross-validated figures of one species on seed-0 donor-grouped folds."""
    lines = []
    start = time.perf_counter()
    result = evaluate_default_model(species, DonorKFold(5, args.repeats, 0), 0.1, args.jobs)
    cv_seconds = time.perf_counter() - start
    m = result.metrics
    sub, tt = m["subclass"], m["t_type"]
    target = TARGETS[species]
    lines.append(
        f"{species}: subclass macro-F1 {sub['macro_f1']['mean']:.3f} ± {sub['macro_f1']['sd']:.3f} "
        f"(target {target[0]}), accuracy {sub['accuracy']['mean']:.3f}, balanced accuracy "
        f"{sub['balanced_accuracy']['mean']:.3f}"
    )
    lines.append(
        f"{species}: {m['n_t_types']} t-types: accuracy {tt['accuracy']['mean']:.3f} "
        f"(target {target[1]}), macro-F1 {tt['macro_f1']['mean']:.3f} (target {target[2]}), "
        f"balanced accuracy {tt['balanced_accuracy']['mean']:.3f}; subclass right when "
        f"t-type wrong {tt['errors_with_right_subclass']['mean']:.3f}"
    )
    lines.append(
        f"{species}: subclass ECE {sub['ece']:.3f} (target 0.05) with the temperature nested "
        f"in each training fold (median T {sub['temperature_median']:.2f}); without it "
        f"{sub['ece_unscaled']:.3f}"
    )
    for level, s in (("subclass", sub), ("t-type", tt)):
        lines.append(
            f"{species}: {level} sets at alpha 0.1: coverage {s['coverage']['mean']:.3f}, "
            f"mean size {s['mean_set_size']['mean']:.2f}"
        )
    lines.append(
        f"{species}: t-type sets emptied by nesting {m['t_type_set_emptied_share']:.3f}; "
        f"cross-validation {cv_seconds:.0f} s (5x{args.repeats}, --jobs {args.jobs})"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--species", default="human,mouse")
    parser.add_argument("--jobs", type=int, default=1, help="folds fitted at once")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--no-cv", action="store_true", help="speed figures only")
    parser.add_argument("--speed-jobs", type=int, default=-1, help="first use: folds at once")
    args = parser.parse_args()
    lines = []
    for species in args.species.split(","):
        first = len(lines)
        if not args.no_cv:
            lines.extend(_accuracy_lines(species, args))
        if not args.no_speed:
            first_use, cpu, predict_s = _speed(species, args.speed_jobs)
            lines.append(
                f"{species}: first-use training {first_use:.0f} s wall, {cpu:.0f} s CPU in "
                f"this process (--speed-jobs {args.speed_jobs}; target 120 s on 2 cores); "
                f"predict on 100 cells with the cached model {predict_s:.1f} s (target 10)"
            )
        print("\n".join(lines[first:]), flush=True)
    print("\n".join(["", "summary (seed-0 donor-grouped folds):", *lines]))


if __name__ == "__main__":
    main()
