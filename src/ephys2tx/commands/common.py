"""Options and helpers every command group shares."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console

from ..datasets.cells import build_cells, check_species, read_id_list
from ..datasets.labels import DEFAULT_LABEL, check_label
from ..errors import Ephys2txError

console = Console(stderr=True)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Data directory (default: $EPHYS2TX_DATA_DIR or the user cache)."
    ),
]
Mirror = Annotated[
    str | None,
    typer.Option("--mirror", help="Local folder or base URL holding the same files (offline use)."),
]
Species = Annotated[str, typer.Option("--species", help="mouse or human.")]
Labels = Annotated[
    str | None,
    typer.Option("--labels", help="label (aligned 4-class) or label5 (mouse 5-class)."),
]
ExcludeIds = Annotated[
    Path | None,
    typer.Option("--exclude-ids", help="CSV of specimen ids to leave out of training."),
]
Seed = Annotated[int, typer.Option("--seed", help="Random seed.")]
Protocol = Annotated[
    str,
    typer.Option(
        "--protocol", help="grouped (donor-grouped K-fold) or seed (the reference study's)."
    ),
]
Repeats = Annotated[int, typer.Option("--repeats", help="Repeats of the fold split.")]
Folds = Annotated[int, typer.Option("--folds", help="Number of folds.")]
Jobs = Annotated[
    int,
    typer.Option("--jobs", help="Networks fitted at once, one fold each (-1 = all cores)."),
]


def training_cells(
    species: str,
    labels: str | None,
    exclude_ids: Path | None = None,
    data_dir: Path | None = None,
    mirror: str | None = None,
) -> tuple[pd.DataFrame, str]:
    """A species' harmonized cells that carry the chosen label, minus excluded specimens."""
    species = check_species(species)
    label = check_label(species, labels or DEFAULT_LABEL[species])
    cells, _ = build_cells(species, data_dir, mirror)
    cells = cells[cells[label].notna()].reset_index(drop=True)
    if exclude_ids is not None:
        excluded = read_id_list(exclude_ids)
        before = len(cells)
        cells = cells[~cells["specimen_id"].isin(excluded)].reset_index(drop=True)
        console.print(f"left out {before - len(cells)} of {len(excluded)} listed specimens")
        if cells.empty:
            raise Ephys2txError(
                f"--exclude-ids {exclude_ids} leaves no {species} cells to train on"
            )
    return cells, label


def print_f1(model: str, species: str, label: str, protocol: str, metrics: dict, out: Path) -> None:
    """One line: a model's macro-F1 with its interval, and where its metrics.json is."""
    f1 = metrics["macro_f1"]
    console.print(
        f"{model} {species} {label} ({protocol}): macro-F1 {f1['mean']:.3f} ± {f1['sd']:.3f} "
        f"(95% CI {f1['ci95'][0]:.3f}–{f1['ci95'][1]:.3f}); wrote {out}/metrics.json"
    )
