"""Recalibration of subclass probabilities, selected on seed-100 donor-grouped folds (never
the reported seed-0 folds). In each outer fold the subclass model is fitted on the training
cells, and every recalibration method is fitted on the donor-grouped out-of-fold
probabilities of those training cells only (inner 5 folds), then scored on the test cells:
top-label ECE (10 bins), log-loss, accuracy and macro-F1. Prints one line per method:

    EPHYS2TX_MIRROR=../shared/data OMP_NUM_THREADS=1 .venv/bin/python \
        benchmarks/select_calibration.py --species human --model reference --repeats 3

`--model reference` is the default model's subclass average, `rf` the flat forest.
Probabilities are cached in `--cache` so methods can be compared without refitting.
"""

from __future__ import annotations

import argparse
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize
from scipy.special import log_softmax
from sklearn.base import clone
from sklearn.metrics import f1_score, log_loss

from ephys2tx.datasets.labels import DEFAULT_LABEL
from ephys2tx.default_model import (
    DEFAULT_SETTINGS,
    EXTRA_INPUTS,
    default_training_cells,
    usable_features,
)
from ephys2tx.evaluation.splits import DonorKFold, donor_kfold
from ephys2tx.evaluation.trust import expected_calibration_error
from ephys2tx.models.ensemble import seeded, soft_vote
from ephys2tx.models.forest import make_forest
from ephys2tx.models.hierarchy import _aligned, model_inputs
from ephys2tx.trust.conformal import out_of_fold_proba
from ephys2tx.trust.temperature import Temperature, _columns, _log_p


# The candidates beside the temperature, kept here: only this selection uses them.
@dataclass
class LogitScaling:
    """p -> softmax(log p @ weights.T + bias): vector scaling (diagonal weights) or
    Dirichlet calibration (full weights)."""

    method: str
    weights: np.ndarray  # (k, k)
    bias: np.ndarray  # (k,)

    @classmethod
    def fit_vector(
        cls, proba: np.ndarray, y: ArrayLike, classes: Sequence[str], l2: float = 1e-3
    ) -> LogitScaling:
        """Diagonal weights and biases by L-BFGS on the log-loss (a small L2 pull of the
        weights towards 1 and the biases towards 0 keeps them finite on separable data)."""
        column = _columns(y, classes)
        logp = _log_p(proba)
        n, k = logp.shape
        onehot = np.eye(k)[column]

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w, b = theta[:k], theta[k:]
            z = log_softmax(logp * w + b, axis=1)
            resid = (np.exp(z) - onehot) / n
            value = -np.sum(onehot * z) / n + l2 * (np.sum((w - 1) ** 2) + np.sum(b**2))
            grad = np.concatenate(
                [(resid * logp).sum(axis=0) + 2 * l2 * (w - 1), resid.sum(axis=0) + 2 * l2 * b]
            )
            return value, grad

        theta0 = np.concatenate([np.ones(k), np.zeros(k)])
        best = minimize(loss, theta0, jac=True, method="L-BFGS-B")
        return cls("vector", np.diag(best.x[:k]), best.x[k:])

    @classmethod
    def fit_dirichlet(
        cls, proba: np.ndarray, y: ArrayLike, classes: Sequence[str], C: float = 1.0
    ) -> LogitScaling:
        """Full weights: scikit-learn's multinomial logistic regression on log p."""
        from sklearn.linear_model import LogisticRegression

        column = _columns(y, classes)
        k = len(classes)
        model = LogisticRegression(C=C, max_iter=2000).fit(_log_p(proba), column)
        weights, bias = np.zeros((k, k)), np.full(k, -30.0)  # an unseen class: never
        weights[model.classes_] = model.coef_ if k > 2 else np.vstack([-model.coef_, model.coef_])
        bias[model.classes_] = (
            model.intercept_ if k > 2 else [-model.intercept_[0], model.intercept_[0]]
        )
        return cls("dirichlet", weights, bias)

    def apply(self, proba: np.ndarray) -> np.ndarray:
        """Recalibrated probabilities; rows sum to 1."""
        return np.exp(log_softmax(_log_p(proba) @ self.weights.T + self.bias, axis=1))


Recalibration = Temperature | LogitScaling
RECALIBRATIONS = ("none", "temperature", "vector", "dirichlet")


def fit_recalibration(
    method: str, proba: np.ndarray, y: ArrayLike, classes: Sequence[str]
) -> Recalibration:
    """Fit one of `RECALIBRATIONS` on out-of-fold probabilities (columns = `classes`)."""
    if method == "none":
        return Temperature(1.0)
    if method == "temperature":
        return Temperature.fit(proba, y, classes)
    if method == "vector":
        return LogitScaling.fit_vector(proba, y, classes)
    if method == "dirichlet":
        return LogitScaling.fit_dirichlet(proba, y, classes)
    raise ValueError(f"unknown recalibration {method!r}; choose one of {RECALIBRATIONS}")


def fold_probabilities(species: str, model_kind: str, repeats: int, seed: int) -> list[dict]:
    """Per outer fold: inner out-of-fold probabilities of the training cells, the test
    cells' probabilities, and both label vectors."""
    label = DEFAULT_LABEL[species]
    cells = default_training_cells(species)
    if model_kind == "reference":
        features = usable_features(cells) + EXTRA_INPUTS[species]
        estimator = seeded(soft_vote(DEFAULT_SETTINGS[species].subclass), seed, 1)
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
