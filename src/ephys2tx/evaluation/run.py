"""Evaluate a model on one species' cells: cross-validation on a splitter's folds, metrics."""

from __future__ import annotations

import pandas as pd

from .crossval import CVResult, cross_validate
from .splits import Splitter


def evaluate(
    estimator,
    cells: pd.DataFrame,
    species: str,
    label: str,
    features: list[str],
    splitter: Splitter,
    description: str = "cross-validating",
    trust: dict | None = None,
    **context,
) -> tuple[CVResult, dict]:
    """Cross-validate on the splitter's folds; return the predictions and the metrics dict.

    With `trust` (keyword arguments of `evaluate_trust`, e.g. alpha and other species'
    cells), calibration is nested in each outer fold and the `TrustEvaluation` is kept
    in the result's `trust` attribute. `context` (e.g. model) goes into the metrics.
    """
    folds = splitter.cell_folds(cells, label)
    if trust is None:
        result = cross_validate(estimator, cells, label, folds, features, description=description)
    else:
        from .trust import evaluate_trust

        evaluation = evaluate_trust(
            estimator, cells, label, folds, species, features, seed=splitter.seed,
            description=description, **trust,
        )  # fmt: skip
        result = evaluation.cv
        result.trust = evaluation
    metrics = result.summary(
        species=species,
        label=label,
        protocol=splitter.name,
        n_donors=int(cells["donor"].nunique()),
        n_features=len(features),
        seed=splitter.seed,
        **context,
    )
    return result, metrics
