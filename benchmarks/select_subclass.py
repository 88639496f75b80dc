"""Subclass-level model selection for the default model on seed-100 donor-grouped folds
(never the reported seed-0 folds): each fold fits every base model once, and every average
of their probabilities is scored; with `--stack`, also a logistic meta-learner on the
log-probabilities of the components (fitted on donor-grouped inner out-of-fold probabilities
of the outer training cells). Prints macro-F1 (mean over folds) per candidate:

    EPHYS2TX_MIRROR=../shared/data OMP_NUM_THREADS=1 .venv/bin/python \
        benchmarks/select_subclass.py --species human --repeats 3

Besides the members of `models.members.BY_NAME` (joined by + for an average), `--kinds` takes networks, fitted on the cells' rows of the
cell table (their feature families and `donor`), not on the model's input matrix:
`bilstm` (the BiLSTM of the full preset, `NetworkParams()`, 3 members; `bilstm1`: 1 member)
and, for human, `align` / `finetune` / `joint` / `adversarial` (the mouse → human transfer
network, `recipes.transfer`, trained with every labelled mouse cell; `align1`: 1 member).
Every component's out-of-fold test probabilities and CPU seconds are cached per fold in
`--cache` (default: `<data dir>/select-subclass/<species>-seed<seed>.npz`), so a rerun with
more kinds fits only the new ones, and a rerun with the same kinds only scores (remove the
file when a model or its settings change).
`--baseline AVERAGE` adds each candidate's paired difference from that average (95%
t-interval over folds); `--time-all` also times one fit of each component on all cells.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from ephys2tx.datasets.cells import build_cells
from ephys2tx.datasets.fetch import resolve_data_dir
from ephys2tx.datasets.labels import DEFAULT_LABEL
from ephys2tx.default_model import EXTRA_INPUTS, default_training_cells, usable_features
from ephys2tx.evaluation.metrics import mean_ci
from ephys2tx.evaluation.splits import DonorKFold, donor_kfold
from ephys2tx.models import recipes
from ephys2tx.models.hierarchy import _aligned, model_inputs
from ephys2tx.models.members import named
from ephys2tx.models.network_params import NetworkParams
from ephys2tx.trust.conformal import out_of_fold_proba

TRANSFER = ("finetune", "joint", "align", "adversarial")


def _network(kind: str, seed: int, mouse: pd.DataFrame | None):
    """A network component: `bilstm` or a transfer method, `<kind>1` with one member."""
    name, members = (kind[:-1], 1) if kind.endswith("1") else (kind, 3)
    network = NetworkParams(members=members)
    if name == "bilstm":
        return recipes.bilstm(network, seed)
    if name in TRANSFER:
        if mouse is None:
            raise SystemExit(f"{kind}: transfer networks are for --species human")
        return recipes.transfer(network, seed, mouse, name)
    return None


def _is_network(kind: str) -> bool:
    return (kind[:-1] if kind.endswith("1") else kind) in ("bilstm", *TRANSFER)


class FoldCache:
    """Out-of-fold test probabilities and CPU seconds per (kind, repeat, fold) in one .npz."""

    def __init__(self, path: Path):
        self.path = path
        self.data = dict(np.load(path)) if path.is_file() else {}

    def get(self, kind: str, fold, test: np.ndarray) -> tuple[np.ndarray, float] | None:
        key = f"{kind}/{fold.repeat}/{fold.fold}"
        if key not in self.data:
            return None
        if not np.array_equal(self.data[f"test/{fold.repeat}/{fold.fold}"], test):
            raise SystemExit(f"{self.path}: fold {fold.repeat}/{fold.fold} differs; remove it")
        return self.data[key], float(self.data[f"seconds/{key}"])

    def put(self, kind: str, fold, test: np.ndarray, proba: np.ndarray, seconds: float) -> None:
        key = f"{kind}/{fold.repeat}/{fold.fold}"
        self.data[f"test/{fold.repeat}/{fold.fold}"] = test
        self.data[key] = proba
        self.data[f"seconds/{key}"] = np.array(seconds)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp.npz")
        np.savez_compressed(tmp, **self.data)
        tmp.replace(self.path)


def _log(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(p, 1e-4, 1.0))


def _stacked(kinds, test_proba, X_train, y_train, donors, seed) -> np.ndarray:
    """Test probabilities of a class-balanced logistic meta-learner on the components'
    log-probabilities, fitted on their inner donor-grouped out-of-fold probabilities."""
    cv = donor_kfold(5, seed)
    inner = [out_of_fold_proba(named(k, seed), X_train, y_train, donors, cv) for k in kinds]
    meta = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
    meta.fit(np.hstack([_log(p) for p in inner]), y_train)
    return meta.predict_proba(np.hstack([_log(test_proba[k]) for k in kinds]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--species", default="human")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--kinds", default="rf,hgb,hgb-slow,logreg")
    parser.add_argument("--stack", default="", help="comma-separated kinds to stack")
    parser.add_argument(
        "--pool", type=float, default=0.0,
        help="human only: add this share of the mouse cells (aligned label) to every training "
        "fold, with a species input; the human test cells are scored as before",
    )  # fmt: skip
    parser.add_argument("--cache", type=Path, default=None, help="the .npz of fitted folds")
    parser.add_argument(
        "--baseline", default="",
        help="an average (e.g. rf+hgb-slow+logreg): each candidate minus it on the same folds, "
        "with a 95%% t-interval",
    )  # fmt: skip
    parser.add_argument(
        "--time-all", action="store_true",
        help="also time one fit of each component on all cells (as the first-use final fit)",
    )  # fmt: skip
    args = parser.parse_args()
    species, label = args.species, DEFAULT_LABEL[args.species]
    cells = default_training_cells(species)
    features = usable_features(cells) + EXTRA_INPUTS[species]
    X = model_inputs(cells, features)
    extra_X, extra_y = X.iloc[:0], np.array([], dtype=object)
    if args.pool > 0:
        other = default_training_cells("mouse")
        other = other[other[label].notna()].sample(frac=args.pool, random_state=args.seed)
        extra_X = model_inputs(other, features).assign(species_mouse=1.0)
        extra_y = other[label].to_numpy()
        X = X.assign(species_mouse=0.0)
    y = cells[label].to_numpy()
    classes = sorted(set(y))
    folds = DonorKFold(5, args.repeats, args.seed).folds(y, cells["donor"].to_numpy())
    kinds = args.kinds.split(",")
    mouse = None
    if species == "human" and any(_is_network(k) and not k.startswith("bilstm") for k in kinds):
        mouse = build_cells("mouse")[0]
        mouse = mouse[mouse["label"].notna()]  # every labelled mouse cell, as the study
    stack = [k for k in args.stack.split(",") if k]
    if any(_is_network(k) for k in stack):
        raise SystemExit("--stack takes members.BY_NAME kinds only")
    if args.pool > 0 and any(_is_network(k) for k in kinds):
        raise SystemExit("--pool is for members.BY_NAME kinds only (align trains with mouse cells)")
    pool = f"-pool{args.pool:g}" if args.pool > 0 else ""
    cache = FoldCache(
        args.cache
        or resolve_data_dir() / "select-subclass" / f"{species}-seed{args.seed}{pool}.npz"
    )
    combos = [c for r in range(1, len(kinds) + 1) for c in itertools.combinations(kinds, r)]
    scores: dict[str, list[float]] = {"+".join(c): [] for c in combos}
    if stack:
        scores["stack " + "+".join(stack)] = []
    seconds: dict[str, list[float]] = {k: [] for k in kinds}
    fitted_now = dict.fromkeys(kinds, 0)
    donors = cells["donor"].to_numpy()
    for i, fold in enumerate(folds):
        proba = {}
        for kind in kinds:
            hit = cache.get(kind, fold, fold.test)
            if hit is None:
                start = time.process_time()
                network = _network(kind, args.seed, mouse) if _is_network(kind) else None
                if network is not None:  # the cell table's rows: families and donors
                    model = network.fit(cells.iloc[fold.train], y[fold.train])
                    p = model.predict_proba(cells.iloc[fold.test])
                else:
                    X_train = pd.concat([X.iloc[fold.train], extra_X])
                    y_train = np.concatenate([y[fold.train], extra_y])
                    model = named(kind, args.seed).fit(X_train, y_train)
                    p = model.predict_proba(X.iloc[fold.test])
                hit = (_aligned(p, model.classes_, classes), time.process_time() - start)
                cache.put(kind, fold, fold.test, *hit)
                fitted_now[kind] += 1
            proba[kind] = hit[0]
            seconds[kind].append(hit[1])
        for combo in combos:
            p = sum(proba[k] for k in combo) / len(combo)
            pred = np.asarray(classes)[p.argmax(axis=1)]
            scores["+".join(combo)].append(f1_score(y[fold.test], pred, average="macro"))
        if stack:
            p = _stacked(stack, proba, X.iloc[fold.train], y[fold.train], donors[fold.train],
                         args.seed + i)  # fmt: skip
            pred = np.asarray(classes)[p.argmax(axis=1)]
            scores["stack " + "+".join(stack)].append(f1_score(y[fold.test], pred, average="macro"))
        print(f"fold {i + 1}/{len(folds)}", flush=True)
    table = pd.DataFrame(
        {"macro_f1": {k: np.mean(v) for k, v in scores.items()},
         "sd": {k: np.std(v, ddof=1) for k, v in scores.items()}}
    ).sort_values("macro_f1", ascending=False)  # fmt: skip
    if args.baseline:
        base = np.asarray(scores[args.baseline])
        paired = {k: mean_ci(np.asarray(v) - base) for k, v in scores.items()}
        table["diff"] = [paired[k]["mean"] for k in table.index]
        table["ci95_low"] = [paired[k]["ci95"][0] for k in table.index]
        table["ci95_high"] = [paired[k]["ci95"][1] for k in table.index]
    print(
        f"{species} subclass, seed-{args.seed} donor-grouped 5x{args.repeats}, {len(cells)} cells"
    )
    with pd.option_context("display.max_rows", None):
        print(table.round(3).to_string())
    print(
        "CPU s per fit (mean over folds; fitted now / read from the cache): "
        + ", ".join(
            f"{k} {np.mean(v):.1f} ({fitted_now[k]}/{len(v) - fitted_now[k]})"
            for k, v in seconds.items()
        )
    )
    print(f"fold cache: {cache.path}")
    if args.time_all:
        every = ", ".join(
            f"{k} {_fit_seconds(k, cells, X, y, args.seed, mouse):.1f}" for k in kinds
        )
        print(f"CPU s of one fit on all {len(cells)} cells: {every}")


def _fit_seconds(kind, cells, X, y, seed, mouse) -> float:
    start = time.process_time()
    if _is_network(kind):
        _network(kind, seed, mouse).fit(cells, y)
    else:
        named(kind, seed).fit(X, y)
    return time.process_time() - start


if __name__ == "__main__":
    main()
