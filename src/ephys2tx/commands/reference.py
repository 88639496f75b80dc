"""Commands of the hierarchical reference model: `train reference`, `evaluate reference`."""

from __future__ import annotations

import typer

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
    from ..default_model import save_default_model, train_default_model

    check_out_dir(out, overwrite)
    cells, _ = training_cells(species, None, exclude_ids, data_dir, mirror, allow_unknown_ids)
    with console.status(f"training and calibrating the reference model on {len(cells)} cells"):
        fit, card = train_default_model(species, cells, data_dir, mirror, seed=seed, n_jobs=jobs)
    save_default_model(out, fit, card, cells, seed, data_dir, mirror)
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
    from ..default_model import evaluate_default_model, write_default_model_evaluation
    from ..evaluation.splits import DonorKFold

    splitter = DonorKFold(folds, repeats, seed)
    result = evaluate_default_model(
        species, splitter, alpha, jobs, data_dir=data_dir, mirror=mirror
    )
    write_default_model_evaluation(out, result, species)
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
