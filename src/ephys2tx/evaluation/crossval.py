"""Cross-validate any scikit-learn-style classifier on a cell table, fold by fold."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from rich.progress import Progress
from sklearn.base import clone

from ..threads import limit, predicting
from .metrics import fold_scores, summarize
from .splits import Fold


@dataclass
class CVResult:
    """Out-of-fold predictions of one model; one row per (repeat, fold, test cell)."""

    predictions: pd.DataFrame
    classes: list[str]
    fold_outputs: list = field(default_factory=list)  # what `on_fold` returned, fold by fold
    trust: object = None  # a TrustEvaluation when calibration was nested (evaluation.trust)

    @property
    def scores(self) -> pd.DataFrame:
        return fold_scores(self.predictions)

    def summary(self, **context) -> dict:
        return summarize(self.predictions, self.classes, **context)


def _fit_fold(estimator, X: pd.DataFrame, y: np.ndarray, train, fold: Fold, on_fold, alone: bool):
    """Fit a clone on `train`, predict the fold's test cells; `on_fold` runs beside the model.
    Under the thread policy; `alone`: one thread (folds run side by side)."""
    model = clone(estimator)
    with limit(1 if alone else None):
        model.fit(X.iloc[train], y[train])
    X_test = X.iloc[fold.test]
    with predicting(1 if alone else None):
        extra = on_fold(model, fold, X_test) if on_fold is not None else None
        proba = model.predict_proba(X_test)
    return list(model.classes_), proba, extra


@dataclass
class CVTask:
    """One cross-validation: `estimator` on `folds` of a cell table (see `cross_validate`)."""

    estimator: object
    cells: pd.DataFrame
    label: str
    folds: Sequence[Fold]
    features: list[str] | None = None
    train_subset: Callable[[Fold], np.ndarray] | None = None
    on_fold: Callable[[object, Fold, pd.DataFrame], object] | None = None


def cross_validate(
    estimator,
    cells: pd.DataFrame,
    label: str,
    folds: Sequence[Fold],
    features: list[str] | None = None,
    train_subset: Callable[[Fold], np.ndarray] | None = None,
    progress: bool | Progress = True,
    description: str = "cross-validating",
    on_fold: Callable[[object, Fold, pd.DataFrame], object] | None = None,
    n_jobs: int = 1,
) -> CVResult:
    """Fit a clone of `estimator` on each fold's training cells, predict its test cells.

    `features` picks the columns handed to the estimator (default: all of them).
    `train_subset(fold) -> indices` can shrink training sets (learning curves) while the
    test cells stay the same. `on_fold(model, fold, X_test)` sees each fitted model (e.g.
    to read attention weights); its return values are kept in `fold_outputs`. `n_jobs`
    folds are fitted at once in worker processes (joblib; -1 = all cores); every fit is
    seeded, so the result does not depend on it. `progress` may be an existing rich Progress.
    """
    task = CVTask(estimator, cells, label, folds, features, train_subset, on_fold)
    return cross_validate_many([task], progress, description, n_jobs)[0]


def cross_validate_many(
    tasks: Sequence[CVTask],
    progress: bool | Progress = True,
    description: str = "cross-validating",
    n_jobs: int = 1,
) -> list[CVResult]:
    """Several cross-validations whose fold fits share one pool of `n_jobs` workers.

    Why: a cross-validation of 3 folds on 2 workers leaves one idle for a third of its
    time; fits of several models and training-set sizes dealt out together keep both
    busy. Each fit is seeded as in `cross_validate`, so the results are the same.
    """
    inputs = [
        (task.cells[task.features] if task.features is not None else task.cells,
         task.cells[task.label].to_numpy())
        for task in tasks
    ]  # fmt: skip
    outputs: list[list] = [[] for _ in tasks]
    own_bar = not isinstance(progress, Progress)
    bar = Progress(disable=not progress, transient=True) if own_bar else progress
    with bar if own_bar else nullcontext():
        bar_task = bar.add_task(description, total=sum(len(t.folds) for t in tasks))
        calls = (
            delayed(_fit_fold)(
                task.estimator,
                X,
                y,
                task.train_subset(fold) if task.train_subset is not None else fold.train,
                fold,
                task.on_fold,
                n_jobs != 1,
            )
            for task, (X, y) in zip(tasks, inputs, strict=True)
            for fold in task.folds
        )
        fitted = Parallel(n_jobs=n_jobs, return_as="generator")(calls)
        owners = (i for i, task in enumerate(tasks) for _ in task.folds)
        for i, out in zip(owners, fitted, strict=True):
            outputs[i].append(out)
            bar.advance(bar_task)
        if not own_bar:
            bar.remove_task(bar_task)
    return [
        _collect(task, y, out) for task, (_, y), out in zip(tasks, inputs, outputs, strict=True)
    ]


def _collect(task: CVTask, y: np.ndarray, fitted: list) -> CVResult:
    """One CVResult from the (classes, probabilities, extra) of each fold, in fold order."""
    classes = sorted(pd.unique(y[pd.notna(y)]))
    ids = task.cells["specimen_id"].to_numpy()
    rows, extras = [], []
    for fold, (model_classes, proba, extra) in zip(task.folds, fitted, strict=True):
        part = pd.DataFrame(
            {
                "specimen_id": ids[fold.test],
                "repeat": fold.repeat,
                "fold": fold.fold,
                "true": y[fold.test],
                "predicted": np.asarray(model_classes)[proba.argmax(axis=1)],
            }
        )
        for cls in classes:  # a class absent from a training set has probability 0
            part[f"p_{cls}"] = proba[:, model_classes.index(cls)] if cls in model_classes else 0.0
        rows.append(part)
        extras.append(extra)
    return CVResult(pd.concat(rows, ignore_index=True), classes, extras)
