"""`predict`: a thin layer over `ephys2tx.predictor` that reads, writes and prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..console import console
from ..errors import Ephys2txError
from ..schema import check_species
from .common import (
    Alpha,
    DataDir,
    Mirror,
)

# The options of `predict`.
PredictModel = Annotated[
    Path,
    typer.Argument(help="A directory written by `ephys2tx train` (with --species: a cell input)."),
]
PredictInputs = Annotated[
    list[Path] | None,
    typer.Argument(help="Cell tables (.parquet/.csv), recordings (.nwb/.abf) or folders."),
]
PredictOut = Annotated[Path, typer.Option("--out", help="CSV of predictions.")]
FeaturesDir = Annotated[
    Path | None,
    typer.Option(
        "--features-dir", help="Where extracted features of recordings go (default: next to --out)."
    ),
]
DefaultSpecies = Annotated[
    str | None,
    typer.Option("--species", help="No MODEL_DIR: use the cached default model of a species."),
]
JsonOut = Annotated[
    Path | None, typer.Option("--json", help="Hierarchical models: full distribution per level.")
]
Strict = Annotated[
    bool, typer.Option("--strict", help="Exit with status 1 when every cell is flagged.")
]
ReportOut = Annotated[
    Path | None,
    typer.Option("--report", help="Also write a per-cell HTML report (one card per cell)."),
]
FeatureMap = Annotated[
    Path | None,
    typer.Option(
        "--feature-map",
        help="Your pipeline's columns as canonical features (CSV or YAML; "
        "docs/guides/crosswalks.md). Known pipelines are recognized without one.",
    ),
]


def predict(
    model_dir: PredictModel,
    inputs: PredictInputs = None,
    out: PredictOut = Path("predictions.csv"),
    features_dir: FeaturesDir = None,
    species: DefaultSpecies = None,
    json_out: JsonOut = None,
    data_dir: DataDir = None,
    mirror: Mirror = None,
    alpha: Alpha = 0.1,
    strict: Strict = False,
    report: ReportOut = None,
    feature_map: FeatureMap = None,
) -> None:
    """Predict subclasses with probabilities, a conformal set, flags and novelty per cell.

    `predict --species human|mouse CELLS...` needs no model: it uses the default model
    (subclass, then t-type), trained from the public tables on first use and cached."""
    from ..files import write_user_csv
    from ..models.bundle import META_FILE
    from ..predictor import load_model, read_cells

    _check_outputs(out, inputs, {"--report": report, "--json": json_out})
    if species is None:
        if not inputs:
            raise Ephys2txError(
                "give cells to predict after MODEL_DIR, or use `predict --species human|mouse "
                "CELLS... --out F` for the default model"
            )
        predictor = load_model(model_dir)
    else:
        if (model_dir / META_FILE).is_file():
            raise Ephys2txError(
                f"{model_dir} is a model directory: give either MODEL_DIR or --species, not both"
            )
        inputs = [model_dir, *(inputs or [])]
        species = check_species(species)
    features_dir = features_dir or out.with_name(out.stem + "_features")
    table = read_cells(inputs, features_dir, feature_map)
    if species is not None:  # the cells decide: the default model, or one on their features
        predictor = load_model(species, data_dir=data_dir, mirror=mirror, cells=table)
    if json_out is not None and predictor.kind != "hierarchical":
        raise Ephys2txError("--json needs a hierarchical model (`predict --species ...`)")
    run = predictor.run(table, alpha)
    predictions = run.table
    _print_warnings(run)
    write_user_csv(predictions, out)  # atomic; formula-like text neutralized
    if json_out is not None:
        write_json_atomic(run.mapping, json_out)
        console.print(f"wrote the per-level distributions of {len(table)} cells to {json_out}")
    _print_head(predictor, predictions)
    console.print(
        f"wrote {len(predictions)} predictions to {out} (alpha {alpha:g}): "
        f"{run.n_confident} confident, {run.n_flagged} flagged"
    )
    if report is not None:
        from .predict_report import write_predict_report

        write_predict_report(report, predictor, table, run, alpha)
        console.print(f"wrote the per-cell report to {report}")
    if strict and len(predictions) and run.n_flagged == len(predictions):
        console.print(
            "error: --strict: every cell is flagged (see the flags column); "
            "drop --strict to accept flagged calls"
        )
        raise typer.Exit(1)


def _check_outputs(out: Path, inputs: list[Path] | None, others: dict[str, Path | None]) -> None:
    """Every output is a writable file, and --out is none of the inputs (checked before work)."""
    from ..files import check_out_file

    check_out_file(out, "--out")
    if out.resolve() in {Path(p).resolve() for p in inputs or []}:
        raise Ephys2txError(f"--out {out} is one of the inputs; give another file for predictions")
    for option, path in others.items():
        if path is not None:
            check_out_file(path, option)


def _print_warnings(run) -> None:
    """What the user must know before reading the table: no sets, missing columns, lab shift."""
    if not run.calibrated:
        console.print("[yellow]warning[/] no stored calibration: no prediction sets")
    note = run.missing_note()
    if note is not None:
        console.print(f"[yellow]warning[/] {note}")
    if run.batch_note is not None:  # the batch-wide `lab_shift` flag, said once
        console.print(f"[yellow]warning[/] {run.batch_note}")


def _print_head(predictor, predictions) -> None:
    """The first 20 rows of the model's most telling columns."""
    card = predictor.card
    shown = Table(title=f"{card.kind} ({card.species}, {card.label}) predictions")
    for column in predictor.shown_columns:
        shown.add_column(column)
    for row in predictions[predictor.shown_columns].head(20).itertuples(index=False):
        shown.add_row(*(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row))
    console.print(shown)


def write_json_atomic(payload: dict, path: Path) -> None:
    """Write JSON (numpy scalars as plain numbers) into place only once it is complete."""

    def plain(value):
        if hasattr(value, "item"):
            return value.item()
        raise TypeError(f"not JSON serializable: {type(value)}")

    from ..files import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(payload, indent=1, default=plain))


def register(app: typer.Typer, train_app: typer.Typer, evaluate_app: typer.Typer) -> None:
    """Add this verb's commands to the CLI."""
    app.command()(predict)
