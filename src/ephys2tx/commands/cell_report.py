"""`predict --report`: gather what the per-cell cards need and write the page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import Ephys2txError
from ..models.bundle import ModelCard
from ..recordings.read import SUFFIXES as RECORDING_SUFFIXES
from ..recordings.sweeps import Sweep
from .common import console, training_cells


def reference_cells(card: ModelCard) -> pd.DataFrame | None:
    """The labelled public cells of the model's species (None when they cannot be had).

    Stopgap until the model directory carries its own reference cells: models trained with
    --exclude-ids get their excluded cells back here, and synthetic models get none.
    """
    if card.extra.get("synthetic"):
        return None
    try:
        cells, _ = training_cells(card.species, card.label)
    except Ephys2txError as exc:
        console.print(f"[yellow]note[/] report drawn without reference cells: {exc}")
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


def model_info(card: ModelCard, reference: pd.DataFrame | None) -> dict[str, object]:
    """What the page header says about the model."""
    info: dict[str, object] = {
        "model": card.kind,
        "species": card.species,
        "classes": ", ".join(card.classes),
        "features": len(card.features),
        "trained on": f"{card.n_train_cells} cells",
        "ephys2tx": card.version,
    }
    info["reference cells"] = (
        f"{len(reference)} labelled public {card.species} cells"
        if reference is not None
        else "none"
    )
    return info


def write_predict_report(
    path: Path,
    card: ModelCard,
    table: pd.DataFrame,
    predictions: pd.DataFrame,
    neighbour_indices: np.ndarray | None = None,
    neighbour_distances: np.ndarray | None = None,
) -> Path:
    """Build one card per predicted cell and write the page atomically."""
    from ..report.cell_page import write_cell_report
    from ..report.cells import build_cards

    reference = reference_cells(card)
    if reference is None:
        neighbour_indices = neighbour_distances = None
    with console.status("reading rheobase and hero sweeps of the recordings"):
        sweeps = recording_sweeps(table)
    cards = build_cards(
        predictions,
        table,
        card.features,
        reference,
        card.label,
        neighbour_indices,
        neighbour_distances,
        sweeps,
    )
    title = f"ephys2tx {card.kind} ({card.species}): {len(cards)} cell(s)"
    return write_cell_report(path, cards, title, model_info(card, reference), progress=True)
