"""Class-conditional (Mondrian) conformal prediction sets from stored calibration scores.

Why: a probability alone does not say how often the true class is missed. A Mondrian
conformal set holds every class whose p-value exceeds alpha, where each class is compared
only with calibration cells of that class; so every class, rare ones included, is covered
with probability >= 1 - alpha (for exchangeable cells).

The p-values come from crepes' `ConformalClassifier` (one Mondrian category per class, as
its `WrapClassifier(class_cond=True)` does). crepes calibrates on a held-out split; here
the calibration scores are donor-grouped out-of-fold scores of the training cells
(`out_of_fold_proba`), so no cells are lost to a calibration split and no donor is scored
by a model that saw it. Scores are stored, so any alpha works later. p-values are not
smoothed: the same cell always gets the same set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from crepes import ConformalClassifier
from joblib import Parallel, delayed
from numpy.typing import ArrayLike
from sklearn.base import clone

from ..errors import Ephys2txError
from ..threads import limit, predicting


@dataclass
class MondrianConformal:
    """Class-conditional split-conformal sets from stored out-of-fold calibration scores."""

    classes: list[str]  # column order of every probability matrix it is given
    scores: np.ndarray  # (n_cal,) nonconformity 1 - p(true class), out of fold
    labels: np.ndarray  # (n_cal,) true class of each calibration cell

    @classmethod
    def fit(cls, proba: np.ndarray, y: ArrayLike, classes: Sequence[str]) -> MondrianConformal:
        """Calibrate from probabilities (columns = `classes`) of cells with known classes `y`."""
        classes = [str(c) for c in classes]
        y = np.asarray(y).astype(str)
        proba = np.asarray(proba, float)
        if proba.shape != (len(y), len(classes)):
            raise Ephys2txError(
                f"calibration probabilities have shape {proba.shape}; "
                f"expected ({len(y)}, {len(classes)})"
            )
        unknown = sorted(set(y) - set(classes))
        if unknown:
            raise Ephys2txError(f"calibration labels {unknown} are not model classes")
        index = {c: i for i, c in enumerate(classes)}
        column = np.array([index[v] for v in y], dtype=int)
        scores = 1.0 - proba[np.arange(len(y)), column]
        return cls(classes, scores, y)

    def counts(self) -> dict[str, int]:
        """Calibration cells per class: a class with n cells can be excluded only at alpha
        >= 1/(n+1)."""
        return {c: int((self.labels == c).sum()) for c in self.classes}

    def p_values(self, proba: np.ndarray) -> np.ndarray:
        """(n, k) p-value of each candidate class, against that class's calibration cells."""
        proba = self._check(proba)
        cc = ConformalClassifier().fit(self.scores, bins=self.labels)
        alphas = 1.0 - proba
        out = np.empty_like(alphas)
        for k, cls in enumerate(self.classes):
            if not (self.labels == cls).any():  # never calibrated: cannot be excluded
                out[:, k] = 1.0
                continue
            bins = np.full(len(alphas), cls, dtype=self.labels.dtype)
            out[:, k] = cc.predict_p(alphas[:, [k]], bins, smoothing=False)[:, 0]
        return out

    def set_mask(self, proba: np.ndarray, alpha: float = 0.1, keep_top: bool = True) -> np.ndarray:
        """(n, k) True where the class is in the set at level `alpha`.

        With `keep_top`, a cell whose set would be empty keeps its most probable class (the
        caller can find those cells with `keep_top=False`)."""
        alpha = check_alpha(alpha)
        proba = self._check(proba)
        mask = self.p_values(proba) > alpha
        if keep_top:
            empty = ~mask.any(axis=1)
            mask[empty, proba[empty].argmax(axis=1)] = True
        return mask

    def predict_set(self, proba: np.ndarray, alpha: float = 0.1) -> list[list[str]]:
        """The classes of each cell's set, most probable first."""
        proba = self._check(proba)
        mask = self.set_mask(proba, alpha)
        order = np.argsort(-proba, axis=1, kind="stable")
        return [[self.classes[k] for k in row if m[k]] for row, m in zip(order, mask, strict=True)]

    def to_dict(self) -> dict:
        """JSON-ready form (stored beside a model)."""
        return {
            "method": "mondrian (class-conditional) split conformal, nonconformity 1 - p",
            "classes": list(self.classes),
            "scores": [float(s) for s in self.scores],
            "labels": [str(v) for v in self.labels],
        }

    @classmethod
    def from_dict(cls, d: dict) -> MondrianConformal:
        """Read back what `to_dict` wrote."""
        try:
            return cls(
                [str(c) for c in d["classes"]],
                np.asarray(d["scores"], float),
                np.asarray(d["labels"]).astype(str),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise Ephys2txError(
                f"stored calibration is malformed ({exc}); retrain the model"
            ) from exc

    def _check(self, proba: np.ndarray) -> np.ndarray:
        proba = np.asarray(proba, float)
        if proba.ndim != 2 or proba.shape[1] != len(self.classes):
            raise Ephys2txError(
                f"probabilities have shape {proba.shape}; expected (n, {len(self.classes)})"
            )
        return proba


def check_alpha(alpha: float) -> float:
    """alpha must lie strictly between 0 and 1."""
    if not 0.0 < float(alpha) < 1.0:
        raise Ephys2txError(f"--alpha {alpha} must lie strictly between 0 and 1, e.g. 0.1")
    return float(alpha)


def _fold_proba(
    estimator, X: pd.DataFrame, y: np.ndarray, train, test, classes, alone: bool = False
):
    """One fold's test probabilities; `alone`: one thread (folds run side by side). The
    prediction sums a forest's votes in one order (`threads.predicting`), so the same
    cells give the same scores from run to run, to the last bit."""
    with limit(1 if alone else None):
        model = clone(estimator).fit(X.iloc[train], y[train])
    with predicting(1 if alone else None):
        proba = model.predict_proba(X.iloc[test])
    out = np.zeros((len(test), len(classes)))
    for j, cls in enumerate(model.classes_):  # a class absent from training keeps 0
        out[:, classes.index(str(cls))] = proba[:, j]
    return test, out


def out_of_fold_proba(
    estimator, X: pd.DataFrame, y: ArrayLike, groups: ArrayLike, cv, n_jobs: int = 1
) -> np.ndarray:
    """Donor-grouped out-of-fold probabilities (columns = sorted classes), each cell once.

    `cv` is a scikit-learn splitter with `split(X, y, groups)` whose test folds partition
    the cells (e.g. `ephys2tx.evaluation.splits.donor_kfold`).
    """
    y = np.asarray(y).astype(str)
    classes = sorted(set(y))
    splits = list(cv.split(np.zeros(len(y)), y, np.asarray(groups)))
    seen = np.concatenate([test for _, test in splits])
    if len(seen) != len(y) or len(np.unique(seen)) != len(y):
        raise Ephys2txError("the calibration splitter must score every cell exactly once")
    out = np.full((len(y), len(classes)), np.nan)
    # folds in threads of this process (scikit-learn's trees release the GIL): no worker
    # process can outlive a killed parent; each fold then fits on one thread
    fitted = Parallel(n_jobs=n_jobs, backend="threading")(
        delayed(_fold_proba)(estimator, X, y, train, test, classes, n_jobs != 1)
        for train, test in splits
    )
    for test, proba in fitted:
        out[test] = proba
    return out
