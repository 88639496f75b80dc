"""Subclass-level model selection for the reference model on seed-100 donor-grouped folds
(never the reported seed-0 folds): each fold fits every base model once, and every average
of their probabilities is scored; with `--stack`, also a logistic meta-learner on the
log-probabilities of the components (fitted on donor-grouped inner out-of-fold probabilities
of the outer training cells). Prints macro-F1 (mean over folds) per candidate:

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
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from ephys2tx.datasets.labels import DEFAULT_LABEL
from ephys2tx.evaluation.splits import DonorKFold, donor_kfold
from ephys2tx.models.conformal import out_of_fold_proba
from ephys2tx.models.reference import _aligned, make_base, model_inputs
from ephys2tx.reference import EXTRA_INPUTS, reference_cells, usable_features


def _log(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(p, 1e-4, 1.0))


def _stacked(kinds, test_proba, X_train, y_train, donors, seed) -> np.ndarray:
    """Test probabilities of a class-balanced logistic meta-learner on the components'
    log-probabilities, fitted on their inner donor-grouped out-of-fold probabilities."""
    cv = donor_kfold(5, seed)
    inner = [out_of_fold_proba(make_base(k, seed), X_train, y_train, donors, cv) for k in kinds]
    meta = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
    meta.fit(np.hstack([_log(p) for p in inner]), y_train)
    return meta.predict_proba(np.hstack([_log(test_proba[k]) for k in kinds]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--species", default="human")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--kinds", default="rf,hgb,hgb-slow,logreg")
    parser.add_argument("--stack", default="", help="comma-separated kinds to stack")
    parser.add_argument(
        "--pool", type=float, default=0.0,
        help="human only: add this share of the mouse cells (aligned label) to every training "
        "fold, with a species input; the human test cells are scored as before",
    )  # fmt: skip
    args = parser.parse_args()
    species, label = args.species, DEFAULT_LABEL[args.species]
    cells = reference_cells(species)
    features = usable_features(cells) + EXTRA_INPUTS[species]
    X = model_inputs(cells, features)
    extra_X, extra_y = X.iloc[:0], np.array([], dtype=object)
    if args.pool > 0:
        other = reference_cells("mouse")
        other = other[other[label].notna()].sample(frac=args.pool, random_state=args.seed)
        extra_X = model_inputs(other, features).assign(species_mouse=1.0)
        extra_y = other[label].to_numpy()
        X = X.assign(species_mouse=0.0)
    y = cells[label].to_numpy()
    classes = sorted(set(y))
    folds = DonorKFold(5, args.repeats, args.seed).folds(y, cells["donor"].to_numpy())
    kinds = args.kinds.split(",")
    combos = [c for r in range(1, len(kinds) + 1) for c in itertools.combinations(kinds, r)]
    scores: dict[str, list[float]] = {"+".join(c): [] for c in combos}
    stack = [k for k in args.stack.split(",") if k]
    if stack:
        scores["stack " + "+".join(stack)] = []
    seconds = dict.fromkeys(kinds, 0.0)
    donors = cells["donor"].to_numpy()
    for i, fold in enumerate(folds):
        proba = {}
        for kind in kinds:
            start = time.process_time()
            X_train = pd.concat([X.iloc[fold.train], extra_X])
            y_train = np.concatenate([y[fold.train], extra_y])
            model = clone(make_base(kind, args.seed)).fit(X_train, y_train)
            proba[kind] = _aligned(model.predict_proba(X.iloc[fold.test]), model.classes_, classes)
            seconds[kind] += time.process_time() - start
        for combo in combos:
            p = sum(proba[k] for k in combo) / len(combo)
            pred = np.asarray(classes)[p.argmax(axis=1)]
            scores["+".join(combo)].append(f1_score(y[fold.test], pred, average="macro"))
        if stack:
            p = _stacked(stack, proba, X.iloc[fold.train], y[fold.train], donors[fold.train],
                         args.seed + i)  # fmt: skip
            pred = np.asarray(classes)[p.argmax(axis=1)]
            scores["stack " + "+".join(stack)].append(f1_score(y[fold.test], pred, average="macro"))
        print(f"fold {i + 1}/{len(folds)}", flush=True)
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
