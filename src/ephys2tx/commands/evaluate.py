"""`evaluate rf|bilstm|transfer|hierarchical`: cross-validate a model on donor-grouped folds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..console import console
from ..datasets.cells import (
    other_species_cells,
    usable_features,
)
from ..errors import Ephys2txError
from ..evaluation import LEARNING_CURVE_FRACTIONS
from ..models import TRANSFER_METHODS
from ..models.network_params import NetworkParams
from .common import (
    Alpha,
    DataDir,
    Folds,
    Jobs,
    Labels,
    Members,
    MethodOrAll,
    Mirror,
    NestedTrust,
    OutDir,
    Protocol,
    Repeats,
    Seed,
    Species,
    TrustOption,
    add_model_commands,
    print_f1,
    print_trust,
    training_cells,
)


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
    model = recipes.bilstm(NetworkParams(members=members), seed)
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
    features = usable_features(human)
    variants = recipes.transfer_variants(
        NetworkParams(members=members), seed, mouse, features, methods
    )
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


def evaluate_hierarchical(
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
    """Cross-validate the default (hierarchical) model per level on donor-grouped folds, with figures."""
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
    """Add this verb's commands to the CLI."""
    commands = (evaluate_rf, evaluate_bilstm, evaluate_transfer, evaluate_hierarchical)
    add_model_commands(evaluate_app, *commands)
