"""What `train` stores beside every model so `predict` can say how far to trust a call."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from sklearn.base import clone

from ..datasets.cells import SPECIES, build_cells
from ..evaluation.folds import donor_kfold
from ..models.trusted import fit_calibration, fit_trust_reference, save_trust
from .common import console

CALIBRATION_FOLDS = 5

Calibrate = Annotated[
    bool,
    typer.Option(
        "--calibrate/--no-calibrate",
        help="Store donor-grouped out-of-fold conformal scores (5 more fits).",
    ),
]


def store_trust(
    out: Path,
    estimator,
    model,
    cells: pd.DataFrame,
    label: str,
    species: str,
    features: list[str] | None,
    calibrate: bool = True,
    seed: int = 0,
    data_dir: Path | None = None,
    mirror: str | None = None,
) -> None:
    """Write calibration (unless `calibrate` is off), reference and species fingerprint.

    `estimator` is the unfitted model (refitted on inner folds), `model` the fitted one;
    `features` are the columns the estimator takes (None: the whole table)."""
    used = model.used_features() if hasattr(model, "used_features") else list(features)
    others = {s: build_cells(s, data_dir, mirror)[0] for s in SPECIES if s != species}
    reference = fit_trust_reference(cells, used, species, others, seed)
    calibration = None
    if calibrate:
        X = cells[features] if features is not None else cells
        with console.status(f"calibrating: {CALIBRATION_FOLDS} donor-grouped out-of-fold fits"):
            calibration = fit_calibration(
                clone(estimator),
                X,
                cells[label].to_numpy(),
                cells["donor"].to_numpy(),
                donor_kfold(CALIBRATION_FOLDS, seed),
            )
        console.print(
            f"calibration stored: {len(calibration[0].scores)} out-of-fold scores, "
            f"temperature {calibration[1].temperature:.2f}"
        )
    save_trust(out, reference, calibration, folds=CALIBRATION_FOLDS, seed=seed)
