"""`train rf|bilstm|transfer|hierarchical`: fit a model on all cells of a species and save it
with its card and its trust (calibration, training-cell summary, species fingerprint)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from ..console import console
from ..datasets.cells import (
    other_species_cells,
    usable_features,
)
from ..evaluation.splits import donor_kfold
from ..models.network_params import NetworkParams
from ..models.trusted import CALIBRATION_FOLDS
from .common import (
    AllowUnknownIds,
    Calibrate,
    DataDir,
    ExcludeIds,
    Jobs,
    Labels,
    Members,
    Method,
    Mirror,
    ModelDir,
    OutDir,
    Overwrite,
    Seed,
    Species,
    add_model_commands,
    check_out_dir,
    exclude_specimens,
    training_cells,
)


def train_rf(
    species: Species,
    out: Annotated[Path, typer.Option("--out", help="Model directory to write.")],
    labels: Labels = None,
    exclude_ids: ExcludeIds = None,
    inputs: Annotated[str, typer.Option("--inputs", help="raw or spca features.")] = "raw",
    calibrate: Calibrate = True,
    seed: Seed = 0,
    data_dir: DataDir = None,
    mirror: Mirror = None,
    allow_unknown_ids: AllowUnknownIds = False,
    overwrite: Overwrite = False,
) -> None:
    """Train the class-balanced random forest on all cells of a species and save it."""
    from ..models import recipes

    check_out_dir(out, overwrite)
    table, label = training_cells(species, labels, exclude_ids, data_dir, mirror, allow_unknown_ids)
    train_and_store(
        out, lambda: recipes.forest(seed, inputs), table, label, species, f"rf-{inputs}",
        usable_features(table), calibrate=calibrate, seed=seed, data_dir=data_dir,
        mirror=mirror, doing=f"training forest on {len(table)} {species} cells",
    )  # fmt: skip


def train_bilstm(
    species: Species,
    out: OutDir,
    labels: Labels = None,
    exclude_ids: ExcludeIds = None,
    members: Members = 3,
    calibrate: Calibrate = True,
    seed: Seed = 0,
    data_dir: DataDir = None,
    mirror: Mirror = None,
    allow_unknown_ids: AllowUnknownIds = False,
    overwrite: Overwrite = False,
) -> None:
    """Train the attention BiLSTM over feature families on all cells of a species."""
    from ..models import recipes

    check_out_dir(out, overwrite)
    table, label = training_cells(species, labels, exclude_ids, data_dir, mirror, allow_unknown_ids)
    network = NetworkParams(members=members)
    train_and_store(
        out, lambda: recipes.bilstm(network, seed), table, label, species, "bilstm", None,
        calibrate=calibrate, seed=seed, data_dir=data_dir, mirror=mirror,
        doing=f"training BiLSTM on {len(table)} {species} cells",
    )  # fmt: skip


def train_transfer(
    out: OutDir,
    method: Method = "finetune",
    exclude_ids: ExcludeIds = None,
    members: Members = 3,
    calibrate: Calibrate = True,
    seed: Seed = 0,
    data_dir: DataDir = None,
    mirror: Mirror = None,
    allow_unknown_ids: AllowUnknownIds = False,
    overwrite: Overwrite = False,
) -> None:
    """Train a human classifier that learns from all mouse cells too (aligned 4 classes)."""
    from ..models import recipes

    check_out_dir(out, overwrite)
    human, label = training_cells("human", "label", data_dir=data_dir, mirror=mirror)
    mouse, _ = training_cells("mouse", "label", data_dir=data_dir, mirror=mirror)
    if exclude_ids is not None:  # one list for both species: an id may be of either
        human, mouse = exclude_specimens([human, mouse], exclude_ids, allow_unknown_ids)
    network = NetworkParams(members=members)
    train_and_store(
        out, lambda: recipes.transfer(network, seed, mouse, method), human, label, "human",
        f"transfer-{method}", None, calibrate=calibrate, seed=seed, data_dir=data_dir,
        mirror=mirror, doing=f"pretraining on {len(mouse)} mouse, training on {len(human)} human",
        method=method, n_source_cells=len(mouse),
    )  # fmt: skip


def train_hierarchical(
    species: Species,
    out: ModelDir,
    exclude_ids: ExcludeIds = None,
    allow_unknown_ids: AllowUnknownIds = False,
    overwrite: Overwrite = False,
    seed: Seed = 0,
    jobs: Jobs = -1,
    data_dir: DataDir = None,
    mirror: Mirror = None,
) -> None:
    """Train the hierarchical model (subclass, then t-type) with conformal sets: the default model, saved."""
    from ..default_model import save_default_model, train_default_model

    check_out_dir(out, overwrite)
    cells, _ = training_cells(species, None, exclude_ids, data_dir, mirror, allow_unknown_ids)
    with console.status(f"training and calibrating the hierarchical model on {len(cells)} cells"):
        fit, card = train_default_model(species, cells, data_dir, mirror, seed=seed, n_jobs=jobs)
    save_default_model(out, fit, card, cells, seed, data_dir, mirror)
    tax = fit.taxonomy
    console.print(
        f"saved the {species} hierarchical model ({len(tax.subclasses)} subclasses, "
        f"{len(tax.t_types)} t-types with >= {tax.min_cells} cells) to {out}"
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
    **network,
) -> None:
    """What every flat `train` command does: refuse a training set too small to calibrate,
    fit `make()` on `cells` (the `features` columns, or the whole table for networks), fit
    its trust (`fit_flat_trust`, with the other species' public cells) and save all three;
    the directory appears only when all is written. `network`: what a network's card adds
    (`bundle.NetworkCard`)."""
    from ..models.bundle import Provenance, card_for
    from ..models.trusted import check_trainable, fit_flat_trust, save_trained
    from ..threads import limit

    check_trainable(cells, label, calibrate)
    model = make()
    with console.status(doing), limit():
        model.fit(cells[features] if features is not None else cells, cells[label].to_numpy())
    card = card_for(model, kind, species, label, len(cells), Provenance(seed=seed), **network)
    other = other_species_cells(species, data_dir, mirror)
    cv = donor_kfold(CALIBRATION_FOLDS, seed) if calibrate else None
    with console.status(f"storing trust: {CALIBRATION_FOLDS if calibrate else 0} calibration fits"):
        with limit():
            trust = fit_flat_trust(
                make(), model, cells, label, species, features, other=other, cv=cv, seed=seed
            )
    save_trained(out, model, card, trust)
    if trust.calibrated:
        (conformal,) = trust.conformal.values()
        console.print(
            f"calibration stored: {len(conformal.scores)} out-of-fold scores, "
            f"temperature {trust.temperature.temperature:.2f}"
        )
    console.print(f"saved {kind} model ({len(card.features)} features) to {out}")


def register(app: typer.Typer, train_app: typer.Typer, evaluate_app: typer.Typer) -> None:
    """Add this verb's commands to the CLI."""
    add_model_commands(train_app, train_rf, train_bilstm, train_transfer, train_hierarchical)
