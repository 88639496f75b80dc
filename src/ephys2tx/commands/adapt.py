"""`ephys2tx adapt`: fit the default model to a lab's own cells (`ephys2tx.adapt`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import (
    DataDir,
    Jobs,
    Mirror,
    ModelDir,
    Overwrite,
    Seed,
    Species,
    check_out_dir,
    console,
)


def adapt_cmd(
    cells: Annotated[
        list[Path], typer.Argument(help="The lab's cell tables (.csv/.parquet; crosswalk applied).")
    ],
    species: Species,
    out: ModelDir,
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            help="CSV of specimen_id,subclass for the lab's labelled cells (else a `subclass` "
            "column of the cells, else no labels).",
        ),
    ] = None,
    donor_column: Annotated[
        str,
        typer.Option(
            "--donor-column", help="Column naming each cell's donor or mouse (groups the folds)."
        ),
    ] = "donor",
    overwrite: Overwrite = False,
    seed: Seed = 0,
    jobs: Jobs = 1,
    data_dir: DataDir = None,
    mirror: Mirror = None,
) -> None:
    """Adapt the default model to a lab's cells and save a lab model for `predict DIR`.

    Without labels the lab's cells are an unlabelled target: each feature is mapped onto
    the reference by the confident calls of each class. With labels the lab's labelled cells
    join training (with the reference cells, or alone on all of the lab's own columns) and
    the conformal sets are recalibrated on them."""
    import pandas as pd

    from ..adapt import adapt_to_lab, label_column, save_lab_model
    from ..datasets.cells import check_unique_ids, read_cell_table
    from ..errors import Ephys2txError

    check_out_dir(out, overwrite)
    tables = [read_cell_table(path) for path in cells]
    lab = pd.concat(tables, ignore_index=True)
    if len(tables) > 1:
        check_unique_ids(lab, "the inputs together")
    given = None
    if labels is not None:
        try:
            given = pd.read_csv(labels)
        except (OSError, ValueError) as exc:
            raise Ephys2txError(f"cannot read --labels {labels} ({exc}); give a CSV") from exc
    lab_labels = label_column(lab, given)
    donors = lab[donor_column] if donor_column in lab.columns else None
    if lab_labels is not None:
        n = int(lab_labels.notna().sum())
        grouped = f"grouped by `{donor_column}`" if donors is not None else "not grouped by donor"
        console.print(
            f"{n} labelled lab cells join training (with the reference cells, or alone on "
            f"all the lab's columns: chosen on their folds); sets recalibrated on them ({grouped})"
        )
    else:
        console.print(f"no labels: {len(lab)} lab cells are an unlabelled target")
    with console.status("fitting the reference on the lab's features and adapting it"):
        built = adapt_to_lab(
            species, lab, lab_labels, donors, data_dir, mirror, seed, jobs, say=console.print
        )
    save_lab_model(out, built, data_dir, mirror)
    details = built.lab.details
    shifted = ", ".join(built.lab.model.shift.largest(built.default_training_cells))
    console.print(
        f"saved the {species} lab model ({details['method']}; {len(built.features)} features; "
        f"most re-mapped: {shifted}) to {out}; predict with `ephys2tx predict {out} CELLS`"
    )


def register(app: typer.Typer, train_app: typer.Typer, evaluate_app: typer.Typer) -> None:
    """Add this group's commands to the CLI."""
    app.command("adapt")(adapt_cmd)
