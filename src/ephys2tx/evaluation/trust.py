"""How far calls can be trusted, measured on the shared donor-grouped folds (nested).

In each outer fold the model is fitted on the training cells; its Mondrian calibration comes
from donor-grouped out-of-fold scores of those training cells only (inner folds), and the
novelty baseline, ranges and species fingerprint from those cells too: the same
`fit_flat_trust` that `train` saves beside a model. The test cells then
get sets, flags and novelty exactly as `predict` gives them. `trust_summary` turns the
per-cell rows into coverage, set size, confident share and accuracy, and ECE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from rich.progress import Progress

from ..models.trusted import fit_flat_trust
from ..schema import FLAG_SEPARATOR, SET_SEPARATOR
from ..trust.assess import assess
from .crossval import CVResult, cross_validate
from .splits import Fold, donor_kfold

ECE_BINS = 10


@dataclass
class TrustEvaluation:
    """Out-of-fold predictions plus one trust row per (repeat, fold, test cell)."""

    cv: CVResult
    cells: pd.DataFrame  # specimen_id, repeat, fold, true, predicted, p_max, set, flags ...
    summary: dict


def _trust_on_fold(
    model,
    fold: Fold,
    X_test: pd.DataFrame,
    *,
    estimator,
    cells: pd.DataFrame,
    label: str,
    features: list[str] | None,
    species: str,
    alpha: float,
    other: dict[str, pd.DataFrame] | None,
    inner_folds: int,
    seed: int,
    scaling: bool,
) -> pd.DataFrame:
    """The test cells' trust rows under the trust `predict` would have (`fit_flat_trust` on
    the fold's training cells, with inner donor-grouped folds)."""
    cv = donor_kfold(inner_folds, seed + 1000 * fold.repeat + fold.fold)
    trust = fit_flat_trust(
        estimator, model, cells.iloc[fold.train], label, species, features, other=other,
        cv=cv, seed=seed, scaling=scaling,
    )  # fmt: skip
    (conformal,) = trust.conformal.values()
    summary, temperature = trust.summary, trust.temperature
    test = cells.iloc[fold.test]
    classes = [str(c) for c in model.classes_]
    order = [classes.index(c) for c in conformal.classes]
    raw = model.predict_proba(X_test)[:, order]  # conformal column order (sorted classes)
    proba = temperature.apply(raw)
    novelty = summary.novelty.novelty(test.reindex(columns=summary.features))
    flags = summary.flags(test, novelty, proba.max(axis=1))
    sets = conformal.predict_set(proba, alpha)
    records = assess(test["specimen_id"].to_numpy(), proba, conformal.classes, sets, flags, novelty)
    true = test[label].astype(str).to_numpy()
    return pd.DataFrame(
        {
            "specimen_id": test["specimen_id"].to_numpy(),
            "repeat": fold.repeat,
            "fold": fold.fold,
            "true": true,
            "predicted": [r.predicted for r in records],
            "p_max": proba.max(axis=1),
            "p_max_raw": raw.max(axis=1),
            "temperature": temperature.temperature,
            "credibility": conformal.p_values(proba).max(axis=1),  # largest class p-value
            "prediction_set": [SET_SEPARATOR.join(r.prediction_set) for r in records],
            "set_size": [len(r.prediction_set) for r in records],
            "covered": [t in r.prediction_set for t, r in zip(true, records, strict=True)],
            "confident": [r.confident for r in records],
            "novelty": novelty,
            "novel_score": summary.novel_score(novelty, proba.max(axis=1)),
            "flags": [FLAG_SEPARATOR.join(r.flags) for r in records],
        }
    )


def evaluate_trust(
    estimator,
    cells: pd.DataFrame,
    label: str,
    folds: Sequence[Fold],
    species: str,
    features: list[str] | None = None,
    alpha: float = 0.1,
    other: dict[str, pd.DataFrame] | None = None,
    inner_folds: int = 5,
    seed: int = 0,
    n_jobs: int = 1,
    progress: bool | Progress = True,
    description: str = "cross-validating with nested calibration",
    scaling: bool = True,
) -> TrustEvaluation:
    """Cross-validate any estimator with calibration nested in each outer training fold.

    `other` maps other species' names to their public cells, for the species fingerprint;
    `scaling` fits a temperature on the inner out-of-fold probabilities (else T = 1).
    """
    hook = partial(
        _trust_on_fold,
        estimator=estimator,
        cells=cells,
        label=label,
        features=features,
        species=species,
        alpha=alpha,
        other=other,
        inner_folds=inner_folds,
        seed=seed,
        scaling=scaling,
    )
    cv = cross_validate(
        estimator,
        cells,
        label,
        folds,
        features,
        progress=progress,
        description=description,
        on_fold=hook,
        n_jobs=n_jobs,
    )
    rows = pd.concat(cv.fold_outputs, ignore_index=True)
    return TrustEvaluation(cv, rows, trust_summary(rows, cv.classes, alpha))


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS
) -> float:
    """Top-label ECE: |accuracy - mean confidence| per equal-width bin, weighted by cells."""
    confidence = np.asarray(confidence, float)
    correct = np.asarray(correct, float)
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        inside = bins == b
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def reliability_table(rows: pd.DataFrame, n_bins: int = ECE_BINS) -> pd.DataFrame:
    """Per confidence bin: cells, mean top probability, accuracy (for the reliability diagram)."""
    correct = (rows["predicted"] == rows["true"]).to_numpy()
    conf = rows["p_max"].to_numpy(float)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    out = []
    for b in range(n_bins):
        inside = bins == b
        if inside.any():
            out.append(
                {
                    "low": b / n_bins,
                    "high": (b + 1) / n_bins,
                    "cells": int(inside.sum()),
                    "confidence": float(conf[inside].mean()),
                    "accuracy": float(correct[inside].mean()),
                }
            )
    return pd.DataFrame(out)


def accuracy_by_share_called(rows: pd.DataFrame, points: int = 20) -> pd.DataFrame:
    """Accuracy of the most probable class among the share of cells with the highest top
    probability, for shares 1/points ... 1 (a risk-coverage curve)."""
    order = np.argsort(-rows["p_max"].to_numpy(float), kind="stable")
    correct = (rows["predicted"] == rows["true"]).to_numpy()[order]
    running = np.cumsum(correct) / np.arange(1, len(correct) + 1)
    shares = np.linspace(1 / points, 1, points)
    idx = np.maximum(np.ceil(shares * len(correct)).astype(int) - 1, 0)
    return pd.DataFrame({"share_called": shares, "accuracy": running[idx]})


def trust_summary(rows: pd.DataFrame, classes: Sequence[str], alpha: float) -> dict:
    """Coverage (overall, per class, per fold), set size, confident share/accuracy, ECE."""
    correct = rows["predicted"] == rows["true"]
    confident = rows["confident"].astype(bool)
    per_fold = rows.groupby(["repeat", "fold"])["covered"].mean()
    flagged = rows["flags"].fillna("").astype(str) != ""
    return {
        "alpha": alpha,
        "n_rows": int(len(rows)),
        "coverage": float(rows["covered"].mean()),
        "coverage_per_fold": {"min": float(per_fold.min()), "max": float(per_fold.max())},
        "coverage_per_class": {
            c: float(rows.loc[rows["true"] == c, "covered"].mean()) for c in classes
        },
        "mean_set_size": float(rows["set_size"].mean()),
        "set_size_per_class": {
            c: float(rows.loc[rows["true"] == c, "set_size"].mean()) for c in classes
        },
        "share_singleton": float((rows["set_size"] == 1).mean()),
        "share_flagged": float(flagged.mean()),
        "share_confident": float(confident.mean()),
        "confident_accuracy": float(correct[confident].mean()) if confident.any() else None,
        "accuracy": float(correct.mean()),
        "ece": expected_calibration_error(rows["p_max"].to_numpy(), correct.to_numpy()),
        "ece_unscaled": expected_calibration_error(
            rows["p_max_raw"].to_numpy(), correct.to_numpy()
        ),
        "temperature_median": float(rows["temperature"].median()),
    }
