"""Scores of a hierarchical model per level: accuracy, macro-F1, balanced accuracy, and how
often the subclass is right when the t-type is wrong.

t-type scores count the cells whose true t-type is learned (>= `MIN_TTYPE_CELLS` cells);
a cell predicted at subclass level (a subclass-level leaf) counts as a wrong t-type.
Macro-F1 averages over the t-types present in each fold's test cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from ..datasets.taxonomy import LEVELS, Taxonomy
from ..models.hierarchy import (
    assign_levels,
    leaf_shares,
    model_inputs,
    subclass_out_of_fold,
    sum_to_subclass,
)
from ..models.mapping import level_alpha, nest_sets
from ..trust.conformal import MondrianConformal
from ..trust.temperature import Temperature
from .crossval import cross_validate
from .metrics import mean_ci
from .splits import Fold, donor_kfold
from .trust import expected_calibration_error

# Inner donor-grouped folds of the subclass temperature nested in each outer training fold
# (as `train reference` calibrates: models.trusted.CALIBRATION_FOLDS).
INNER_FOLDS = 5


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
            "t_type_errors_with_right_subclass": float(
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


@dataclass
class HierarchyEvaluation:
    """Out-of-fold predictions of the default model with both levels, and its metrics."""

    predictions: pd.DataFrame  # repeat, fold, specimen_id, true, subclass, t_type, sets, p_<leaf>
    scores: pd.DataFrame  # one row per (repeat, fold)
    metrics: dict
    taxonomy: Taxonomy


def _split_conformal_sets(
    predictions: pd.DataFrame, leaves: list[str], taxonomy: Taxonomy, alpha: float
) -> pd.DataFrame:
    """Sets of each test fold calibrated on the other folds' out-of-fold scores (same
    repeat): calibration and test cells never share a donor, as for a deployed model
    calibrated on its training cells' out-of-fold scores."""
    subclasses = list(taxonomy.subclasses)
    parent = taxonomy.parent
    out = []
    for _, rep in predictions.groupby("repeat", sort=True):
        leaf_p = rep[[f"p_{leaf}" for leaf in leaves]].to_numpy()
        sub_p = sum_to_subclass(leaf_p, leaves, parent, subclasses)
        true_leaf = rep["true"].astype(str).to_numpy()
        true_sub = np.array([parent[t] for t in true_leaf])
        part = rep[["repeat", "fold", "specimen_id"]].copy()
        sub_in, leaf_in, sub_size, leaf_size, emptied = (np.zeros(len(rep)) for _ in range(5))
        for fold in rep["fold"].unique():
            test = (rep["fold"] == fold).to_numpy()
            cal_sub = MondrianConformal.fit(sub_p[~test], true_sub[~test], subclasses)
            cal_leaf = MondrianConformal.fit(leaf_p[~test], true_leaf[~test], leaves)
            sub_mask = cal_sub.set_mask(sub_p[test], level_alpha(alpha, "subclass"))
            leaf_mask = cal_leaf.set_mask(leaf_p[test], level_alpha(alpha, "t_type"))
            nested, empty = nest_sets(sub_mask, leaf_mask, subclasses, leaves, taxonomy)
            rows = np.arange(test.sum())
            sub_idx = [subclasses.index(s) for s in true_sub[test]]
            leaf_idx = [leaves.index(t) for t in true_leaf[test]]
            sub_in[test] = sub_mask[rows, sub_idx]
            leaf_in[test] = nested[rows, leaf_idx]
            sub_size[test] = sub_mask.sum(axis=1)
            leaf_size[test] = nested.sum(axis=1)
            emptied[test] = empty
        part["subclass_covered"] = sub_in.astype(bool)
        part["t_type_covered"] = leaf_in.astype(bool)
        part["subclass_set_size"] = sub_size.astype(int)
        part["t_type_set_size"] = leaf_size.astype(int)
        part["t_type_set_emptied"] = emptied.astype(bool)
        out.append(part)
    return pd.concat(out)


def _nested_temperature(model, fold: Fold, X_test: pd.DataFrame, *, table, features, seed):
    """In an outer fold: fit the subclass temperature on donor-grouped out-of-fold
    probabilities of that fold's training cells only, set it on the fitted model (which
    then predicts the test cells with it), and return the test cells' unscaled top
    subclass probability."""
    train = table.iloc[fold.train]
    cv = donor_kfold(INNER_FOLDS, seed + 1000 * fold.repeat + fold.fold)
    oof, subclass = subclass_out_of_fold(
        model, train[features], train["_leaf"].to_numpy(), train["donor"].to_numpy(), cv
    )
    temperature = Temperature.fit(oof, subclass, list(model.taxonomy.subclasses))
    raw = model.predict_proba_levels(X_test)["subclass"].to_numpy().max(axis=1)
    model.set_params(subclass_temperature=temperature.temperature)
    return pd.DataFrame(
        {
            "specimen_id": table["specimen_id"].to_numpy()[fold.test],
            "repeat": fold.repeat,
            "fold": fold.fold,
            "subclass_p_max_unscaled": raw,
            "subclass_temperature": temperature.temperature,
        }
    )


def fold_leaf_shares(
    predictions: pd.DataFrame, folds: list[Fold], leaf: np.ndarray, leaves: list[str]
) -> np.ndarray:
    """Per prediction row, each leaf's share of its fold's training cells (the prior of a
    prior-corrected t-type rule, as the model fitted on that fold stores it)."""
    by_fold = {(f.repeat, f.fold): leaf_shares(leaf[f.train], leaves) for f in folds}
    keys = zip(predictions["repeat"], predictions["fold"], strict=True)
    return np.vstack([by_fold[key] for key in keys])


def evaluate_hierarchy(
    estimator,
    cells: pd.DataFrame,
    label: str,
    folds: list[Fold],
    features: list[str],
    taxonomy: Taxonomy,
    alpha: float = 0.1,
    n_jobs: int = 1,
    progress=True,
    recalibrate: bool = True,
    seed: int = 0,
) -> HierarchyEvaluation:
    """Cross-validate a hierarchical model on `folds` (leaf labels from the taxonomy) and
    score both levels, plus conformal coverage and set size per level at `alpha` and the
    subclass ECE. With `recalibrate` the subclass temperature is fitted inside each outer
    training fold (inner donor-grouped folds), as `train reference` fits it."""
    table = cells.copy()
    table["_leaf"] = taxonomy.leaf_labels(table["t_type"], table[label])
    X = model_inputs(table, features)
    table = pd.concat([table[["specimen_id", "donor", "_leaf"]], X], axis=1)
    hook = None
    if recalibrate:
        hook = partial(_nested_temperature, table=table, features=features, seed=seed)
    result = cross_validate(
        estimator, table, "_leaf", folds, features, progress=progress,
        description="cross-validating the default model", n_jobs=n_jobs, on_fold=hook,
    )  # fmt: skip
    predictions = result.predictions
    if recalibrate:
        scaled = pd.concat(result.fold_outputs, ignore_index=True)
        predictions = predictions.merge(scaled, on=["repeat", "fold", "specimen_id"], how="left")
    leaves = list(taxonomy.leaves)
    for leaf in leaves:  # leaves absent from every training fold
        predictions[f"p_{leaf}"] = predictions.get(f"p_{leaf}", 0.0)
    leaf_p = predictions[[f"p_{leaf}" for leaf in leaves]].to_numpy()
    prior = fold_leaf_shares(predictions, folds, table["_leaf"].to_numpy(), leaves)
    params = estimator.get_params()
    predictions["subclass"], predictions["t_type"] = assign_levels(
        leaf_p, leaves, taxonomy, prior, params.get("t_type_beta", 0.0),
        params.get("learned_first", False),
    )  # fmt: skip
    sets = _split_conformal_sets(predictions, leaves, taxonomy, alpha)
    predictions = predictions.merge(sets, on=["repeat", "fold", "specimen_id"], how="left")
    scores = level_scores(predictions, taxonomy)
    set_scores = predictions.groupby(["repeat", "fold"], sort=True)[
        ["subclass_covered", "t_type_covered", "subclass_set_size", "t_type_set_size"]
    ].mean()
    metrics = summarize_levels(scores)
    for level in LEVELS:
        metrics[level]["coverage"] = mean_ci(set_scores[f"{level}_covered"], bounds=(0, 1))
        sizes = set_scores[f"{level}_set_size"]
        n_nodes = len(taxonomy.subclasses) if level == "subclass" else len(leaves)
        metrics[level]["mean_set_size"] = mean_ci(sizes, bounds=(0, n_nodes))
    sub_p = sum_to_subclass(leaf_p, leaves, taxonomy.parent, list(taxonomy.subclasses))
    true_sub = np.array([taxonomy.parent[t] for t in predictions["true"]], dtype=object)
    right = (predictions["subclass"].to_numpy() == true_sub).astype(float)
    metrics["subclass"]["ece"] = expected_calibration_error(sub_p.max(axis=1), right)
    if recalibrate:
        unscaled = predictions["subclass_p_max_unscaled"].to_numpy()
        metrics["subclass"]["ece_unscaled"] = expected_calibration_error(unscaled, right)
        metrics["subclass"]["temperature_median"] = float(
            predictions["subclass_temperature"].median()
        )
    metrics["alpha"] = alpha
    metrics["t_type_set_emptied_share"] = float(predictions["t_type_set_emptied"].mean())
    metrics["per_t_type"] = per_t_type_f1(predictions, taxonomy, cells, label)
    return HierarchyEvaluation(predictions, scores, metrics, taxonomy)


def per_t_type_f1(
    predictions: pd.DataFrame, taxonomy: Taxonomy, cells: pd.DataFrame, label: str
) -> list[dict]:
    """F1 of each learned t-type (pooled over folds, mean over repeats) and its cell count."""
    leaves = taxonomy.t_types
    rows = []
    for leaf in leaves:
        f1s = [
            f1_score(rep["true"] == leaf, rep["t_type"] == leaf, zero_division=0)
            for _, rep in predictions.groupby("repeat")
        ]
        rows.append(
            {
                "t_type": leaf,
                "subclass": taxonomy.parent[leaf],
                "n_cells": int(taxonomy.n_cells.get(leaf, 0)),
                "f1": float(np.mean(f1s)),
            }
        )
    return rows


def t_type_confusion(predictions: pd.DataFrame, taxonomy: Taxonomy) -> pd.DataFrame:
    """Counts of true leaf (rows) by predicted leaf (columns), in tree order, all repeats."""
    leaves = taxonomy.leaves
    counts = pd.crosstab(predictions["true"], predictions["t_type"])
    return counts.reindex(index=leaves, columns=leaves, fill_value=0)
