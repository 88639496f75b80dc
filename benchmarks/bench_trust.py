"""How far the forest's calls can be trusted, on the real tables. Prints its figures:

- per species: coverage (overall, per class), mean set size, confident calls and their
  accuracy, ECE; alpha 0.1, donor-grouped 5 folds x 3 repeats (seed 0), calibration
  nested in each outer training fold;
- (a) a novel class (mouse Sncg, human Lamp5) left out of training: AUROC of novelty and
  of 1 - top probability between its cells and the in-distribution test cells, and the
  share of its cells called confidently;
- (b) condition shift: train on acute human cells, predict cultured cells of other donors;
- (c) injected faults (one family x1000, a family removed, all NaN) and species mismatch
  (mouse model on human cells and the reverse, with and without a species column);
- the species fingerprint alone over every cell (5 donor-grouped folds): the share of the
  other species flagged, and false alarms on the model's own species.

    EPHYS2TX_MIRROR=../shared/data .venv/bin/python benchmarks/bench_trust.py
    ... --parts novel,faults --novel-repeats 1     # a subset, fewer repeats
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from ephys2tx.datasets.cells import build_cells, usable_features
from ephys2tx.evaluation.splits import DonorKFold, Fold, donor_kfold
from ephys2tx.evaluation.trust import evaluate_trust
from ephys2tx.features.families import SCALAR_FAMILIES
from ephys2tx.models.bundle import ModelCard
from ephys2tx.models.forest import make_forest
from ephys2tx.models.trusted import TrustedModel, fit_flat_trust
from ephys2tx.trust.species import SpeciesFingerprint

ALPHA = 0.1
RUNS = [("human", "label", "Lamp5"), ("mouse", "label5", "Sncg")]  # species, label, novel class


def labelled(cells: dict, species: str, label: str) -> pd.DataFrame:
    table = cells[species]
    return table[table[label].notna()].reset_index(drop=True)


def others(cells: dict, species: str) -> dict:
    return {s: t for s, t in cells.items() if s != species}


def print_summary(name: str, s: dict, seconds: float) -> None:
    per_class = ", ".join(f"{c} {v:.3f}" for c, v in s["coverage_per_class"].items())
    sizes = ", ".join(f"{c} {v:.2f}" for c, v in s["set_size_per_class"].items())
    acc = s["confident_accuracy"]
    print(f"\n{name}  ({seconds:.0f} s)")
    print(f"  coverage {s['coverage']:.3f} (folds {s['coverage_per_fold']['min']:.3f}-"
          f"{s['coverage_per_fold']['max']:.3f}); per class: {per_class}")  # fmt: skip
    print(f"  mean set size {s['mean_set_size']:.2f} (per true class: {sizes}); "
          f"singletons {s['share_singleton']:.1%}; flagged {s['share_flagged']:.1%}")  # fmt: skip
    print(f"  confident {s['share_confident']:.1%} of cells, accuracy "
          f"{'n/a' if acc is None else f'{acc:.3f}'}; accuracy of all calls {s['accuracy']:.3f}")  # fmt: skip
    print(f"  ECE {s['ece']:.3f} (temperature-scaled, median T {s['temperature_median']:.2f}); "
          f"unscaled {s['ece_unscaled']:.3f}")  # fmt: skip


def main_part(cells: dict, repeats: int, runs: list) -> None:
    print(f"== per species: forest, alpha {ALPHA}, donor-grouped 5 x {repeats}, seed 0, nested")
    for species, label, _ in runs:
        table = labelled(cells, species, label)
        folds = DonorKFold(5, repeats, 0).cell_folds(table, label)
        start = time.perf_counter()
        ev = evaluate_trust(
            make_forest(0), table, label, folds, species, usable_features(table), ALPHA,
            others(cells, species), progress=False,
        )  # fmt: skip
        print_summary(
            f"{species} {label} ({len(table)} cells)", ev.summary, time.perf_counter() - start
        )
        flags = ev.cells["flags"].fillna("")
        print(f"  in-species species_mismatch {flags.str.contains('species_mismatch').mean():.1%}, "
              f"novel {flags.str.contains('novel').mean():.1%}, "
              f"out_of_range {flags.str.contains('out_of_range').mean():.1%}")  # fmt: skip


def novel_part(cells: dict, repeats: int, runs: list) -> None:
    print(f"\n== (a) novel class left out of training; donor-grouped 5 x {repeats}, seed 0")
    for species, label, novel in runs:
        table = labelled(cells, species, label)
        y = table[label].to_numpy()
        folds = [
            Fold(f.repeat, f.fold, f.train[y[f.train] != novel], f.test)
            for f in DonorKFold(5, repeats, 0).cell_folds(table, label)
        ]
        start = time.perf_counter()
        ev = evaluate_trust(
            make_forest(0), table, label, folds, species, usable_features(table), ALPHA,
            others(cells, species), progress=False,
        )  # fmt: skip
        rows = ev.cells
        is_novel = (rows["true"] == novel).to_numpy()
        known = rows[~is_novel]
        measured = rows["novelty"].notna().to_numpy()
        auroc_novelty = roc_auc_score(is_novel[measured], rows["novelty"][measured])
        auroc_conf = roc_auc_score(is_novel, 1 - rows["p_max"])
        auroc_cred = roc_auc_score(is_novel, 1 - rows["credibility"])
        auroc_flag = roc_auc_score(is_novel, rows["novel_score"])
        print(f"\n{species}: {novel} left out ({is_novel.sum()} test rows; "
              f"{time.perf_counter() - start:.0f} s)")  # fmt: skip
        print(f"  AUROC novelty {auroc_novelty:.3f}; AUROC 1 - top probability {auroc_conf:.3f}; "
              f"AUROC 1 - largest conformal p-value {auroc_cred:.3f}; AUROC of the score "
              f"`novel` thresholds (rank average of both) {auroc_flag:.3f}")  # fmt: skip
        print(f"  {novel} cells called confidently {rows['confident'][is_novel].mean():.1%} "
              f"(flagged novel {rows['flags'][is_novel].str.contains('novel').mean():.1%}); "
              f"in-distribution cells confident {known['confident'].mean():.1%} (accuracy "
              f"{(known['predicted'] == known['true'])[known['confident']].mean():.3f}), "
              f"coverage {known['covered'].mean():.3f}")  # fmt: skip
        called = rows.loc[is_novel, "predicted"].value_counts(normalize=True).round(2).to_dict()
        print(f"  {novel} cells are called: {called}")


def condition_part(cells: dict, repeats: int) -> None:
    print(f"\n== (b) condition shift: train on acute human cells, predict cultured; 5 x {repeats}")
    table = labelled(cells, "human", "label")
    acute = (table["condition"] == "acute").to_numpy()
    base = DonorKFold(5, repeats, 0).cell_folds(table, "label")
    shifted = [
        Fold(f.repeat, f.fold, f.train[acute[f.train]], f.test[~acute[f.test]]) for f in base
    ]
    same = [Fold(f.repeat, f.fold, f.train[acute[f.train]], f.test[acute[f.test]]) for f in base]
    for name, folds in (("acute -> cultured", shifted), ("acute -> acute (no shift)", same)):
        start = time.perf_counter()
        ev = evaluate_trust(
            make_forest(0), table, "label", folds, "human", usable_features(table), ALPHA,
            others(cells, "human"), progress=False,
        )  # fmt: skip
        print_summary(f"{name}: {len(ev.cells)} test rows", ev.summary, time.perf_counter() - start)


def trusted_model(table: pd.DataFrame, label: str, species: str, other: dict) -> TrustedModel:
    """A forest with calibration and training summary from `table`, as `train` would save it."""
    features = usable_features(table)
    model = make_forest(0).fit(table[features], table[label].to_numpy())
    trust = fit_flat_trust(
        make_forest(0), model, table, label, species, features, other=other, cv=donor_kfold(5, 0)
    )
    card = ModelCard("rf-raw", species, label, list(model.classes_), features)
    (conformal,) = trust.conformal.values()
    return TrustedModel(model, card, conformal, trust.temperature, trust.summary)


def fault_part(cells: dict) -> None:
    print("\n== (c) injected faults on held-out test cells (first donor-grouped fold, seed 0);")
    print(
        "   shares are of the cells a fault changes: a nonzero value x1000, a measured family removed"
    )
    tables, folds = {}, {}
    for species, label, _ in RUNS:
        tables[species] = labelled(cells, species, label)
        folds[species] = DonorKFold(5, 1, 0).cell_folds(tables[species], label)[0]
    models, tests = {}, {}
    for species, label, _ in RUNS:
        # the fingerprint sees the training cells of both species, never a test cell
        train = {s: t.iloc[folds[s].train] for s, t in tables.items()}
        models[species] = trusted_model(train[species], label, species, others(train, species))
        tests[species] = tables[species].iloc[folds[species].test].reset_index(drop=True)
    for species, model in models.items():
        test = tests[species]
        features = model.card.features
        print(f"\n{species} model, {len(test)} held-out {species} cells:")
        clean, _ = model.predict_table(test)
        print(f"  as recorded: flagged {(clean['flags'] != '').mean():.1%}, "
              f"confident {clean['confident'].mean():.1%}")  # fmt: skip
        scaled, removed = [], []
        for family in SCALAR_FAMILIES:
            cols = [c for c in family.columns if c in features]
            if not cols:
                continue
            has = test[cols].notna().any(axis=1).to_numpy()  # cells the fault changes
            changed = (test[cols].fillna(0) != 0).any(axis=1).to_numpy()  # 0 x 1000 = 0
            bad = test.copy()
            bad[cols] = bad[cols] * 1000
            got, _ = model.predict_table(bad)
            got = got[changed]
            scaled.append((family.name, (got["flags"] != "").mean(), got["confident"].mean()))
            got, missing = model.predict_table(test.drop(columns=cols))
            got = got[has]
            removed.append((family.name, (got["flags"] != "").mean(), got["confident"].mean()))
        for name, rows in (("one family x1000", scaled), ("one family removed", removed)):
            flagged = min(r[1] for r in rows)
            confident = max(r[2] for r in rows)
            print(f"  {name}: flagged >= {flagged:.1%} and confident <= {confident:.1%} "
                  f"in every family ({len(rows)} families)")  # fmt: skip
            for fam, f, c in rows:
                print(f"    {fam:16} flagged {f:.1%} confident {c:.1%}")
        empty = test.copy()
        empty[features] = np.nan
        got, _ = model.predict_table(empty)
        print(f"  all NaN: flagged {(got['flags'] != '').mean():.1%}, "
              f"confident {got['confident'].mean():.1%}")  # fmt: skip
    print("\n== species mismatch: each model on the other species' held-out cells")
    for species, model in models.items():
        other = next(s for s in models if s != species)
        test = tests[other]
        with_column, _ = model.predict_table(test)
        without, _ = model.predict_table(test.drop(columns=["species"]))
        own, _ = model.predict_table(tests[species].drop(columns=["species"]))
        print(f"  {species} model on {len(test)} {other} cells: species_mismatch "
              f"{without['flags'].str.contains('species_mismatch').mean():.1%} from features "
              f"alone, {with_column['flags'].str.contains('species_mismatch').mean():.1%} with "
              f"the table's species column; on its own species (features alone) "
              f"{own['flags'].str.contains('species_mismatch').mean():.1%}")  # fmt: skip


def species_part(cells: dict) -> None:
    """The fingerprint alone, over every cell: 5 donor-grouped folds per species (seed 0);
    fold k of each species is held out together, and a fingerprint calibrated for each
    model species is fitted on the other folds of both."""
    print("\n== species fingerprint from the features alone, donor-grouped 5 folds, seed 0")
    tables = {s: labelled(cells, s, label) for s, label, _ in RUNS}
    labels = dict((s, label) for s, label, _ in RUNS)
    folds = {s: DonorKFold(5, 1, 0).cell_folds(t, labels[s]) for s, t in tables.items()}
    flagged = {(m, s): [] for m in tables for s in tables}
    for k in range(5):
        train = {s: t.iloc[folds[s][k].train] for s, t in tables.items()}
        test = {s: t.iloc[folds[s][k].test] for s, t in tables.items()}
        for model_species in tables:
            fp = SpeciesFingerprint.fit(
                train, usable_features(tables[model_species]), 0, own=model_species
            )
            for s, t in test.items():
                flagged[model_species, s].append(fp.mismatch(t, model_species))
    for model_species in tables:
        other = next(s for s in tables if s != model_species)
        hit = np.concatenate(flagged[model_species, other])
        own = np.concatenate(flagged[model_species, model_species])
        print(f"  {model_species} model: species_mismatch on {hit.mean():.1%} of {len(hit)} "
              f"{other} cells; false alarms on {own.mean():.1%} of {len(own)} "
              f"{model_species} cells")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="main,novel,condition,faults,species")
    parser.add_argument("--species", default="human,mouse", help="for the main and novel parts")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the main 5-fold split")
    parser.add_argument("--novel-repeats", type=int, default=1)
    parser.add_argument("--condition-repeats", type=int, default=3)
    args = parser.parse_args()
    cells = {s: build_cells(s)[0] for s in ("mouse", "human")}
    runs = [r for r in RUNS if r[0] in args.species.split(",")]
    parts = args.parts.split(",")
    start = time.perf_counter()
    if "main" in parts:
        main_part(cells, args.repeats, runs)
    if "novel" in parts:
        novel_part(cells, args.novel_repeats, runs)
    if "condition" in parts:
        condition_part(cells, args.condition_repeats)
    if "faults" in parts:
        fault_part(cells)
    if "species" in parts:
        species_part(cells)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
