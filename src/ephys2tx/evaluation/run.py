"""Evaluate a model on one species' cells and write metrics.json, predictions and a figure."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..report.figures import confusion_matrix_png
from .crossval import CVResult, cross_validate
from .folds import cell_folds


def evaluate(
    estimator,
    cells: pd.DataFrame,
    species: str,
    label: str,
    features: list[str],
    protocol: str = "grouped",
    n_folds: int = 5,
    n_repeats: int = 3,
    seed: int = 0,
    description: str = "cross-validating",
    **context,
) -> tuple[CVResult, dict]:
    """Cross-validate on the shared folds; return the predictions and the metrics dict."""
    folds = cell_folds(cells, label, species, protocol, n_folds, n_repeats, seed)
    result = cross_validate(estimator, cells, label, folds, features, description=description)
    metrics = result.summary(
        species=species,
        label=label,
        protocol=protocol,
        n_donors=int(cells["donor"].nunique()),
        n_features=len(features),
        seed=seed,
        **context,
    )
    return result, metrics


def write_evaluation(out_dir: str | Path, result: CVResult, metrics: dict, title: str) -> Path:
    """metrics.json, predictions.csv, fold_scores.csv and confusion_matrix.png in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    result.predictions.to_csv(out / "predictions.csv", index=False)
    result.scores.to_csv(out / "fold_scores.csv", index=False)
    confusion_matrix_png(metrics, out / "confusion_matrix.png", title)
    return out
