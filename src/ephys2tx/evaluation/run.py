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
    trust: dict | None = None,
    **context,
) -> tuple[CVResult, dict]:
    """Cross-validate on the shared folds; return the predictions and the metrics dict.

    With `trust` (keyword arguments of `evaluate_trust`, e.g. alpha and other species'
    cells), calibration is nested in each outer fold and the `TrustEvaluation` is kept
    in the result's `trust` attribute."""
    folds = cell_folds(cells, label, species, protocol, n_folds, n_repeats, seed)
    if trust is None:
        result = cross_validate(estimator, cells, label, folds, features, description=description)
    else:
        from .trust import evaluate_trust

        evaluation = evaluate_trust(
            estimator, cells, label, folds, species, features, seed=seed,
            description=description, **trust,
        )  # fmt: skip
        result = evaluation.cv
        result.trust = evaluation
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


def write_trust(out_dir: str | Path, evaluation, title: str) -> dict:
    """trust.json, trust_cells.csv, reliability.png and accuracy_vs_called.png in `out_dir`."""
    from ..report.figures import accuracy_called_png, reliability_png
    from .trust import accuracy_by_share_called, reliability_table

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    evaluation.cells.to_csv(out / "trust_cells.csv", index=False)
    bins = reliability_table(evaluation.cells)
    curve = accuracy_by_share_called(evaluation.cells)
    summary = {
        **evaluation.summary,
        "reliability": bins.to_dict(orient="records"),
        "accuracy_by_share_called": curve.to_dict(orient="records"),
    }
    (out / "trust.json").write_text(json.dumps(summary, indent=2))
    reliability_png({title: bins}, out / "reliability.png", f"{title}: reliability")
    accuracy_called_png({title: curve}, out / "accuracy_vs_called.png", title)
    return summary
