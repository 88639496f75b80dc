"""`predict --report`: gather what the per-cell cards need and write the page."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import Ephys2txError
from ..models.bundle import ModelCard
from ..predictor import PredictionRun, Predictor
from ..recordings.read import SUFFIXES as RECORDING_SUFFIXES
from ..recordings.sweeps import Sweep
from .common import console, training_cells


def default_training_cells(card: ModelCard) -> pd.DataFrame | None:
    """The labelled public cells of the model's species (None when they cannot be had).

    Stopgap until the model directory carries its own training cells: models trained with
    --exclude-ids get their excluded cells back here, and synthetic models get none.
    """
    if card.provenance.synthetic:
        return None
    try:
        cells, _ = training_cells(card.species, card.label)
    except Ephys2txError as exc:
        console.print(f"[yellow]note[/] report drawn without training cells: {exc}")
        return None
    return cells


def recording_sweeps(table: pd.DataFrame) -> dict[int, tuple[dict[str, Sweep], str | None]]:
    """Rheobase and hero sweeps of every row that came from a recording still on disk."""
    from ..features.key_sweeps import key_sweeps
    from ..recordings.read import read_recording

    out: dict[int, tuple[dict[str, Sweep], str | None]] = {}
    if "file" not in table.columns:
        return out
    for row, name in enumerate(table["file"]):
        if not isinstance(name, str) or Path(name).suffix.lower() not in RECORDING_SUFFIXES:
            continue
        try:
            out[row] = key_sweeps(read_recording(name))
        except Ephys2txError as exc:
            out[row] = ({}, str(exc))
    return out


def model_info(
    predictor: Predictor, run: PredictionRun, training: pd.DataFrame | None, alpha: float
) -> dict[str, object]:
    """What the page header says about the model."""
    card = predictor.card
    info: dict[str, object] = {
        "model": card.kind,
        "species": card.species,
        "classes": ", ".join(card.classes),
        "features": len(predictor.measured_features),
        "trained on": f"{card.n_train_cells} cells",
        "ephys2tx": card.version,
        "prediction sets": f"Mondrian conformal, alpha {alpha:g}"
        if run.calibrated
        else "none (no stored calibration)",
    }
    info["training cells"] = (
        f"{len(training)} labelled public {card.species} cells" if training is not None else "none"
    )
    return info


def available_columns(predictor: Predictor, run: PredictionRun) -> pd.DataFrame:
    """The predictions without the columns this model cannot fill (no calibration: no sets
    or confident calls; no stored training summary: no novelty or flags), so the page says
    "not available" instead of showing empty sets."""
    absent = []
    if not run.calibrated:
        absent += ["prediction_set", "confident"]
    if predictor.training_summary is None:
        absent += ["novelty", "flags"]
    return run.table.drop(columns=absent, errors="ignore")


def write_predict_report(
    path: Path, predictor: Predictor, table: pd.DataFrame, run: PredictionRun, alpha: float
) -> Path:
    """Build one card per predicted cell and write the page atomically.

    The nearest training cells come from the model's novelty baseline, whose rows are the
    model's training cells in the order `training_cells` gives them; they are left out when
    the training cells at hand differ (e.g. a model trained with --exclude-ids).
    """
    from ..report.cell_page import write_cell_report
    from ..report.cells import build_cards

    neighbour_indices = neighbour_distances = None
    if predictor.training_summary is not None:
        novelty = predictor.training_summary.novelty
        X = table.reindex(columns=novelty.features)
        neighbour_indices, neighbour_distances = novelty.neighbours(X, k=5)
    card = predictor.card
    training = default_training_cells(card)
    if neighbour_indices is not None and (
        training is None or len(training) != card.n_train_cells
    ):  # the indices count the model's training cells; these rows would not match
        console.print(
            "[yellow]note[/] nearest training cells left out: the training cells at hand "
            "are not the cells the model was trained on"
        )
        neighbour_indices = neighbour_distances = None
    with console.status("reading rheobase and hero sweeps of the recordings"):
        sweeps = recording_sweeps(table)
    cards = build_cards(
        available_columns(predictor, run),
        table,
        predictor.measured_features,
        training,
        card.label,
        neighbour_indices,
        neighbour_distances,
        sweeps,
    )
    title = f"ephys2tx {card.kind} ({card.species}): {len(cards)} cell(s)"
    info = model_info(predictor, run, training, alpha)
    return write_cell_report(path, cards, title, info, progress=True)
