"""Family BiLSTM: wall time of one fit on all mouse cells (--threads, default 1), and mouse 5-class /
human 4-class macro-F1 on donor-grouped folds (5 folds x 3 repeats). Prints its figures:

    EPHYS2TX_MIRROR=../shared/data .venv/bin/python benchmarks/bench_bilstm.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from ephys2tx.datasets.cells import build_cells
from ephys2tx.evaluation.splits import DonorKFold
from ephys2tx.evaluation.transfer_study import cross_validate_attention
from ephys2tx.models.bilstm import BiLSTMClassifier
from ephys2tx.study.outputs import write_attention

TARGETS = {("mouse", "label5"): 0.86, ("human", "label"): None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--members", type=int, default=1)
    parser.add_argument("--species", default="mouse,human")
    parser.add_argument("--out", type=Path, default=Path("bench-bilstm"))
    parser.add_argument("--skip-cv", action="store_true")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (2 oversubscribe a shared box)"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    mouse, _ = build_cells("mouse")
    if not args.skip_timing:
        time_one_fit(mouse, args.threads)
    if args.skip_cv:
        return

    rows = []
    for species in args.species.split(","):
        label = "label5" if species == "mouse" else "label"
        cells = mouse if species == "mouse" else build_cells("human")[0]
        cells = cells[cells[label].notna()].reset_index(drop=True)
        folds = DonorKFold(5, args.repeats).cell_folds(cells, label)
        batch = 128 if species == "mouse" else 64
        est = BiLSTMClassifier(n_members=args.members, batch_size=batch)
        start = time.perf_counter()
        result, attention = cross_validate_attention(est, cells, label, folds)
        seconds = time.perf_counter() - start
        metrics = result.summary(
            model="bilstm", species=species, label=label, protocol="grouped",
            n_repeats=args.repeats, n_members=args.members,
        )  # fmt: skip
        (args.out / f"metrics_{species}_{label}.json").write_text(json.dumps(metrics, indent=2))
        write_attention(args.out, f"attention_{species}_{label}", attention, f"{species} {label}")
        f1 = metrics["macro_f1"]
        rows.append((species, label, f1, TARGETS.get((species, label)), seconds, len(folds)))
    print(
        f"{'species':7} {'label':6} {'macro-F1':>8} {'sd':>6} {'95% CI':>13} {'target':>6} {'s/fold':>6}"
    )
    for species, label, f1, target, seconds, n in rows:
        ci = f"{f1['ci95'][0]:.3f}-{f1['ci95'][1]:.3f}"
        tgt = f"{target:.2f}" if target else "-"
        print(
            f"{species:7} {label:6} {f1['mean']:8.3f} {f1['sd']:6.3f} {ci:>13} {tgt:>6} {seconds / n:6.1f}"
        )


def time_one_fit(mouse, threads: int) -> None:
    """Wall and CPU time of one fit on all mouse cells (the <= 60 s target)."""
    start, cpu = time.perf_counter(), time.process_time()
    model = BiLSTMClassifier(n_threads=threads, batch_size=128)
    model.fit(mouse, mouse["label5"].to_numpy())
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(
        f"one fit on all {len(mouse)} mouse cells (label5, 1 member, {threads} thread(s)): "
        f"{seconds:.1f} s wall, {cpu:.1f} s CPU (target <= 60 s on 2 cores; "
        f"best epoch {model.history_[0]['best_epoch']}, load average {os.getloadavg()[0]:.1f})",
        flush=True,
    )


if __name__ == "__main__":
    main()
