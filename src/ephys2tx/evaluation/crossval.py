"""Cross-validate any scikit-learn-style classifier on a cell table, fold by fold."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import pandas as pd
from rich.progress import Progress
from sklearn.base import clone

from .folds import Fold
from .metrics import fold_scores, summarize


@dataclass
class CVResult:
    """Out-of-fold predictions of one model; one row per (repeat, fold, test cell)."""

    predictions: pd.DataFrame
    classes: list[str]

    @property
    def scores(self) -> pd.DataFrame:
        return fold_scores(self.predictions)

    def summary(self, **context) -> dict:
        return summarize(self.predictions, self.classes, **context)


def cross_validate(
    estimator,
    cells: pd.DataFrame,
    label: str,
    folds: Sequence[Fold],
    features: list[str] | None = None,
    train_subset: Callable[[Fold], np.ndarray] | None = None,
    progress: bool | Progress = True,
    description: str = "cross-validating",
    on_fold: Callable[[object, Fold, pd.DataFrame], None] | None = None,
) -> CVResult:
    """Fit a clone of `estimator` on each fold's training cells, predict its test cells.

    `features` picks the columns handed to the estimator (default: all of them).
    `train_subset(fold) -> indices` can shrink training sets (learning curves) while the
    test cells stay the same. `on_fold(model, fold, X_test)` sees each fitted model (e.g.
    to keep attention weights). `progress` may be an existing rich Progress to add to.
    """
    X = cells[features] if features is not None else cells
    y = cells[label].to_numpy()
    classes = sorted(pd.unique(y[pd.notna(y)]))
    rows = []
    own_bar = not isinstance(progress, Progress)
    bar = Progress(disable=not progress, transient=True) if own_bar else progress
    with bar if own_bar else nullcontext():
        task = bar.add_task(description, total=len(folds))
        for fold in folds:
            train = train_subset(fold) if train_subset is not None else fold.train
            model = clone(estimator)
            model.fit(X.iloc[train], y[train])
            proba = model.predict_proba(X.iloc[fold.test])
            model_classes = list(model.classes_)
            part = pd.DataFrame(
                {
                    "specimen_id": cells["specimen_id"].to_numpy()[fold.test],
                    "repeat": fold.repeat,
                    "fold": fold.fold,
                    "true": y[fold.test],
                    "predicted": np.asarray(model_classes)[proba.argmax(axis=1)],
                }
            )
            for cls in classes:  # a class absent from a training set has probability 0
                part[f"p_{cls}"] = (
                    proba[:, model_classes.index(cls)] if cls in model_classes else 0.0
                )
            rows.append(part)
            if on_fold is not None:
                on_fold(model, fold, X.iloc[fold.test])
            bar.advance(task)
        if not own_bar:
            bar.remove_task(task)
    return CVResult(pd.concat(rows, ignore_index=True), classes)
