"""`cells`: the harmonized cell table of one species, with QC counts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..console import console
from ..datasets.cells import (
    build_cells,
    check_table_out,
    usable_features,
    write_cell_table,
)
from .common import (
    DataDir,
    Mirror,
)


def cells(
    species: Annotated[str, typer.Argument(help="mouse or human")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the table (.parquet or .csv).")
    ] = None,
    data_dir: DataDir = None,
    mirror: Mirror = None,
) -> None:
    """Build the harmonized cell table of one species and print QC counts per reason."""
    if out is not None:
        check_table_out(out)
    table, report = build_cells(species, data_dir, mirror)
    summary = Table(title=f"{species} cells: QC")
    summary.add_column("rule")
    summary.add_column("cells", justify="right")
    summary.add_row("input rows", str(report.n_input))
    for reason, count in report.dropped.items():
        summary.add_row(f"dropped: {reason}", str(count))
    summary.add_row("kept", str(report.n_kept), style="bold")
    console.print(summary)
    counts = table["label"].value_counts().sort_index()
    console.print("aligned labels: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    kept = usable_features(table)
    console.print(f"features measured in >= 20% of cells: {len(kept)} (others stay NaN)")
    if out is not None:
        write_cell_table(table, out)
        console.print(f"wrote {len(table)} cells to {out}")


def register(app: typer.Typer, train_app: typer.Typer, evaluate_app: typer.Typer) -> None:
    """Add this verb's commands to the CLI."""
    app.command()(cells)
