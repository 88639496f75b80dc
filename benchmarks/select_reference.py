"""Model selection for the hierarchical reference model, on seed-100 donor-grouped folds
(never the reported seed-0 folds). Each fold fits every component once; the candidates are
combinations of their out-of-fold probabilities. Prints one line per candidate:

    EPHYS2TX_MIRROR=../shared/data OMP_NUM_THREADS=1 .venv/bin/python \
        benchmarks/select_reference.py --species human --repeats 1

Subclass candidates: forest (rf), HistGradientBoosting (hgb), their average, a flat t-type
model summed up the tree (leaf-sum), and for human the acute/culture condition as an input.
t-type candidates: P(subclass) of the chosen subclass model x P(t-type | subclass) from
per-subclass classifiers or a flat t-type model renormalized within the subclass.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.base import clone

from ephys2tx.datasets.cells import build_cells, usable_features
from ephys2tx.datasets.labels import DEFAULT_LABEL
from ephys2tx.datasets.taxonomy import build_taxonomy
from ephys2tx.evaluation.hierarchy import fold_level_scores
from ephys2tx.evaluation.splits import DonorKFold
from ephys2tx.models.reference import (
    CONDITION_FEATURE,
    _aligned,
    hierarchical_argmax,
    make_base,
    model_inputs,
    sum_to_subclass,
)


def _proba(model, X_train, y_train, X_test, columns):
    model = clone(model).fit(X_train, y_train)
    return _aligned(model.predict_proba(X_test), model.classes_, columns)


def _conditional_flat(flat, leaves, parent, subclasses):
    out = np.zeros_like(flat)
    for s in subclasses:
        cols = [i for i, leaf in enumerate(leaves) if parent[leaf] == s]
        total = flat[:, cols].sum(axis=1, keepdims=True)
        out[:, cols] = flat[:, cols] / np.maximum(total, 1e-12)
    return out


def _conditional_per_subclass(kind, X_tr, leaf_tr, X_te, leaves, parent, subclasses, seed):
    out = np.zeros((len(X_te), len(leaves)))
    sub_tr = np.array([parent[leaf] for leaf in leaf_tr])
    for s in subclasses:
        mask = sub_tr == s
        seen = np.unique(leaf_tr[mask])
        if len(seen) == 1:
            out[:, leaves.index(seen[0])] = 1.0
        elif len(seen) > 1:
            model = make_base(kind, seed)
            out += _proba(model, X_tr[mask], leaf_tr[mask], X_te, leaves)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--species", default="human")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--t-type-kinds", default="rf,hgb")
    args = parser.parse_args()
    species = args.species
    label = DEFAULT_LABEL[species]
    cells, _ = build_cells(species)
    cells = cells[cells[label].notna()].reset_index(drop=True)
    tax = build_taxonomy(cells, species)
    leaves, subclasses, parent = tax.leaves, list(tax.subclasses), tax.parent
    leaf = tax.leaf_labels(cells["t_type"], cells[label]).to_numpy(dtype=object)
    features = usable_features(cells)
    inputs = {"raw": model_inputs(cells, features)}
    if species == "human":
        inputs["cond"] = model_inputs(cells, [*features, CONDITION_FEATURE])
    folds = DonorKFold(5, args.repeats, args.seed).cell_folds(cells, label)
    kinds = args.t_type_kinds.split(",")
    rows: list[dict] = []
    start = time.perf_counter()
    for fold in folds:
        tr, te = fold.train, fold.test
        y_sub = cells[label].to_numpy()
        sub_p, leaf_cond, flat_p = {}, {}, {}
        for name, X in inputs.items():
            for kind in ("rf", "hgb"):
                sub_p[f"{kind}/{name}"] = _proba(
                    make_base(kind, args.seed), X.iloc[tr], y_sub[tr], X.iloc[te], subclasses
                )
            sub_p[f"rf+hgb/{name}"] = (sub_p[f"rf/{name}"] + sub_p[f"hgb/{name}"]) / 2
        X = inputs["raw"]
        for kind in kinds:
            flat_p[kind] = _proba(
                make_base(kind, args.seed), X.iloc[tr], leaf[tr], X.iloc[te], leaves
            )
            sub_p[f"leaf-sum {kind}/raw"] = sum_to_subclass(
                flat_p[kind], leaves, parent, subclasses
            )
            leaf_cond[f"flat {kind}"] = _conditional_flat(flat_p[kind], leaves, parent, subclasses)
            leaf_cond[f"per-subclass {kind}"] = _conditional_per_subclass(
                kind, X.iloc[tr], leaf[tr], X.iloc[te], leaves, parent, subclasses, args.seed
            )
        if len(kinds) > 1:
            leaf_cond["flat avg"] = sum(leaf_cond[f"flat {k}"] for k in kinds) / len(kinds)
            leaf_cond["per-subclass avg"] = sum(
                leaf_cond[f"per-subclass {k}"] for k in kinds
            ) / len(kinds)
        owner = [subclasses.index(parent[lf]) for lf in leaves]
        for sname, sp in sub_p.items():
            for cname, cond in leaf_cond.items():
                leaf_p = sp[:, owner] * cond
                pred_sub, pred_leaf = hierarchical_argmax(leaf_p, leaves, tax)
                scores = fold_level_scores(leaf[te], pred_sub, pred_leaf, tax)
                _, learned = hierarchical_argmax(leaf_p, leaves, tax, learned_first=True)
                resolved = np.array([tax.is_resolved(t) for t in leaf[te]])
                scores["t_type_accuracy_learned_first"] = float(
                    np.mean(learned[resolved] == leaf[te][resolved])
                )
                rows.append({"subclass_model": sname, "t_type_model": cname, **scores})
        print(
            f"fold {fold.repeat}.{fold.fold} done, {time.perf_counter() - start:.0f} s", flush=True
        )
    table = pd.DataFrame(rows).groupby(["subclass_model", "t_type_model"]).mean()
    pd.set_option("display.width", 250)
    cols = [
        "subclass_macro_f1",
        "t_type_accuracy",
        "t_type_macro_f1",
        "t_type_accuracy_learned_first",
    ]
    print(
        f"{species}: seed-{args.seed} donor-grouped 5x{args.repeats}, {len(cells)} cells, {len(tax.t_types)} t-types"
    )
    print(table[cols].round(3).sort_values("t_type_accuracy", ascending=False).to_string())
    print(f"total {time.perf_counter() - start:.0f} s (loaded 2-core machine, 1 thread)")


if __name__ == "__main__":
    main()
