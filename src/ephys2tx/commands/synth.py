"""`ephys2tx synth`: write a SYNTHETIC Allen-protocol cohort (NWB files + cohort.csv)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer, train_app: typer.Typer, evaluate_app: typer.Typer) -> None:
    """Add this group's commands to the CLI."""

    @app.command("synth")
    def synth(
        species: str = typer.Option(..., help="mouse or human"),
        n_per_class: int = typer.Option(8, "--n-per-class", help="cells per subclass"),
        out: Path = typer.Option(..., "--out", help="output directory"),
        seed: int = typer.Option(0, help="random seed (same seed, same files)"),
        jobs: int = typer.Option(2, help="worker processes (results do not depend on it)"),
    ) -> None:
        """Simulate SYNTHETIC interneurons recorded with the Allen protocol (offline demo/tests).

        Writes one IPFX-readable NWB file per cell and OUT/cohort.csv. These are model cells,
        not recordings: never mix them with real data without the `synthetic` column.
        """
        from ..synthetic import SYNTHETIC_NOTICE, write_cohort

        typer.secho(f"NOTE: {SYNTHETIC_NOTICE}", fg="yellow")
        table = write_cohort(species.lower(), n_per_class, out, seed=seed, jobs=jobs)
        counts = ", ".join(
            f"{k} {v}" for k, v in table["subclass"].value_counts().sort_index().items()
        )
        typer.echo(
            f"wrote {len(table)} SYNTHETIC {species} cells ({counts}) from "
            f"{table['donor'].nunique()} synthetic donors to {out}; table: {out / 'cohort.csv'}"
        )
