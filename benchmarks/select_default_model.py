"""t-type model selection for the hierarchical default model, on seed-100 donor-grouped folds
(never the reported seed-0 folds). Each fold fits every component once and keeps its
out-of-fold probabilities (cached in `--cache`, so reruns only score); the candidates are
averages of the components' P(t-type | subclass), times the default P(subclass), scored under
each decision rule:

    EPHYS2TX_MIRROR=../shared/data OMP_NUM_THREADS=1 .venv/bin/python \
        benchmarks/select_default_model.py --species mouse --repeats 1 --cache /tmp/sel-mouse.npz

Components of P(t-type | subclass): `ps-<kind>` one classifier per subclass, `flat-<kind>` one
flat t-type classifier renormalized within each subclass (names of `models.members.BY_NAME`;
per-subclass logreg / knn standardize the features within the subclass). Rules: `argmax`
(the most probable subclass, then its most probable leaf), `learned` (its most probable
learned t-type), `prior b` (its leaf maximizing P(t) / prior(t)^b, prior = training share).
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ephys2tx.datasets.labels import DEFAULT_LABEL
from ephys2tx.datasets.taxonomy import build_taxonomy
from ephys2tx.default_model import (
    DEFAULT_SETTINGS,
    EXTRA_INPUTS,
    default_training_cells,
    usable_features,
)
from ephys2tx.evaluation.hierarchy import fold_level_scores
from ephys2tx.evaluation.splits import DonorKFold
from ephys2tx.models.hierarchy import (
    _aligned,
    assign_levels,
    model_inputs,
)
from ephys2tx.models.members import named


def _proba(kind, seed, X_train, y_train, X_test, columns):
    model = named(kind, seed).fit(X_train, y_train)
    return _aligned(model.predict_proba(X_test), model.classes_, columns)


def _flat_conditional(flat, leaves, parent, subclasses):
    out = np.zeros_like(flat)
    for s in subclasses:
        cols = [i for i, leaf in enumerate(leaves) if parent[leaf] == s]
        total = flat[:, cols].sum(axis=1, keepdims=True)
        out[:, cols] = np.where(total > 0, flat[:, cols] / np.maximum(total, 1e-300), 1 / len(cols))
    return out


def _per_subclass(kind, seed, X_tr, leaf_tr, X_te, leaves, parent, subclasses):
    out = np.zeros((len(X_te), len(leaves)))
    sub_tr = np.array([parent[leaf] for leaf in leaf_tr])
    for s in subclasses:
        mask = sub_tr == s
        seen = np.unique(leaf_tr[mask])
        if len(seen) == 1:
            out[:, leaves.index(seen[0])] = 1.0
        elif len(seen) > 1:
            out += _proba(kind, seed, X_tr[mask], leaf_tr[mask], X_te, leaves)
    return out


def compute(args, cells, tax, leaf, X, names: list[str]) -> dict[str, np.ndarray]:
    """Out-of-fold probabilities of every component, all folds stacked in test order."""
    leaves, subclasses, parent = tax.leaves, list(tax.subclasses), tax.parent
    label = DEFAULT_LABEL[args.species]
    y_sub = cells[label].to_numpy()
    folds = DonorKFold(5, args.repeats, args.seed).cell_folds(cells, label)
    out: dict[str, list] = {"test": [], "fold": [], "prior": []}
    start = time.perf_counter()
    seconds: dict[str, float] = {}
    for i, fold in enumerate(folds):
        tr, te = fold.train, fold.test
        out["test"].append(te)
        out["fold"].append(np.full(len(te), i))
        counts = pd.Series(leaf[tr]).value_counts()
        prior = np.array([counts.get(lf, 0) for lf in leaves], float) / len(tr)
        out["prior"].append(np.repeat(prior[None, :], len(te), axis=0))
        Xtr, Xte = X.iloc[tr], X.iloc[te]
        todo = {name: name.split("-", 1)[1] for name in names}
        for name, kind in todo.items():
            t0 = time.process_time()
            if name.startswith("sub-"):
                p = _proba(kind, args.seed, Xtr, y_sub[tr], Xte, subclasses)
            elif name.startswith("ps-"):
                p = _per_subclass(kind, args.seed, Xtr, leaf[tr], Xte, leaves, parent, subclasses)
            else:
                flat = _proba(kind, args.seed, Xtr, leaf[tr], Xte, leaves)
                p = _flat_conditional(flat, leaves, parent, subclasses)
            seconds[name] = seconds.get(name, 0.0) + time.process_time() - t0
            out.setdefault(name, []).append(p)
        print(f"fold {i + 1}/{len(folds)} done, {time.perf_counter() - start:.0f} s", flush=True)
    print("CPU s per fold: " + ", ".join(f"{k} {v / len(folds):.1f}" for k, v in seconds.items()))
    return {k: np.concatenate(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--species", default="human")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--subclass-kinds", default="")
    parser.add_argument("--ps-kinds", default="rf,hgb,logreg,knn")
    parser.add_argument("--flat-kinds", default="rf,hgb,logreg")
    parser.add_argument("--max-combo", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--betas", default="-1,-0.5,-0.25,0.25,0.5,1")
    args = parser.parse_args()
    species, label = args.species, DEFAULT_LABEL[args.species]
    default = "+".join(name for name, _ in DEFAULT_SETTINGS[species].subclass)
    args.subclass_kinds = args.subclass_kinds or default
    cells = default_training_cells(species)
    tax = build_taxonomy(cells, species)
    leaves, subclasses, parent = tax.leaves, list(tax.subclasses), tax.parent
    leaf = tax.leaf_labels(cells["t_type"], cells[label]).to_numpy(dtype=object)
    X = model_inputs(cells, usable_features(cells) + EXTRA_INPUTS[species])
    data = dict(np.load(args.cache)) if args.cache is not None and args.cache.exists() else {}
    wanted = {f"sub-{args.subclass_kinds}"}
    wanted |= {f"ps-{k}" for k in args.ps_kinds.split(",") if k}
    wanted |= {f"flat-{k}" for k in args.flat_kinds.split(",") if k}
    missing = sorted(wanted - set(data))
    if missing:  # only the components not cached yet (same folds: same seed and repeats)
        new = compute(args, cells, tax, leaf, X, missing)
        if data and not np.array_equal(new["test"], data["test"]):
            raise SystemExit("cached folds differ; use another --cache")
        data.update(new)
        if args.cache is not None:
            np.savez_compressed(args.cache, **data)
    data = {k: v for k, v in data.items() if k in wanted or k in ("test", "fold", "prior")}
    test, fold_of, prior = data["test"], data["fold"], data["prior"]
    sub_p = data[f"sub-{default}"]
    owner = [subclasses.index(parent[lf]) for lf in leaves]
    components = sorted(k for k in data if k.startswith(("ps-", "flat-")))
    combos = [
        c for r in range(1, args.max_combo + 1) for c in itertools.combinations(components, r)
    ]
    rules = {"argmax": (0.0, False), "learned": (0.0, True)}
    for b in (float(b) for b in args.betas.split(",") if b):
        rules[f"prior {b:+.2f}"] = (b, False)
        rules[f"learned, prior {b:+.2f}"] = (b, True)
    true_leaf = leaf[test]
    rows = []
    for combo in combos:
        cond = sum(data[c] for c in combo) / len(combo)
        leaf_p = sub_p[:, owner] * cond
        for rname, (beta, learned) in rules.items():
            pred_sub, pred_leaf = assign_levels(leaf_p, leaves, tax, prior, beta, learned)
            for f in np.unique(fold_of):
                m = fold_of == f
                s = fold_level_scores(true_leaf[m], pred_sub[m], pred_leaf[m], tax)
                rows.append({"t_type_model": "+".join(combo), "rule": rname, "fold": f, **s})
    cols = ["subclass_macro_f1", "t_type_accuracy", "t_type_macro_f1", "t_type_balanced_accuracy"]
    table = pd.DataFrame(rows).groupby(["t_type_model", "rule"])[cols].mean()
    pd.set_option("display.width", 250)
    print(
        f"{species}: seed-{args.seed} donor-grouped 5x{args.repeats}, {len(cells)} cells, "
        f"{len(tax.t_types)} t-types; subclass model {default}"
    )
    for key in ("t_type_accuracy", "t_type_macro_f1"):
        print(f"--- top {args.top} by {key}")
        print(table.sort_values(key, ascending=False).head(args.top).round(3).to_string())
    best = table.groupby(level="rule").max()
    print("--- best per rule")
    print(best.round(3).to_string())
    print("--- single components, argmax")
    print(table.xs("argmax", level="rule").round(3).to_string())


if __name__ == "__main__":
    main()
