"""Random-forest accuracy on the real tables (donor-grouped, 5 folds x 3 repeats) and the
wall time of one `ephys2tx evaluate rf` run. Prints its figures; run with the data mirror:

    EPHYS2TX_MIRROR=../shared/data .venv/bin/python benchmarks/bench_forest.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = [  # species, label, the target macro-F1
    ("human", "label", 0.78),
    ("mouse", "label5", 0.86),
    ("mouse", "label", 0.93),
]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for species, label, target in TARGETS:
            out = Path(tmp) / f"{species}-{label}"
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "ephys2tx.cli", "evaluate", "rf", "--species", species,
                 "--labels", label, "--inputs", "both", "--folds", "5", "--repeats", "3", "--no-trust",
                 "--out", str(out)],
                check=True,
            )  # fmt: skip
            seconds = time.perf_counter() - start
            for inputs in ("raw", "spca"):
                m = json.loads((out / inputs / "metrics.json").read_text())["macro_f1"]
                rows.append((species, label, inputs, m["mean"], m["sd"], target, seconds))
    print(
        f"{'species':7} {'label':6} {'inputs':6} {'macro-F1':>8} {'sd':>6} {'target':>6} {'pass':>5} {'run s':>6}"
    )
    for species, label, inputs, mean, sd, target, seconds in rows:
        ok = "yes" if inputs != "raw" or mean >= target else "NO"
        print(
            f"{species:7} {label:6} {inputs:6} {mean:8.3f} {sd:6.3f} {target:6.2f} {ok:>5} {seconds:6.0f}"
        )
    print("'run s' is the wall time of one `ephys2tx evaluate rf` run (raw + sPCA, 15 folds).")


if __name__ == "__main__":
    main()
