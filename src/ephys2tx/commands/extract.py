"""`ephys2tx extract PATH... --out DIR`: one-pass IPFX features of many recordings on Dask."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import FileSpecies, console

Paths = Annotated[
    list[Path],
    typer.Argument(help="Recording files (.abf, .nwb) or folders (subfolders included)."),
]
Out = Annotated[Path, typer.Option("--out", help="Output folder (cells.parquet, h5, errors.csv).")]
Workers = Annotated[int, typer.Option("--workers", help="Local Dask worker processes.")]
Scheduler = Annotated[
    str | None,
    typer.Option("--scheduler", help="Address of a running Dask scheduler (e.g. tcp://host:8786)."),
]
Dashboard = Annotated[
    bool,
    typer.Option("--dashboard", help="Serve the Dask dashboard (port 8787, or the next free)."),
]
MemoryLimit = Annotated[
    str, typer.Option("--memory-limit", help="Memory bound per local worker (e.g. 2GiB).")
]


def extract(
    paths: Paths,
    out: Out,
    workers: Workers = 1,
    scheduler: Scheduler = None,
    species: FileSpecies = None,
    memory_limit: MemoryLimit = "2GiB",
    dashboard: Dashboard = False,
) -> None:
    """Extract IPFX scalar features and feature vectors; finished files are cached and skipped.

    Exits with status 2 when no file gave a cell; every file without a cell is in errors.csv.
    """
    from ..errors import Ephys2txError
    from ..features.analysis import OK
    from ..features.batch import CELLS_FILE, ERRORS_FILE, FV_FILE, run_batch
    from ..recordings.read import expand_recordings

    if scheduler and workers != 1:
        raise Ephys2txError("--workers and --scheduler exclude each other; give one of them")
    files, found = expand_recordings(paths)
    for line in found:
        console.print(line, highlight=False)
    if not files:
        raise Ephys2txError(
            "no recordings to extract; pass .abf/.nwb files or folders holding them"
        )
    result = run_batch(
        files, out, workers=workers, scheduler=scheduler, species=species,
        memory_limit=memory_limit, dashboard=dashboard,
    )  # fmt: skip
    for note in result.warnings:
        console.print(f"[yellow]warning[/] {note}", highlight=False)
    for row in result.errors.head(10).itertuples(index=False):
        console.print(
            f"[yellow]no cell[/] {row.file} ({row.stage}): {row.reason}",
            highlight=False,
        )
    if len(result.errors) > 10:
        console.print(f"... and {len(result.errors) - 10} more in {out / ERRORS_FILE}")
    n_ok = int((result.cells["status"] == OK).sum()) if len(result.cells) else 0
    console.print(
        f"{len(result.cells)} cells ({n_ok} with every family, {result.n_cached} from cache), "
        f"{len(result.errors)} errors in {result.seconds:.1f} s -> {out / CELLS_FILE}, "
        f"{out / FV_FILE}, {out / ERRORS_FILE}",
        highlight=False,
    )
    if result.cells.empty:
        raise Ephys2txError(
            f"no cell could be extracted from {len(files)} file(s); the reasons are above and "
            f"in {out / ERRORS_FILE}"
        )


def register(app: typer.Typer, train_app: typer.Typer, evaluate_app: typer.Typer) -> None:
    """Add `extract` to the CLI."""
    app.command("extract")(extract)
