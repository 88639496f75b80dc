"""Cross-validate any scikit-learn-style classifier on a cell table, fold by fold."""

from __future__ import annotations

from collections.abc import Sequence
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
    train_subset=None,
    progress: bool = True,
    description: str = "cross-validating",
) -> CVResult:
    """Fit a clone of `estimator` on each fold's training cells, predict its test cells.

    `features` picks the columns handed to the estimator (default: all but identifiers).
    `train_subset(fold) -> indices` can shrink training sets (learning curves) while the
    test cells stay the same.
    """
    X = cells[features] if features is not None else cells
    y = cells[label].to_numpy()
    classes = sorted(pd.unique(y[pd.notna(y)]))
    rows = []
    with Progress(disable=not progress, transient=True) as bar:
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
            for cls in classes:
                part[f"p_{cls}"] = (
                    proba[:, model_classes.index(cls)] if cls in model_classes else 0.0
                )
            rows.append(part)
            bar.advance(task)
    return CVResult(pd.concat(rows, ignore_index=True), classes)
