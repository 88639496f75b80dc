"""What `train` stores beside every model so `predict` can say how far to trust a call."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from ..datasets.cells import other_species_cells
from ..evaluation.splits import donor_kfold
from ..models.trusted import CALIBRATION_FOLDS
from ..models.trusted import store_trust as fit_and_store
from ..trust.conformal import check_alpha
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
    float,
    typer.Option(
        "--alpha", help="Miss rate of the prediction sets, in (0, 1).", callback=check_alpha
    ),
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
    """`models.trusted.store_trust` for `train`, with the other species' public cells and a
    line saying what was stored."""
    other = other_species_cells(species, data_dir, mirror)
    cv = donor_kfold(CALIBRATION_FOLDS, seed) if calibrate else None
    with console.status(f"storing trust: {CALIBRATION_FOLDS if calibrate else 0} calibration fits"):
        calibration = fit_and_store(
            out, estimator, model, cells, label, species, features, other, cv, seed
        )
    if calibration is not None:
        console.print(
            f"calibration stored: {len(calibration[0].scores)} out-of-fold scores, "
            f"temperature {calibration[1].temperature:.2f}"
        )


def train_and_store(
    out: Path,
    make: Callable[[], object],
    cells: pd.DataFrame,
    label: str,
    species: str,
    kind: str,
    features: list[str] | None,
    *,
    calibrate: bool,
    seed: int,
    data_dir: Path | None,
    mirror: str | None,
    doing: str,
    **card_fields,
) -> None:
    """What every `train` command does: refuse a training set too small to calibrate, fit
    `make()` on `cells` (the `features` columns, or the whole table for networks), and save
    it with its card and its trust; the directory appears only when all is written."""
    from ..models.bundle import card_for, new_model_dir, write_model
    from ..models.trusted import check_trainable
    from ..threads import limit

    check_trainable(cells, label, calibrate)
    model = make()
    with console.status(doing), limit():
        model.fit(cells[features] if features is not None else cells, cells[label].to_numpy())
    card = card_for(model, kind, species, label, len(cells), seed=seed, **card_fields)
    with new_model_dir(out) as folder:
        write_model(folder, model, card)
        store_trust(
            folder, make(), model, cells, label, species, features, calibrate, seed, data_dir,
            mirror,
        )  # fmt: skip
    console.print(f"saved {kind} model ({len(card.features)} features) to {out}")
