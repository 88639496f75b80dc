"""Recalibration of subclass probabilities, selected on seed-100 donor-grouped folds (never
the reported seed-0 folds). In each outer fold the subclass model is fitted on the training
cells, and every recalibration method is fitted on the donor-grouped out-of-fold
probabilities of those training cells only (inner 5 folds), then scored on the test cells:
top-label ECE (10 bins), log-loss, accuracy and macro-F1. Prints one line per method:

    EPHYS2TX_MIRROR=../shared/data OMP_NUM_THREADS=1 .venv/bin/python \
        benchmarks/select_calibration.py --species human --model reference --repeats 3

`--model reference` is the reference model's subclass average, `rf` the flat forest.
Probabilities are cached in `--cache` so methods can be compared without refitting.
"""

from __future__ import annotations

import argparse
import pickle
import time
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.metrics import f1_score, log_loss

from ephys2tx.datasets.labels import DEFAULT_LABEL
from ephys2tx.evaluation.splits import DonorKFold, donor_kfold
from ephys2tx.evaluation.trust import expected_calibration_error
from ephys2tx.models.calibration import RECALIBRATIONS, fit_recalibration
from ephys2tx.models.conformal import out_of_fold_proba
from ephys2tx.models.forest import make_forest
from ephys2tx.models.reference import _aligned, make_base, model_inputs
from ephys2tx.reference import DEFAULT_SETTINGS, EXTRA_INPUTS, reference_cells, usable_features


def fold_probabilities(species: str, model_kind: str, repeats: int, seed: int) -> list[dict]:
    """Per outer fold: inner out-of-fold probabilities of the training cells, the test
    cells' probabilities, and both label vectors."""
    label = DEFAULT_LABEL[species]
    cells = reference_cells(species)
    if model_kind == "reference":
        features = usable_features(cells) + EXTRA_INPUTS[species]
        estimator = make_base(DEFAULT_SETTINGS[species]["subclass_model"], seed)
    else:
        features = usable_features(cells)
        estimator = make_forest(seed, n_jobs=1)
    X = model_inputs(cells, features)
    y = cells[label].astype(str).to_numpy()
    donors = cells["donor"].to_numpy()
    classes = sorted(set(y))
    out = []
    start = time.perf_counter()
    for fold in DonorKFold(5, repeats, seed).folds(y, donors):
        tr, te = fold.train, fold.test
        inner = donor_kfold(5, seed + 1000 * fold.repeat + fold.fold)
        oof = out_of_fold_proba(clone(estimator), X.iloc[tr], y[tr], donors[tr], inner)
        model = clone(estimator).fit(X.iloc[tr], y[tr])
        test = _aligned(model.predict_proba(X.iloc[te]), model.classes_, classes)
        out.append({"oof": oof, "y_train": y[tr], "test": test, "y_test": y[te],
                    "classes": classes, "repeat": fold.repeat, "fold": fold.fold})  # fmt: skip
        print(f"fold {fold.repeat}.{fold.fold}: {time.perf_counter() - start:.0f} s", flush=True)
    return out


def score(folds: list[dict], method: str) -> dict:
    """ECE over all test rows pooled, log-loss, accuracy, mean per-fold macro-F1."""
    p_all, y_all, f1s = [], [], []
    for f in folds:
        classes = f["classes"]
        cal = fit_recalibration(method, f["oof"], f["y_train"], classes)
        p = cal.apply(f["test"])
        pred = np.asarray(classes)[p.argmax(axis=1)]
        f1s.append(f1_score(f["y_test"], pred, average="macro"))
        p_all.append(p)
        y_all.append(f["y_test"])
    p, y = np.vstack(p_all), np.concatenate(y_all)
    classes = folds[0]["classes"]
    pred = np.asarray(classes)[p.argmax(axis=1)]
    correct = pred == y
    return {
        "ece": expected_calibration_error(p.max(axis=1), correct),
        "log_loss": log_loss(y, p, labels=classes),
        "accuracy": float(correct.mean()),
        "macro_f1": float(np.mean(f1s)),
        "mean_top_p": float(p.max(axis=1).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--species", default="human")
    parser.add_argument("--model", default="reference", choices=["reference", "rf"])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/ephys2tx-select-calibration"))
    args = parser.parse_args()
    path = args.cache / f"{args.species}-{args.model}-{args.seed}-{args.repeats}.pkl"
    if path.is_file():
        folds = pickle.loads(path.read_bytes())
    else:
        folds = fold_probabilities(args.species, args.model, args.repeats, args.seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(folds))
    print(f"{args.species} {args.model}, seed-{args.seed} donor-grouped 5x{args.repeats}, nested")
    for method in RECALIBRATIONS:
        s = score(folds, method)
        print(f"  {method:12} ECE {s['ece']:.3f}  log-loss {s['log_loss']:.3f}  accuracy "
              f"{s['accuracy']:.3f}  macro-F1 {s['macro_f1']:.3f}  mean top p "
              f"{s['mean_top_p']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
