"""Commands of the hierarchical reference model: `train reference`, `evaluate reference`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import typer

from ..schema import SET_SEPARATOR, split_joined
from .calibration import Alpha
from .common import (
    AllowUnknownIds,
    DataDir,
    ExcludeIds,
    Folds,
    Jobs,
    Mirror,
    ModelDir,
    OutDir,
    Overwrite,
    Repeats,
    Seed,
    Species,
    check_out_dir,
    console,
    training_cells,
)


def train_reference_cmd(
    species: Species,
    out: ModelDir,
    exclude_ids: ExcludeIds = None,
    allow_unknown_ids: AllowUnknownIds = False,
    overwrite: Overwrite = False,
    seed: Seed = 0,
    jobs: Jobs = -1,
    data_dir: DataDir = None,
    mirror: Mirror = None,
) -> None:
    """Train the hierarchical reference model (subclass, then t-type) with conformal sets."""
    from ..reference import save_reference, train_reference

    check_out_dir(out, overwrite)
    cells, _ = training_cells(species, None, exclude_ids, data_dir, mirror, allow_unknown_ids)
    with console.status(f"training and calibrating the reference model on {len(cells)} cells"):
        fit, card = train_reference(species, cells, data_dir, mirror, seed=seed, n_jobs=jobs)
    save_reference(out, fit, card, cells, seed, data_dir, mirror)
    tax = fit.taxonomy
    console.print(
        f"saved the {species} reference model ({len(tax.subclasses)} subclasses, "
        f"{len(tax.t_types)} t-types with >= {tax.min_cells} cells) to {out}"
    )


def evaluate_reference_cmd(
    species: Species,
    out: OutDir,
    repeats: Repeats = 3,
    folds: Folds = 5,
    alpha: Alpha = 0.1,
    seed: Seed = 0,
    jobs: Jobs = 1,
    data_dir: DataDir = None,
    mirror: Mirror = None,
) -> None:
    """Cross-validate the reference model per level on donor-grouped folds, with figures."""
    from ..evaluation.splits import DonorKFold
    from ..reference import evaluate_reference_model, write_reference_evaluation

    splitter = DonorKFold(folds, repeats, seed)
    result = evaluate_reference_model(
        species, splitter, alpha, jobs, data_dir=data_dir, mirror=mirror
    )
    write_reference_evaluation(out, result, species)
    m = result.metrics
    for level in ("subclass", "t_type"):
        s = m[level]
        console.print(
            f"{species} {level}: accuracy {s['accuracy']['mean']:.3f}, macro-F1 "
            f"{s['macro_f1']['mean']:.3f} ± {s['macro_f1']['sd']:.3f}, balanced accuracy "
            f"{s['balanced_accuracy']['mean']:.3f}; coverage {s['coverage']['mean']:.3f} at "
            f"alpha {alpha}, mean set size {s['mean_set_size']['mean']:.2f}"
        )
    sub = m["subclass"]
    if "ece_unscaled" in sub:
        console.print(
            f"{species} subclass ECE {sub['ece']:.3f} with the temperature fitted in each "
            f"training fold (median T {sub['temperature_median']:.2f}); "
            f"without it {sub['ece_unscaled']:.3f}"
        )
    wrong = m["t_type"]["errors_with_right_subclass"]["mean"]
    console.print(f"t-type wrong but subclass right: {wrong:.3f}; wrote {out}/metrics.json")


def register(app: typer.Typer, train_app: typer.Typer, evaluate_app: typer.Typer) -> None:
    """Add this group's commands to the CLI."""
    train_app.command("reference")(train_reference_cmd)
    evaluate_app.command("reference")(evaluate_reference_cmd)


def resolve_predict_model(
    model_dir: Path, inputs: list[Path], species: str | None, data_dir=None, mirror=None
) -> tuple[Path | None, list[Path]]:
    """`predict MODEL_DIR CELLS...` as before; with `--species`, the first argument is a cell
    input too and the model is None: the cells decide it (`reference_model_for`)."""
    from ..datasets.cells import check_species
    from ..errors import Ephys2txError
    from ..models.bundle import META_FILE

    if species is None:
        if not inputs:
            raise Ephys2txError(
                "give cells to predict after MODEL_DIR, or use `predict --species human|mouse "
                "CELLS... --out F` for the reference model"
            )
        return model_dir, inputs
    if (model_dir / META_FILE).is_file():
        raise Ephys2txError(
            f"{model_dir} is a model directory: give either MODEL_DIR or --species, not both"
        )
    check_species(species)
    return None, [model_dir, *inputs]


def reference_model_for(species: str, table, data_dir=None, mirror=None) -> Path:
    """The species' cached reference model for these cells: the default one, or the one on
    the features they measure (trained if absent)."""
    from ..reference import reference_for_table

    return reference_for_table(species, table, data_dir, mirror, say=console.print)


def write_mapping(estimator, card, table, alpha: float, json_out: Path | None):
    """The MapMyCells-style table of a reference model; `--json` gets the full distribution."""
    from ..models.mapping import predict_mapping

    mapping = predict_mapping(estimator, card, table, alpha)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        tmp = json_out.with_name(f".{json_out.name}.part")
        tmp.write_text(json.dumps(mapping.json, indent=1, default=_plain))
        tmp.replace(json_out)
        console.print(f"wrote the per-level distributions of {len(table)} cells to {json_out}")
    return mapping.table


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value)}")


def is_reference_model(model_dir: Path) -> bool:
    """True for a directory written by `train reference` or the reference cache."""
    from ..models.bundle import META_FILE, read_card

    return (model_dir / META_FILE).is_file() and read_card(model_dir).kind == "reference"


def predict_reference(model_dir: Path, table, alpha: float, json_out: Path | None):
    """MapMyCells-style predictions of a reference model directory with the trust columns
    (the subclass set is the prediction set); also the model columns the table lacked."""
    from threadpoolctl import threadpool_limits

    from ..models.bundle import align_features, load_model
    from ..models.mapping import reference_features
    from ..models.trusted import load_reference, trust_table

    estimator, card = load_model(model_dir)
    # one OpenMP/BLAS thread: on 2 shared cores the boosted trees' threads oversubscribe
    # (mouse, 100 cells: 2.9 s with one thread, 5.8-12.5 s without, load average 3.5)
    with threadpool_limits(limits=1):
        mapping = write_mapping(estimator, card, table, alpha, json_out)
    _, missing = align_features(table, reference_features(card))
    classes = list(card.classes)
    proba = mapping[[f"p_{c}" for c in classes]].to_numpy()
    sets = [split_joined(s, SET_SEPARATOR) for s in mapping["subclass_set"]]
    calibrated = mapping["subclass_set"].astype(bool).any()
    trust = trust_table(
        table, proba, classes, sets if calibrated else None, load_reference(model_dir)
    )
    at = mapping.columns.get_loc(f"p_{classes[-1]}") + 1
    predictions = pd.concat([mapping.iloc[:, :at], trust, mapping.iloc[:, at:]], axis=1)
    return predictions, missing, card
