"""Wall time of `ephys2tx synth` (target: 40 mouse cells, n-per-class 8, in <= 2 min on 2 cores).

Also prints, per subclass, IPFX features of the generated cells (median over cells) so the
phenotypes can be checked at a glance: AP width (ms), max firing rate (Hz), sag, input
resistance (MOhm), rheobase (pA), latency at rheobase (s).

    .venv/bin/python benchmarks/bench_synth.py [--species mouse] [--n-per-class 8] [--no-features]
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd


def ipfx_summary(out: Path, table: pd.DataFrame) -> pd.DataFrame:
    from ipfx.data_set_features import extract_data_set_features
    from ipfx.dataset.create import create_ephys_data_set
    from ipfx.qc_feature_extractor import sweep_qc_features

    logging.disable(logging.WARNING)
    rows = []
    for row in table.itertuples():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = create_ephys_data_set(nwb_file=str(out / row.file))
            ds.sweep_info = sweep_qc_features(ds)
            cell, sweeps, record, _, state, _ = extract_data_set_features(ds)
        ls = cell["long_squares"] or {}
        spikes = sweeps.get(record.get("rheobase_sweep_num"), {}).get("spikes", [])
        rows.append(
            {
                "subclass": row.subclass,
                "failed": bool(state["failed_fx"]),
                "width_ms": spikes[0]["width"] * 1e3 if spikes else np.nan,
                "max_rate_hz": max(
                    (s["avg_rate"] for s in ls.get("spiking_sweeps", [])), default=np.nan
                ),
                "sag": record.get("sag", np.nan),
                "ri_mohm": record.get("ri", np.nan),
                "tau_ms": record.get("tau", np.nan),
                "rheobase_pa": record.get("threshold_i_long_square", np.nan),
                "latency_s": (ls.get("rheobase_sweep") or {}).get("latency", np.nan),
            }
        )
    frame = pd.DataFrame(rows)
    return frame.groupby("subclass").agg(
        {"failed": "sum", **{c: "median" for c in frame.columns if c not in ("subclass", "failed")}}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--species", default="mouse")
    parser.add_argument("--n-per-class", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-features", action="store_true", help="skip the IPFX summary")
    args = parser.parse_args()
    exe = Path(sys.executable).with_name("ephys2tx")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cohort"
        cmd = [str(exe), "synth", "--species", args.species, "--n-per-class",
               str(args.n_per_class), "--out", str(out), "--seed", str(args.seed)]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - start
        table = pd.read_csv(out / "cohort.csv")
        size = sum(f.stat().st_size for f in out.glob("*.nwb")) / 1e6
        print(
            f"ephys2tx synth --species {args.species} --n-per-class {args.n_per_class}: "
            f"{len(table)} cells in {wall:.1f} s wall ({wall / len(table):.2f} s/cell), "
            f"{size:.0f} MB of NWB"
        )
        if not args.no_features:
            start = time.perf_counter()
            summary = ipfx_summary(out, table)
            print(
                f"IPFX extract_data_set_features on all cells: {time.perf_counter() - start:.1f} s"
            )
            print(summary.round(3).to_string())


if __name__ == "__main__":
    main()
