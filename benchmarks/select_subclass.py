"""Subclass-level model selection for the reference model on seed-100 donor-grouped folds
(never the reported seed-0 folds): each fold fits every base model once, and every average
of their probabilities is scored. Prints macro-F1 (mean over folds) per candidate:

    EPHYS2TX_MIRROR=../shared/data OMP_NUM_THREADS=1 .venv/bin/python \
        benchmarks/select_subclass.py --species human --repeats 3
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import f1_score

from ephys2tx.datasets.labels import DEFAULT_LABEL
from ephys2tx.evaluation.splits import DonorKFold
from ephys2tx.models.reference import _aligned, make_base, model_inputs
from ephys2tx.reference import EXTRA_INPUTS, reference_cells, usable_features


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--species", default="human")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--kinds", default="rf,hgb,hgb-slow,logreg")
    args = parser.parse_args()
    species, label = args.species, DEFAULT_LABEL[args.species]
    cells = reference_cells(species)
    X = model_inputs(cells, usable_features(cells) + EXTRA_INPUTS[species])
    y = cells[label].to_numpy()
    classes = sorted(set(y))
    folds = DonorKFold(5, args.repeats, args.seed).folds(y, cells["donor"].to_numpy())
    kinds = args.kinds.split(",")
    combos = [c for r in range(1, len(kinds) + 1) for c in itertools.combinations(kinds, r)]
    scores: dict[str, list[float]] = {"+".join(c): [] for c in combos}
    seconds = dict.fromkeys(kinds, 0.0)
    for fold in folds:
        proba = {}
        for kind in kinds:
            start = time.process_time()
            model = clone(make_base(kind, args.seed)).fit(X.iloc[fold.train], y[fold.train])
            proba[kind] = _aligned(model.predict_proba(X.iloc[fold.test]), model.classes_, classes)
            seconds[kind] += time.process_time() - start
        for combo in combos:
            p = sum(proba[k] for k in combo) / len(combo)
            pred = np.asarray(classes)[p.argmax(axis=1)]
            scores["+".join(combo)].append(f1_score(y[fold.test], pred, average="macro"))
    table = pd.DataFrame(
        {"macro_f1": {k: np.mean(v) for k, v in scores.items()},
         "sd": {k: np.std(v, ddof=1) for k, v in scores.items()}}
    ).sort_values("macro_f1", ascending=False)  # fmt: skip
    print(
        f"{species} subclass, seed-{args.seed} donor-grouped 5x{args.repeats}, {len(cells)} cells"
    )
    print(table.round(3).to_string())
    print("CPU s per fit: " + ", ".join(f"{k} {v / len(folds):.1f}" for k, v in seconds.items()))


if __name__ == "__main__":
    main()
