"""`ephys2tx synth`: write a SYNTHETIC Allen-protocol cohort (NWB files + cohort.csv)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import Seed, Species, check_jobs

NPerClass = Annotated[int, typer.Option("--n-per-class", help="cells per subclass")]
Out = Annotated[Path, typer.Option("--out", help="output directory")]
Processes = Annotated[
    int,
    typer.Option(
        "--jobs",
        help="worker processes, -1 = one per core (results do not depend on it)",
        callback=check_jobs,
    ),
]


def synth(
    species: Species,
    n_per_class: NPerClass = 8,
    out: Out = ...,  # required; declared after --n-per-class to keep the option order
    seed: Seed = 0,
    jobs: Processes = 2,
) -> None:
    """Simulate SYNTHETIC interneurons recorded with the Allen protocol (offline demo/tests).

    Writes one IPFX-readable NWB file per cell and OUT/cohort.csv. These are model cells,
    not recordings: never mix them with real data without the `synthetic` column.
    """
    import os

    from ..files import check_writable_folder
    from ..synthetic import SYNTHETIC_NOTICE, write_cohort

    check_writable_folder(out, f"--out {out}")
    if jobs == -1:
        jobs = os.cpu_count() or 1
    typer.secho(f"NOTE: {SYNTHETIC_NOTICE}", fg="yellow")
    table = write_cohort(species, n_per_class, out, seed=seed, jobs=jobs)
    counts = ", ".join(f"{k} {v}" for k, v in table["subclass"].value_counts().sort_index().items())
    typer.echo(
        f"wrote {len(table)} SYNTHETIC {species} cells ({counts}) from "
        f"{table['donor'].nunique()} synthetic donors to {out}; table: {out / 'cohort.csv'}"
    )


def register(app: typer.Typer, train_app: typer.Typer, evaluate_app: typer.Typer) -> None:
    """Add `synth` to the CLI."""
    app.command("synth")(synth)
