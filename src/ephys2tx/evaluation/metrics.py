"""Scores of a cross-validation run, in one schema for every model, and paired comparisons."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score


def mean_ci(
    values: np.ndarray | list[float], level: float = 0.95, bounds: tuple[float, float] = (-1.0, 1.0)
) -> dict:
    """Mean, sd and a t-interval over folds (fold scores are the sample), clipped to `bounds`
    (scores live in [0, 1], differences of scores in [-1, 1])."""
    values = np.asarray(values, float)
    n = len(values)
    mean = float(values.mean())
    sd = float(values.std(ddof=1)) if n > 1 else 0.0
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * sd / np.sqrt(n)) if n > 1 else 0.0
    low, high = max(bounds[0], mean - half), min(bounds[1], mean + half)
    return {"mean": mean, "sd": sd, "ci95": [low, high], "n": n}


def fold_scores(predictions: pd.DataFrame) -> pd.DataFrame:
    """Macro-F1 and accuracy for each (repeat, fold) of a predictions table."""
    rows = []
    for (repeat, fold), part in predictions.groupby(["repeat", "fold"], sort=True):
        rows.append(
            {
                "repeat": repeat,
                "fold": fold,
                "macro_f1": f1_score(part["true"], part["predicted"], average="macro"),
                "accuracy": accuracy_score(part["true"], part["predicted"]),
            }
        )
    return pd.DataFrame(rows)


def summarize(predictions: pd.DataFrame, classes: list[str], **context) -> dict:
    """The metrics.json schema: macro-F1 (mean, sd, 95% CI), accuracy, per-class F1, confusion.

    Fold and repeat counts are read from the predictions, so they cannot disagree with them.
    """
    scores = fold_scores(predictions)
    per_class = {
        cls: float(
            np.mean(
                [
                    f1_score(p["true"], p["predicted"], labels=[cls], average="macro")
                    for _, p in predictions.groupby(["repeat", "fold"])
                ]
            )
        )
        for cls in classes
    }
    counts = confusion_matrix(predictions["true"], predictions["predicted"], labels=classes)
    return {
        **context,
        "n_folds": int(predictions.groupby("repeat")["fold"].nunique().iloc[0]),
        "n_repeats": int(predictions["repeat"].nunique()),
        "n_cells": int(predictions.groupby("repeat").size().iloc[0]),
        "macro_f1": {
            **mean_ci(scores["macro_f1"], bounds=(0, 1)),
            "per_fold": scores["macro_f1"].tolist(),
        },
        "accuracy": mean_ci(scores["accuracy"], bounds=(0, 1)),
        "per_class_f1": per_class,
        "confusion_matrix": {"labels": list(classes), "counts": counts.tolist()},
    }


def paired_difference(scores_a: pd.DataFrame, scores_b: pd.DataFrame) -> dict:
    """Fold-by-fold difference a - b of macro-F1 on the same folds, with a 95% t-interval."""
    merged = scores_a.merge(scores_b, on=["repeat", "fold"], suffixes=("_a", "_b"))
    if len(merged) != len(scores_a) or len(merged) != len(scores_b):
        raise ValueError("paired comparison needs both models scored on the same folds")
    diff = merged["macro_f1_a"] - merged["macro_f1_b"]
    return {**mean_ci(diff), "n_folds_a_better": int((diff > 0).sum())}
