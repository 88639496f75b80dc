"""`train bilstm|transfer` and `evaluate bilstm|transfer`: the family BiLSTM and transfer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..datasets.cells import other_species_cells
from ..errors import Ephys2txError
from ..evaluation import LEARNING_CURVE_FRACTIONS
from ..models import TRANSFER_METHODS
from .calibration import Alpha, Calibrate, print_trust
from .common import (
    AllowUnknownIds,
    DataDir,
    ExcludeIds,
    Folds,
    Jobs,
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
    exclude_specimens,
    print_f1,
    training_cells,
)

Members = Annotated[
    int,
    typer.Option("--members", min=1, help="Networks averaged, each early-stopped on other donors."),
]
NestedTrust = Annotated[
    bool,
    typer.Option(
        "--trust/--no-trust",
        help="Also measure coverage, set size, confident calls and ECE with calibration nested "
        "in each outer fold (refits the networks: 6x the time).",
    ),
]


def _one_of(method: str, allowed: tuple[str, ...]) -> str:
    if method not in allowed:
        raise Ephys2txError(f"unknown --method {method!r}; choose one of: {', '.join(allowed)}")
    return method


def _check_method(method: str) -> str:
    """--method is a transfer method (checked while the command line is parsed)."""
    return _one_of(method, TRANSFER_METHODS)


def _check_method_or_all(method: str) -> str:
    """--method is a transfer method or `all`."""
    return _one_of(method, ("all", *TRANSFER_METHODS))


Method = Annotated[
    str,
    typer.Option("--method", help=", ".join(TRANSFER_METHODS) + ".", callback=_check_method),
]
MethodOrAll = Annotated[
    str,
    typer.Option(
        "--method",
        help=", ".join(TRANSFER_METHODS) + " or all (compare them).",
        callback=_check_method_or_all,
    ),
]


def train_bilstm(
    species: Species,
    out: OutDir,
    labels: Labels = None,
    exclude_ids: ExcludeIds = None,
    members: Members = 3,
    calibrate: Calibrate = True,
    seed: Seed = 0,
    data_dir: DataDir = None,
    mirror: Mirror = None,
    allow_unknown_ids: AllowUnknownIds = False,
    overwrite: Overwrite = False,
) -> None:
    """Train the attention BiLSTM over feature families on all cells of a species."""
    from ..models import recipes
    from .calibration import train_and_store

    check_out_dir(out, overwrite)
    table, label = training_cells(species, labels, exclude_ids, data_dir, mirror, allow_unknown_ids)
    recipe = recipes.NetworkRecipe(seed=seed, bilstm_members=members)
    train_and_store(
        out, lambda: recipes.bilstm(recipe), table, label, species, "bilstm", None,
        calibrate=calibrate, seed=seed, data_dir=data_dir, mirror=mirror,
        doing=f"training BiLSTM on {len(table)} {species} cells",
    )  # fmt: skip


def train_transfer(
    out: OutDir,
    method: Method = "finetune",
    exclude_ids: ExcludeIds = None,
    members: Members = 3,
    calibrate: Calibrate = True,
    seed: Seed = 0,
    data_dir: DataDir = None,
    mirror: Mirror = None,
    allow_unknown_ids: AllowUnknownIds = False,
    overwrite: Overwrite = False,
) -> None:
    """Train a human classifier that learns from all mouse cells too (aligned 4 classes)."""
    from ..models import recipes
    from .calibration import train_and_store

    check_out_dir(out, overwrite)
    human, label = training_cells("human", "label", data_dir=data_dir, mirror=mirror)
    mouse, _ = training_cells("mouse", "label", data_dir=data_dir, mirror=mirror)
    if exclude_ids is not None:  # one list for both species: an id may be of either
        human, mouse = exclude_specimens([human, mouse], exclude_ids, allow_unknown_ids)
    recipe = recipes.NetworkRecipe(seed=seed, bilstm_members=members)
    train_and_store(
        out, lambda: recipes.transfer(recipe, mouse, method), human, label, "human",
        f"transfer-{method}", None, calibrate=calibrate, seed=seed, data_dir=data_dir,
        mirror=mirror, doing=f"pretraining on {len(mouse)} mouse, training on {len(human)} human",
        method=method, n_source_cells=len(mouse),
    )  # fmt: skip


def evaluate_bilstm(
    species: Species,
    out: OutDir,
    labels: Labels = None,
    protocol: Protocol = "grouped",
    repeats: Repeats = 3,
    folds: Folds = 5,
    members: Members = 3,
    jobs: Jobs = -1,
    trust: NestedTrust = False,
    alpha: Alpha = 0.1,
    seed: Seed = 0,
    data_dir: DataDir = None,
    mirror: Mirror = None,
) -> None:
    """Cross-validate the BiLSTM; metrics.json, predictions and the attention heatmap."""
    from rich.progress import Progress

    from ..evaluation.splits import protocol_splitter
    from ..models import recipes
    from ..study.outputs import write_attention, write_evaluation
    from ..study.steps import cross_validate_network

    table, label = training_cells(species, labels, data_dir=data_dir, mirror=mirror)
    splitter = protocol_splitter(protocol, species, folds, repeats, seed)
    model = recipes.bilstm(recipes.NetworkRecipe(seed=seed, bilstm_members=members))
    with Progress(transient=True, console=console) as bar:
        result, attention = cross_validate_network(model, table, label, splitter, jobs, bar)
    metrics = result.summary(
        model="bilstm",
        species=species,
        label=label,
        protocol=protocol,
        n_donors=int(table["donor"].nunique()),
        n_members=members,
        seed=seed,
    )
    write_evaluation(out, result, metrics, f"{species} {label}: BiLSTM")
    write_attention(out, "attention_by_class", attention, f"{species} {label}: BiLSTM attention")
    print_f1("bilstm", species, label, protocol, metrics, out)
    if trust:
        fold_list = splitter.cell_folds(table, label)
        _nested_trust(
            model, table, label, fold_list, species, alpha, jobs, seed, out, data_dir, mirror
        )


def evaluate_transfer(
    out: OutDir,
    method: MethodOrAll = "all",
    fractions: Annotated[
        str, typer.Option("--fractions", help="Shares of human training donors, comma-separated.")
    ] = ",".join(f"{f:g}" for f in LEARNING_CURVE_FRACTIONS),
    protocol: Protocol = "grouped",
    repeats: Repeats = 3,
    folds: Folds = 5,
    members: Members = 3,
    jobs: Jobs = -1,
    trust: NestedTrust = False,
    alpha: Alpha = 0.1,
    importance: Annotated[
        bool, typer.Option(help="Forest permutation importance per family (slow).")
    ] = True,
    seed: Seed = 0,
    data_dir: DataDir = None,
    mirror: Mirror = None,
) -> None:
    """Human-only vs transfer on the same human folds: learning curve, paired differences."""
    from ..datasets.cells import usable_features
    from ..evaluation.splits import protocol_splitter
    from ..models import recipes
    from ..study.outputs import write_study
    from ..study.steps import transfer_study

    methods = TRANSFER_METHODS if method == "all" else (method,)
    try:
        shares = tuple(float(f) for f in fractions.split(","))
    except ValueError as exc:
        raise Ephys2txError(f"--fractions {fractions!r} must be numbers like 0.1,0.25,1") from exc
    if any(not 0 < f <= 1 for f in shares):
        raise Ephys2txError("--fractions must lie in (0, 1]")
    human, label = training_cells("human", "label", data_dir=data_dir, mirror=mirror)
    mouse, _ = training_cells("mouse", "label", data_dir=data_dir, mirror=mirror)
    splitter = protocol_splitter(protocol, "human", folds, repeats, seed)
    fold_list = splitter.cell_folds(human, label)
    recipe = recipes.NetworkRecipe(seed=seed, bilstm_members=members)
    features = usable_features(human)
    variants = recipes.transfer_variants(recipe, mouse, features, methods)
    study = transfer_study(human, variants, splitter, shares, jobs)
    context = {
        "species": "human",
        "label": label,
        "protocol": protocol,
        "n_folds": folds,
        "n_repeats": repeats,
        "n_members": members,
        "seed": seed,
        "fractions": list(shares),
    }
    write_study(study, out, context)
    if importance:
        _forest_importance(human, label, features, fold_list, seed, study, out)
    for name in [f"transfer_{m}" for m in methods]:
        metrics = study.results[(name, max(shares))].summary()
        print_f1(name, "human", label, protocol, metrics, out / name)
    if trust:  # each transfer method with all training donors, calibration nested
        for name in [f"transfer_{m}" for m in methods]:
            _nested_trust(
                variants[name], human, label, fold_list, "human", alpha, jobs, seed,
                out / name, data_dir, mirror,
            )  # fmt: skip
    paired = study.paired()
    if not paired.empty:
        console.print(paired.round(4).to_string(index=False))
    console.print(f"wrote {out}/study.json, learning_curve.png, paired_differences.csv")


def _nested_trust(
    model, table, label, fold_list, species, alpha, jobs, seed, out: Path, data_dir, mirror
) -> None:
    from ..evaluation.trust import evaluate_trust
    from ..study.outputs import write_trust

    evaluation = evaluate_trust(
        model, table, label, fold_list, species, None, alpha,
        other_species_cells(species, data_dir, mirror), seed=seed, n_jobs=jobs,
    )  # fmt: skip
    print_trust(write_trust(out, evaluation, f"{species} {type(model).__name__}"), out)


def _forest_importance(human, label, features, fold_list, seed, study, out: Path) -> None:
    from ..evaluation.importance import family_permutation_importance
    from ..models import recipes
    from ..study.outputs import write_attention

    first = [f for f in fold_list if f.repeat == fold_list[0].repeat]
    imp = family_permutation_importance(
        recipes.forest(seed), human, label, features, first, 3, seed
    )
    imp.to_csv(out / "forest_importance_by_family.csv", index=False)
    for name, att in study.attention.items():
        write_attention(out, f"attention_by_class_{name}", att, f"{name}: attention", imp)


def register(app: typer.Typer, train_app: typer.Typer, evaluate_app: typer.Typer) -> None:
    """Add this group's commands to the CLI."""
    train_app.command("bilstm")(train_bilstm)
    train_app.command("transfer")(train_transfer)
    evaluate_app.command("bilstm")(evaluate_bilstm)
    evaluate_app.command("transfer")(evaluate_transfer)
