"""The `fetch` verbs: `fetch` (the pinned public tables) and `fetch-nwb` (DANDI recordings)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import track

from ..console import console
from ..datasets.fetch import fetch_all, resolve_data_dir, resolve_mirror
from ..datasets.sources import DATA_FILES
from ..files import check_writable_folder
from .common import (
    DataDir,
    Mirror,
)


def fetch(data_dir: DataDir = None, mirror: Mirror = None) -> None:
    """Download the pinned public tables (or copy them from a mirror) and verify sha256."""
    from ..datasets.fetch import REPAIRED_NOTE, altered_files

    root = resolve_data_dir(data_dir)
    source = resolve_mirror(mirror) or "raw.githubusercontent.com (pinned commits)"
    console.print(f"fetching {len(DATA_FILES)} files from {source} into {root}")
    names = list(DATA_FILES)
    for name in track(names, description="fetching", console=console, transient=True):
        note = f" ({REPAIRED_NOTE})" if altered_files(root, [name]) else ""
        fetch_all(root, resolve_mirror(mirror), [name])
        console.print(f"  [green]ok[/] {name}{note}")


Dandiset = Annotated[
    str,
    typer.Option("--dandiset", help="000020 (mouse, Gouwens 2020) or 000636 (human, Lee 2023)."),
]


NwbOut = Annotated[Path, typer.Option("--out", help="Folder for the NWB files (dandiset layout).")]


Limit = Annotated[int | None, typer.Option("--limit", help="Download only the first N files.")]


Version = Annotated[
    str | None,
    typer.Option("--version", help="Dandiset version (default: latest published, else draft)."),
]


def fetch_nwb(
    dandiset: Dandiset, out: NwbOut, limit: Limit = None, version: Version = None
) -> None:
    """Download Patch-seq NWB files from DANDI, resumable and sha256-verified."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from ..datasets.dandi import fetch_assets, list_assets

    check_writable_folder(out, f"--out {out}")  # before the listing: a bad --out fails at once
    with console.status(f"listing dandiset {dandiset} ..."):
        assets = list_assets(dandiset, limit=limit, version=version)
    if not assets:
        console.print(f"dandiset {dandiset} has no NWB assets")
        return
    total = sum(a.size or 0 for a in assets) or None
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    skipped = 0
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"{len(assets)} files", total=total)

        def on_start(asset, complete: bool) -> None:
            nonlocal skipped
            progress.update(task, description=Path(asset.path).name)
            if complete:
                skipped += 1
                progress.advance(task, asset.size or 0)

        paths = fetch_assets(
            assets, out, on_start=on_start, on_bytes=lambda n: progress.advance(task, n)
        )
    typer.echo(
        f"{len(paths)} NWB files in {out} ({skipped} already complete, "
        f"{len(paths) - skipped} downloaded and verified)"
    )


def register(app: typer.Typer, train_app: typer.Typer, evaluate_app: typer.Typer) -> None:
    """Add this verb's commands to the CLI."""
    app.command()(fetch)
    app.command("fetch-nwb")(fetch_nwb)
