"""Commands on the public tables: fetch, cells, embed, and the random forest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import track
from rich.table import Table

from ..datasets.cells import (
    build_cells,
    check_table_out,
    other_species_cells,
    usable_features,
    write_cell_table,
)
from ..datasets.fetch import fetch_all, resolve_data_dir, resolve_mirror
from ..datasets.sources import DATA_FILES
from ..errors import Ephys2txError
from ..schema import check_species
from .calibration import Alpha, Calibrate, TrustOption, print_trust
from .common import (
    AllowUnknownIds,
    DataDir,
    ExcludeIds,
    Folds,
    Labels,
    Mirror,
    OutDir,
    Overwrite,
    Protocol,
    Repeats,
    Seed,
    Species,
    check_out_dir,
    console,
    print_f1,
    training_cells,
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


def cells(
    species: Annotated[str, typer.Argument(help="mouse or human")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the table (.parquet or .csv).")
    ] = None,
    data_dir: DataDir = None,
    mirror: Mirror = None,
) -> None:
    """Build the harmonized cell table of one species and print QC counts per reason."""
    if out is not None:
        check_table_out(out)
    table, report = build_cells(species, data_dir, mirror)
    summary = Table(title=f"{species} cells: QC")
    summary.add_column("rule")
    summary.add_column("cells", justify="right")
    summary.add_row("input rows", str(report.n_input))
    for reason, count in report.dropped.items():
        summary.add_row(f"dropped: {reason}", str(count))
    summary.add_row("kept", str(report.n_kept), style="bold")
    console.print(summary)
    counts = table["label"].value_counts().sort_index()
    console.print("aligned labels: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    kept = usable_features(table)
    console.print(f"features measured in >= 20% of cells: {len(kept)} (others stay NaN)")
    if out is not None:
        write_cell_table(table, out)
        console.print(f"wrote {len(table)} cells to {out}")


def embed(
    species: Annotated[str, typer.Argument(help="mouse or human")],
    out: OutDir,
    labels: Labels = None,
    seed: Seed = 0,
    data_dir: DataDir = None,
    mirror: Mirror = None,
) -> None:
    """UMAP of the per-family sPCA space coloured by subclass, plus silhouette scores."""
    from ..report.figures import embedding_png
    from ..representations.embedding import embed_cells

    table, label = training_cells(species, labels, data_dir=data_dir, mirror=mirror)
    with console.status("sparse PCA per family, then UMAP"):
        result = embed_cells(table, usable_features(table), label, seed)
    out.mkdir(parents=True, exist_ok=True)
    png = embedding_png(result.coords, out / f"umap_{species}.png", f"{species}: sPCA → UMAP")
    payload = {"species": species, "label": label, **result.summary()}
    (out / f"silhouette_{species}.json").write_text(json.dumps(payload, indent=2))
    result.coords.to_csv(out / f"umap_{species}.csv", index=False)
    console.print(f"silhouette per class: {result.silhouette}")
    console.print(f"wrote {png}")


def train_rf(
    species: Species,
    out: Annotated[Path, typer.Option("--out", help="Model directory to write.")],
    labels: Labels = None,
    exclude_ids: ExcludeIds = None,
    inputs: Annotated[str, typer.Option("--inputs", help="raw or spca features.")] = "raw",
    calibrate: Calibrate = True,
    seed: Seed = 0,
    data_dir: DataDir = None,
    mirror: Mirror = None,
    allow_unknown_ids: AllowUnknownIds = False,
    overwrite: Overwrite = False,
) -> None:
    """Train the class-balanced random forest on all cells of a species and save it."""
    from ..models import recipes
    from .calibration import train_and_store

    check_out_dir(out, overwrite)
    table, label = training_cells(species, labels, exclude_ids, data_dir, mirror, allow_unknown_ids)
    train_and_store(
        out, lambda: recipes.forest(seed, inputs), table, label, species, f"rf-{inputs}",
        usable_features(table), calibrate=calibrate, seed=seed, data_dir=data_dir,
        mirror=mirror, doing=f"training forest on {len(table)} {species} cells",
    )  # fmt: skip


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
    from ..files import check_out_file, write_user_csv
    from ..models.bundle import META_FILE
    from ..predictor import load_model, read_cells

    check_out_file(out, "--out")
    if out.resolve() in {Path(p).resolve() for p in inputs or []}:
        raise Ephys2txError(f"--out {out} is one of the inputs; give another file for predictions")
    for option, path in (("--report", report), ("--json", json_out)):
        if path is not None:
            check_out_file(path, option)
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
    if not run.calibrated:
        console.print("[yellow]warning[/] no stored calibration: no prediction sets")
    note = run.missing_note()
    if note is not None:
        console.print(f"[yellow]warning[/] {note}", soft_wrap=True)
    if run.batch_note is not None:  # the batch-wide `lab_shift` flag, said once
        console.print(f"[yellow]warning[/] {run.batch_note}", soft_wrap=True)
    write_user_csv(predictions, out)  # atomic; formula-like text neutralized
    if json_out is not None:
        write_json_atomic(run.mapping, json_out)
        console.print(f"wrote the per-level distributions of {len(table)} cells to {json_out}")
    card = predictor.card
    shown = Table(title=f"{card.kind} ({card.species}, {card.label}) predictions")
    for column in predictor.shown_columns:
        shown.add_column(column)
    for row in predictions[predictor.shown_columns].head(20).itertuples(index=False):
        shown.add_row(*(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row))
    console.print(shown)
    console.print(
        f"wrote {len(predictions)} predictions to {out} (alpha {alpha:g}): "
        f"{run.n_confident} confident, {run.n_flagged} flagged"
    )
    if report is not None:
        from .cell_report import write_predict_report

        write_predict_report(report, predictor, table, run, alpha)
        console.print(f"wrote the per-cell report to {report}")
    if strict and len(predictions) and run.n_flagged == len(predictions):
        console.print(
            "error: --strict: every cell is flagged (see the flags column); "
            "drop --strict to accept flagged calls"
        )
        raise typer.Exit(1)


def write_json_atomic(payload: dict, path: Path) -> None:
    """Write JSON (numpy scalars as plain numbers) into place only once it is complete."""

    def plain(value):
        if hasattr(value, "item"):
            return value.item()
        raise TypeError(f"not JSON serializable: {type(value)}")

    from ..files import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(payload, indent=1, default=plain))


def evaluate_rf(
    species: Species,
    out: OutDir,
    labels: Labels = None,
    protocol: Protocol = "grouped",
    repeats: Repeats = 3,
    folds: Folds = 5,
    inputs: Annotated[str, typer.Option("--inputs", help="raw, spca or both.")] = "both",
    trust: TrustOption = True,
    alpha: Alpha = 0.1,
    seed: Seed = 0,
    data_dir: DataDir = None,
    mirror: Mirror = None,
) -> None:
    """Cross-validate the forest on raw features and on sPCA components (same folds)."""
    from ..evaluation.run import evaluate
    from ..evaluation.splits import protocol_splitter
    from ..models import recipes
    from ..models.forest import INPUTS
    from ..study.outputs import write_evaluation, write_trust

    table, label = training_cells(species, labels, data_dir=data_dir, mirror=mirror)
    features = usable_features(table)
    chosen = INPUTS if inputs == "both" else (inputs,)
    if any(i not in INPUTS for i in chosen):
        raise Ephys2txError(f"unknown --inputs {inputs!r}; choose raw, spca or both")
    nested = (
        {"alpha": alpha, "other": other_species_cells(species, data_dir, mirror)} if trust else None
    )
    splitter = protocol_splitter(protocol, species, folds, repeats, seed)
    for kind in chosen:
        result, metrics = evaluate(
            recipes.forest(seed, kind),
            table,
            species,
            label,
            features,
            splitter,
            description=f"forest ({kind})",
            trust=nested if kind == "raw" else None,  # sPCA refits per inner fold: too slow
            model=f"rf-{kind}",
        )
        target = out if len(chosen) == 1 else out / kind
        write_evaluation(target, result, metrics, f"{species} {label}: forest on {kind}")
        print_f1(f"rf-{kind}", species, label, protocol, metrics, target)
        if result.trust is not None:
            summary = write_trust(target, result.trust, f"{species} forest")
            print_trust(summary, target)


def register(app: typer.Typer, train_app: typer.Typer, evaluate_app: typer.Typer) -> None:
    """Add this group's commands to the CLI."""
    app.command()(fetch)
    app.command()(cells)
    app.command()(embed)
    app.command()(predict)
    train_app.command("rf")(train_rf)
    evaluate_app.command("rf")(evaluate_rf)
