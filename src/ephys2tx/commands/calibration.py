"""What `train` stores beside every model so `predict` can say how far to trust a call."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from sklearn.base import clone

from ..datasets.cells import other_species_cells
from ..evaluation.folds import donor_kfold
from ..models.trusted import CALIBRATION_FOLDS, fit_calibration, fit_trust_reference, save_trust
from .common import console

Calibrate = Annotated[
    bool,
    typer.Option(
        "--calibrate/--no-calibrate",
        help="Store donor-grouped out-of-fold conformal scores (5 more fits).",
    ),
]

TrustOption = Annotated[
    bool,
    typer.Option(
        "--trust/--no-trust",
        help="Also measure coverage, set size, confident calls and ECE, with the calibration "
        "nested in each outer training fold (5 more fits per fold).",
    ),
]
Alpha = Annotated[
    float, typer.Option("--alpha", help="Miss rate of the prediction sets, in (0, 1).")
]


def print_trust(summary: dict, out: Path) -> None:
    """One line: coverage, set size, confident calls and ECE of a nested evaluation."""
    per_class = ", ".join(f"{k} {v:.2f}" for k, v in summary["coverage_per_class"].items())
    acc = summary["confident_accuracy"]
    console.print(
        f"alpha {summary['alpha']:g}: coverage {summary['coverage']:.3f} ({per_class}); "
        f"mean set size {summary['mean_set_size']:.2f}; confident "
        f"{summary['share_confident']:.1%} of cells, accuracy "
        f"{'n/a' if acc is None else f'{acc:.3f}'}; ECE {summary['ece']:.3f} "
        f"(unscaled {summary['ece_unscaled']:.3f}); wrote {out}/trust.json",
        soft_wrap=True,
    )


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
    reference = fit_trust_reference(
        cells, used, species, other_species_cells(species, data_dir, mirror), seed, model
    )
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
