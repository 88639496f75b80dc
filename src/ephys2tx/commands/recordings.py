"""Commands for raw recordings: `fetch-nwb` (DANDI Patch-seq files) and `inspect FILE`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from ..console import console, stdout

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
RecordingPath = Annotated[
    Path, typer.Argument(help="An .abf or .nwb recording, or a folder of them.")
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
    from ..files import check_writable_folder

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


def _fmt(value: float | None, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def _sweep_table(recording):
    from rich.table import Table

    table = Table(title=f"{recording.source.name}: {len(recording.sweeps)} current-clamp sweeps")
    table.add_column("sweep", justify="right")
    table.add_column("stimulus", no_wrap=True)
    for name in ("pA", "start s", "end s", "length s", "kHz"):
        table.add_column(name, justify="right")
    table.add_column("code")
    for s in recording.sweeps:
        table.add_row(
            str(s.sweep_number),
            s.stimulus_type,
            _fmt(s.amplitude, ".1f"),
            _fmt(s.stim_start, ".4f"),
            _fmt(s.stim_end, ".4f"),
            _fmt(s.duration, ".3f"),
            _fmt(s.sampling_rate / 1000, ".1f"),
            s.stimulus_code or "",
        )
    return table


def _folder_table(folder: Path):
    """One row per recording of a folder; unreadable files show their reason."""
    from collections import Counter

    from rich.table import Table

    from ..errors import Ephys2txError
    from ..recordings.read import read_folder

    folder = folder.expanduser()
    table = Table(title=str(folder))
    for name in ("file", "sweeps", "stimuli", "problem"):
        table.add_column(name)
    for path, result in read_folder(folder):
        name = str(path.relative_to(folder))  # subfolders are read too
        if isinstance(result, Ephys2txError):
            table.add_row(name, "-", "-", str(result).removeprefix(f"{path}: "))
            continue
        kinds = Counter(s.stimulus_type for s in result.sweeps)
        dropped = len(result.metadata.get("dropped_sweeps", []))
        table.add_row(
            name,
            str(len(result.sweeps)),
            ", ".join(f"{k} x{n}" for k, n in kinds.most_common()),
            f"{dropped} sweeps skipped" if dropped else "",
        )
    return table


def inspect(path: RecordingPath) -> None:
    """Print the sweeps of a recording (number, stimulus, amplitude, timing, rate); for a
    folder, one line per file."""
    from ..recordings.read import read_recording

    if path.is_dir():
        stdout.print(_folder_table(path))
        return
    recording = read_recording(path)
    stdout.print(_sweep_table(recording))
    for number, reason in recording.metadata.get("dropped_sweeps", []):
        stdout.print(f"skipped sweep {number}: {reason}")


def register(app: typer.Typer, train_app: typer.Typer, evaluate_app: typer.Typer) -> None:
    """Add `fetch-nwb` and `inspect` to the CLI."""
    app.command("fetch-nwb")(fetch_nwb)
    app.command("inspect")(inspect)
