"""`ephys2tx extract PATH... --out DIR`: one-pass IPFX features of many recordings on Dask."""

from __future__ import annotations

from pathlib import Path

import typer


def _expand(paths: list[Path]) -> list[Path]:
    """Files as given; folders become their .abf/.nwb files."""
    from ..recordings.read import recording_files

    out: list[Path] = []
    for p in paths:
        out.extend(recording_files(p) if p.is_dir() else [p])
    return out


def _extract(
    paths: list[Path] = typer.Argument(..., help="Recording files (.abf, .nwb) or folders."),
    out: Path = typer.Option(..., "--out", help="Output folder (cells.parquet, h5, errors.csv)."),
    workers: int = typer.Option(1, "--workers", help="Local Dask worker processes."),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Address of a running Dask scheduler (e.g. tcp://host:8786)."
    ),
    species: str | None = typer.Option(
        None, "--species", help="mouse or human (default: as the file says)."
    ),
    memory_limit: str = typer.Option("2GiB", "--memory-limit", help="Memory bound per worker."),
) -> None:
    """Extract IPFX scalar features and feature vectors; finished files are cached and skipped."""
    from rich.console import Console

    from ..datasets.cells import check_species
    from ..errors import Ephys2txError
    from ..features.batch import CELLS_FILE, ERRORS_FILE, FV_FILE, run_batch

    if species is not None:
        check_species(species)
    if scheduler and workers != 1:
        raise Ephys2txError("--workers and --scheduler exclude each other; give one of them")
    files = _expand(paths)
    result = run_batch(
        files, out, workers=workers, scheduler=scheduler, species=species, memory_limit=memory_limit
    )
    console = Console(stderr=True)
    n_ok = int((result.cells["status"] == "ok").sum()) if len(result.cells) else 0
    console.print(
        f"{len(result.cells)} cells ({n_ok} with every family, {result.n_cached} from cache), "
        f"{len(result.errors)} errors in {result.seconds:.1f} s -> {out / CELLS_FILE}, "
        f"{out / FV_FILE}, {out / ERRORS_FILE}"
    )


def register(app: typer.Typer, train_app: typer.Typer, evaluate_app: typer.Typer) -> None:
    """Add `extract` to the CLI."""
    app.command("extract")(_extract)
