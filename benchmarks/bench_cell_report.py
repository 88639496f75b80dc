"""Per-cell report at batch size: build and draw N cards from real human cells, then print the
page size, the drawing time and how long headless Chromium takes to load the page.

A forest is trained on the human cells of most donors and predicts the cells of the
held-out donors (the first donors in sorted order until N cells). Until `predict` gives them,
the prediction set (classes up to 90% cumulative probability), flags, novelty and the
nearest training cells (NaN-aware Euclidean distance on robust-scaled features) are
stand-ins computed here; they exercise the page, they are not the calibrated method.
Every card gets the rheobase and hero sweeps of one of the real recordings in the data
mirror (cycled), so the page carries a sweep figure per cell as a batch of recordings would.

    EPHYS2TX_MIRROR=../shared/data .venv/bin/python benchmarks/bench_cell_report.py --cells 200
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics.pairwise import nan_euclidean_distances

from ephys2tx.datasets.cells import build_cells, usable_features
from ephys2tx.features.key_sweeps import key_sweeps
from ephys2tx.models.forest import make_forest
from ephys2tx.recordings.read import read_recording
from ephys2tx.report.cell_page import write_cell_report
from ephys2tx.report.cells import build_cards

MIRROR = Path(
    os.environ.get("EPHYS2TX_MIRROR", Path(__file__).resolve().parents[2] / "shared/data")
)
CHROMIUM = Path("/usr/bin/chromium")
TIMING = """<script>window.addEventListener('load',()=>setTimeout(()=>{
const n=performance.getEntriesByType('navigation')[0];const p=document.createElement('pre');
p.id='timing';p.textContent=JSON.stringify({dom:n.domContentLoadedEventEnd,load:n.loadEventEnd,
decoded:[...document.images].filter(i=>i.complete&&i.naturalWidth>0).length});
document.body.appendChild(p);},0));</script>"""


def stand_in_columns(pred: pd.DataFrame, cells: pd.DataFrame, features: list[str]) -> None:
    """Prediction set, flags, confident (stand-ins, see the module docstring)."""
    proba = pred.filter(like="p_").to_numpy()
    classes = [c[2:] for c in pred.filter(like="p_").columns]
    sets, flags = [], []
    for row, p in enumerate(proba):
        order = np.argsort(-p)
        k = int(np.searchsorted(np.cumsum(p[order]), 0.9) + 1)
        sets.append("|".join(classes[i] for i in order[:k]))
        measured = cells.loc[row, features].notna().mean()
        flags.append("few_features" if measured < 0.5 else "")
    pred["prediction_set"] = sets
    pred["flags"] = flags
    pred["confident"] = [s.count("|") == 0 and not f for s, f in zip(sets, flags, strict=True)]


def neighbours(reference: pd.DataFrame, cells: pd.DataFrame, features: list[str], k: int = 5):
    """NaN-aware Euclidean distances on features scaled by the reference median and IQR."""
    ref = reference[features].to_numpy(float)
    centre = np.nanmedian(ref, axis=0)
    scale = np.nanpercentile(ref, 75, axis=0) - np.nanpercentile(ref, 25, axis=0)
    scale[~(scale > 0)] = 1.0
    d = nan_euclidean_distances(
        (cells[features].to_numpy(float) - centre) / scale, (ref - centre) / scale
    )
    d = np.where(np.isfinite(d), d, np.inf)
    idx = np.argsort(d, axis=1)[:, :k]
    dref = nan_euclidean_distances((ref - centre) / scale)
    np.fill_diagonal(dref, np.inf)
    typical = np.sort(np.nanmin(dref, axis=1))
    novelty = np.searchsorted(typical, np.take_along_axis(d, idx[:, :1], 1)[:, 0]) / len(typical)
    return idx, np.take_along_axis(d, idx, 1), novelty


def chromium_seconds(page: Path, profile: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return time.perf_counter() - start


def load_timing(page: Path, workdir: Path) -> dict:
    """Navigation timing (ms) and decoded images, read back from the DOM after the load event."""
    probed = workdir / f"timed-{page.name}"
    probed.write_text(page.read_text().replace("</body>", TIMING + "</body>"))
    done = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={workdir / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
         probed.as_uri()],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    found = re.search(r'<pre id="timing">(.*?)</pre>', done.stdout, re.S)
    return json.loads(html.unescape(found.group(1))) if found else {}


def median_timing(page: Path, workdir: Path, runs: int = 5) -> dict:
    """Median over `runs` loads of each navigation figure."""
    timings = [load_timing(page, workdir) for _ in range(runs)]
    return {key: float(np.median([t[key] for t in timings])) for key in timings[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None, help="keep the page here")
    args = parser.parse_args()

    cells, _ = build_cells("human")
    cells = cells[cells["label"].notna()].reset_index(drop=True)
    features = usable_features(cells)
    donors = sorted(cells["donor"].unique())
    counts = cells.groupby("donor").size().reindex(donors).cumsum()
    held = counts.index[: int(np.searchsorted(counts.to_numpy(), args.cells)) + 1]
    test = cells["donor"].isin(held)
    reference = cells[~test].reset_index(drop=True)
    new = cells[test].head(args.cells).reset_index(drop=True)
    forest = make_forest(0, n_estimators=200, n_jobs=1).fit(reference[features], reference["label"])
    proba = forest.predict_proba(new[features])
    pred = pd.DataFrame({"specimen_id": new["specimen_id"]})
    pred["predicted"] = forest.classes_[proba.argmax(1)]
    for i, cls in enumerate(forest.classes_):
        pred[f"p_{cls}"] = proba[:, i]
    stand_in_columns(pred, new, features)
    idx, dist, novelty = neighbours(reference, new, features)
    pred["novelty"] = novelty
    pred.loc[novelty > 0.95, "flags"] += ";novel"
    pred["flags"] = pred["flags"].str.strip(";")
    recordings = [read_recording(p) for p in sorted((MIRROR / "recordings").rglob("*.abf"))]
    swept = [key_sweeps(r) for r in recordings]
    sweeps = {row: swept[row % len(swept)] for row in range(len(new))}

    start = time.perf_counter()
    cards = build_cards(pred, new, features, reference, "label", idx, dist, sweeps)
    built = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        page = args.out or tmp / "cells.html"
        start, cpu = time.perf_counter(), time.process_time()
        info = {"model": "rf (benchmark)", "species": "human", "training cells": len(reference)}
        write_cell_report(page, cards, f"{len(cards)} human cells", info, progress=True)
        drawn, drawn_cpu = time.perf_counter() - start, time.process_time() - cpu
        size = page.stat().st_size
        eager = tmp / "eager.html"
        eager.write_text(page.read_text().replace("data-src=", "src="))
        empty = tmp / "empty.html"
        empty.write_text("<!doctype html><html><body>empty</body></html>")
        baseline = min(chromium_seconds(empty, tmp / "p0") for _ in range(2))
        lazy_s = min(chromium_seconds(page, tmp / "p1") for _ in range(2))
        eager_s = min(chromium_seconds(eager, tmp / "p2") for _ in range(2))
        lazy_t, eager_t = (median_timing(p, tmp) for p in (page, eager))
    print(f"cells: {len(cards)} (held-out donors {len(held)}, training cells {len(reference)})")
    print(
        f"build cards: {built:.2f} s; draw + write page: {drawn:.1f} s wall, {drawn_cpu:.1f} s CPU "
        f"({drawn_cpu / len(cards) * 1000:.0f} ms CPU per card)"
    )
    print(f"page size: {size / 1e6:.2f} MB ({size / len(cards) / 1e3:.1f} kB per card)")
    print(
        f"chromium --dump-dom wall time: empty page {baseline:.2f} s, report {lazy_s:.2f} s (cards closed, images decoded on opening), same page with every image eager {eager_s:.2f} s"
    )
    for name, t in (("cards closed", lazy_t), ("every image eager", eager_t)):
        print(
            f"navigation timing (median of 5 loads), {name}: DOMContentLoaded {t['dom']:.0f} ms, "
            f"load event {t['load']:.0f} ms, {t['decoded']:.0f} images decoded at load"
        )


if __name__ == "__main__":
    main()
