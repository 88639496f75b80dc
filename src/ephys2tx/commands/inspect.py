"""`inspect`: what a recording (or a folder of them) holds, sweep by sweep."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..console import stdout
from ..errors import Ephys2txError

RecordingPath = Annotated[
    Path, typer.Argument(help="An .abf or .nwb recording, or a folder of them.")
]


def _fmt(value: float | None, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def _sweep_table(recording):

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
    """Add this verb's commands to the CLI."""
    app.command("inspect")(inspect)
