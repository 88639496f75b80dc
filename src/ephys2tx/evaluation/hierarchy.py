"""Scores of a hierarchical model per level: accuracy, macro-F1, balanced accuracy, and how
often the subclass is right when the t-type is wrong.

t-type scores count the cells whose true t-type is learned (>= `MIN_TTYPE_CELLS` cells);
a cell predicted at subclass level (a subclass-level leaf) counts as a wrong t-type.
Macro-F1 averages over the t-types present in each fold's test cells.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from ..datasets.taxonomy import LEVELS, Taxonomy
from .metrics import mean_ci


def fold_level_scores(true_leaf, pred_subclass, pred_leaf, taxonomy: Taxonomy) -> dict:
    """Scores of one fold at both levels from true leaves and predicted subclass and leaf."""
    true_leaf = np.asarray(true_leaf, dtype=object)
    pred_leaf = np.asarray(pred_leaf, dtype=object)
    true_sub = np.array([taxonomy.parent[t] for t in true_leaf], dtype=object)
    pred_sub = np.asarray(pred_subclass, dtype=object)
    out = {
        "subclass_accuracy": accuracy_score(true_sub, pred_sub),
        "subclass_macro_f1": f1_score(true_sub, pred_sub, average="macro"),
        "subclass_balanced_accuracy": balanced_accuracy_score(true_sub, pred_sub),
    }
    resolved = np.array([taxonomy.is_resolved(t) for t in true_leaf])
    t, p = true_leaf[resolved], pred_leaf[resolved]
    present = sorted(set(t))
    wrong = t != p
    out.update(
        {
            "t_type_accuracy": accuracy_score(t, p),
            "t_type_macro_f1": f1_score(t, p, labels=present, average="macro", zero_division=0),
            "t_type_balanced_accuracy": float(np.mean([np.mean(p[t == c] == c) for c in present])),
            "subclass_right_when_t_type_wrong": float(
                np.mean(true_sub[resolved][wrong] == pred_sub[resolved][wrong])
            )
            if wrong.any()
            else float("nan"),
        }
    )
    return out


def level_scores(predictions: pd.DataFrame, taxonomy: Taxonomy) -> pd.DataFrame:
    """One row of scores per (repeat, fold) of a predictions table with `true` (leaf),
    `subclass` and `t_type` (predicted) columns."""
    rows = []
    for (repeat, fold), part in predictions.groupby(["repeat", "fold"], sort=True):
        scores = fold_level_scores(part["true"], part["subclass"], part["t_type"], taxonomy)
        rows.append({"repeat": repeat, "fold": fold, **scores})
    return pd.DataFrame(rows)


def summarize_levels(scores: pd.DataFrame) -> dict:
    """Mean, sd and 95% t-interval over folds of every score, grouped by level."""
    out: dict[str, dict] = {level: {} for level in LEVELS}
    for column in scores.columns.drop(["repeat", "fold"]):
        level = next(lv for lv in LEVELS if column.startswith(lv))
        values = scores[column].dropna()
        out[level][column[len(level) + 1 :]] = mean_ci(values, bounds=(0, 1))
    return out
