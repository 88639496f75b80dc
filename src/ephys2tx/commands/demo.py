"""`ephys2tx demo`: the pipeline end to end on a SYNTHETIC cohort, offline, in minutes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from .common import Seed, console

# two workers, or one on a one-core machine (more than its cores is an error in `extract`)
DEFAULT_WORKERS = min(2, os.cpu_count() or 1)


def demo(
    out: Annotated[Path, typer.Option("--out", help="Output directory (reused on rerun).")] = Path(
        "ephys2tx-demo"
    ),
    n_per_class: Annotated[
        int, typer.Option("--n-per-class", help="Synthetic cells per subclass and species.")
    ] = 4,
    seed: Seed = 0,
    workers: Annotated[
        int, typer.Option("--workers", help="Local Dask workers for simulation and extraction.")
    ] = DEFAULT_WORKERS,
    transfer: Annotated[
        bool, typer.Option("--transfer/--no-transfer", help="Also train mouse → human transfer.")
    ] = True,
) -> None:
    """Simulate a SYNTHETIC mouse and human cohort, extract, train, evaluate, write a report.

    Needs no network and no downloaded data. Writes OUT/results.json, OUT/report.html
    (every section labelled SYNTHETIC) and trained models under OUT/models/.
    """
    from ..study.run import demo as run
    from ..study.run import score_lines
    from ..synthetic import SYNTHETIC_NOTICE

    console.print(f"[yellow]NOTE: {SYNTHETIC_NOTICE}[/]")
    results = run(out, n_per_class, seed, workers, transfer)
    console.print("SYNTHETIC human cells, donor-grouped folds:\n" + "\n".join(score_lines(results)))
    console.print(
        f"wrote {out / 'results.json'}, {out / 'report.html'} and models in {out / 'models'}"
    )


def register(app: typer.Typer, train_app: typer.Typer, evaluate_app: typer.Typer) -> None:
    """Add `demo` to the CLI."""
    app.command("demo")(demo)
