"""`ephys2tx extract PATH... --out DIR`: one-pass IPFX features of many recordings on Dask."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer


def _expand(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """Files as given; folders become their .abf/.nwb files, subfolders included.

    Returns the files (each once) and one line per folder saying how many were found where.
    A path that does not exist stays in the list and becomes a row of errors.csv.
    """
    from ..errors import Ephys2txError
    from ..recordings.read import recording_files

    files: list[Path] = []
    found: list[str] = []
    for p in paths:
        if not p.is_dir():
            files.append(p)
            continue
        try:
            inside = recording_files(p)
        except Ephys2txError as exc:
            found.append(str(exc))
            continue
        where = Counter(str(f.parent.relative_to(p)) for f in inside)
        shown = ", ".join(
            f"{n} in {p if sub == '.' else p / sub}" for sub, n in sorted(where.items())
        )
        found.append(f"{p}: {len(inside)} recording(s): {shown}")
        files.extend(inside)
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, found


def _extract(
    paths: list[Path] = typer.Argument(
        ..., help="Recording files (.abf, .nwb) or folders (subfolders included)."
    ),
    out: Path = typer.Option(..., "--out", help="Output folder (cells.parquet, h5, errors.csv)."),
    workers: int = typer.Option(1, "--workers", help="Local Dask worker processes."),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Address of a running Dask scheduler (e.g. tcp://host:8786)."
    ),
    species: str | None = typer.Option(
        None, "--species", help="mouse or human (default: as the file says)."
    ),
    memory_limit: str = typer.Option(
        "2GiB", "--memory-limit", help="Memory bound per local worker (e.g. 2GiB)."
    ),
) -> None:
    """Extract IPFX scalar features and feature vectors; finished files are cached and skipped.

    Exits with status 2 when no file gave a cell; every file without a cell is in errors.csv.
    """
    from rich.console import Console

    from ..datasets.cells import check_species
    from ..errors import Ephys2txError
    from ..features.batch import CELLS_FILE, ERRORS_FILE, FV_FILE, run_batch

    console = Console(stderr=True)
    if species is not None:
        check_species(species)
    if scheduler and workers != 1:
        raise Ephys2txError("--workers and --scheduler exclude each other; give one of them")
    files, found = _expand(paths)
    for line in found:
        console.print(line, highlight=False, soft_wrap=True)
    if not files:
        raise Ephys2txError(
            "no recordings to extract; pass .abf/.nwb files or folders holding them"
        )
    result = run_batch(
        files, out, workers=workers, scheduler=scheduler, species=species, memory_limit=memory_limit
    )
    for note in result.warnings:
        console.print(f"[yellow]warning[/] {note}", highlight=False, soft_wrap=True)
    for row in result.errors.head(10).itertuples(index=False):
        console.print(
            f"[yellow]no cell[/] {row.file} ({row.stage}): {row.reason}",
            highlight=False,
            soft_wrap=True,
        )
    if len(result.errors) > 10:
        console.print(f"... and {len(result.errors) - 10} more in {out / ERRORS_FILE}")
    n_ok = int((result.cells["status"] == "ok").sum()) if len(result.cells) else 0
    console.print(
        f"{len(result.cells)} cells ({n_ok} with every family, {result.n_cached} from cache), "
        f"{len(result.errors)} errors in {result.seconds:.1f} s -> {out / CELLS_FILE}, "
        f"{out / FV_FILE}, {out / ERRORS_FILE}",
        highlight=False,
        soft_wrap=True,
    )
    if result.cells.empty:
        raise Ephys2txError(
            f"no cell could be extracted from {len(files)} file(s); the reasons are above and "
            f"in {out / ERRORS_FILE}"
        )


def register(app: typer.Typer, train_app: typer.Typer, evaluate_app: typer.Typer) -> None:
    """Add `extract` to the CLI."""
    app.command("extract")(_extract)
