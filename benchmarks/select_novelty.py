"""Novelty scores for a class the model never saw, compared on seed-100 donor-grouped folds
(never the reported seed-0 folds). Mouse Sncg or human Lamp5 is left out of training; its
cells stay in every test fold. In each outer fold the forest, its calibration (inner
donor-grouped out-of-fold temperature and Mondrian scores) and the trust reference come from
the training cells only, as in `bench_trust.py`. Scores compared:

- `global`: the stored novelty (kNN typicality against all reference cells);
- `class-k<k>`: kNN typicality against the reference cells of the *predicted* class,
  calibrated per class (`ClassNovelty` below; measured, not adopted) (the share of that class's reference cells, scored leaving their own
  donor out, that are more typical);
- `1-credibility`: 1 - the conformal p-value of the predicted class;
- `1-top p`: 1 - the top (temperature-scaled) probability.

For each: the AUROC between novel-class cells and in-distribution test cells, and, with a
flag at the threshold that flags 5% of reference cells (per class for class-conditional
scores), the share of novel cells still called confidently and the share and accuracy of
confident in-distribution calls. `--ceiling` also prints the AUROC of a supervised forest
that separates the novel class from the class it is mostly called (an upper bound for any
score computed without its cells), and that forest's flag rate at 5% false alarms.

    EPHYS2TX_MIRROR=../shared/data OMP_NUM_THREADS=1 .venv/bin/python \
        benchmarks/select_novelty.py --species mouse --ceiling
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.base import clone
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.metrics.pairwise import nan_euclidean_distances

from ephys2tx.datasets.cells import build_cells, usable_features
from ephys2tx.evaluation.splits import DonorKFold, donor_kfold
from ephys2tx.models.calibration import Temperature
from ephys2tx.models.conformal import MondrianConformal, out_of_fold_proba
from ephys2tx.models.forest import make_forest
from ephys2tx.models.novelty import NOVEL_SHARE, NoveltyReference
from ephys2tx.models.trusted import fit_trust_reference

RUNS = {"human": ("label", "Lamp5"), "mouse": ("label5", "Sncg")}
ALPHA = 0.1
KS = (5, 10, 20)


@dataclass
class ClassNovelty:
    """Novelty of a cell against the reference cells of its *predicted* class.

    Same scaled, weighted, NaN-aware distance as `NoveltyReference` (whose reference cells
    it reuses, passed as `base`); a cell's atypicality is its mean distance to the k nearest
    reference cells of the class it is called, and its class novelty the share of that
    class's reference cells (each scored against the cells of its class from other donors)
    that are more typical. The per-class threshold flags `NOVEL_SHARE` of each class's
    reference cells.
    """

    labels: np.ndarray  # (n_ref,) class of each reference cell, in the order fitted
    own: np.ndarray  # (n_ref,) its out-of-donor kNN distance within its class
    k: int = 10

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels).astype(str)
        self.own = np.asarray(self.own, float)
        self.classes = sorted(set(self.labels))
        self.ref_dist, self.thresholds = {}, {}
        for c in self.classes:
            dist = self.own[self.labels == c]
            self.ref_dist[c] = np.sort(dist[np.isfinite(dist)])
            share = self._share_below(c, dist)
            self.thresholds[c] = float(np.quantile(share, 1 - NOVEL_SHARE))

    @classmethod
    def fit(
        cls, base: NoveltyReference, labels: ArrayLike, groups: ArrayLike, k: int = 10
    ) -> ClassNovelty:
        """Per class: leave-own-donor-out kNN distances of its reference cells."""
        labels = np.asarray(labels).astype(str)
        groups = np.asarray(groups)
        own = np.full(len(labels), np.nan)
        for c in sorted(set(labels)):
            idx = np.flatnonzero(labels == c)
            d = nan_euclidean_distances(base.cells[idx], base.cells[idx])
            d[~np.isfinite(d)] = np.inf
            d[groups[idx][:, None] == groups[idx][None, :]] = np.inf
            kk = max(min(k, len(idx) - 1), 1)
            own[idx] = np.partition(d, kk - 1, axis=1)[:, :kk].mean(axis=1)
        return cls(labels, own, k)

    def _share_below(self, c: str, dist: np.ndarray) -> np.ndarray:
        ref = self.ref_dist[c]
        return np.searchsorted(ref, dist, side="left") / max(len(ref), 1)

    def novelty(self, X: ArrayLike, predicted: ArrayLike, base: NoveltyReference) -> np.ndarray:
        """Class novelty in [0, 1] of each row against the reference cells of its predicted
        class (NaN when nothing is measured or the class has no reference cells)."""
        Z = base._scaled(X)
        predicted = np.asarray(predicted).astype(str)
        out = np.full(len(Z), np.nan)
        for c in self.classes:
            rows = np.flatnonzero(predicted == c)
            ref = base.cells[self.labels == c]
            if not len(rows) or not len(ref):
                continue
            d = nan_euclidean_distances(Z[rows], ref)
            d[~np.isfinite(d)] = np.inf
            kk = min(self.k, len(ref))
            out[rows] = self._share_below(c, np.partition(d, kk - 1, axis=1)[:, :kk].mean(axis=1))
        out[np.isnan(Z).all(axis=1)] = np.nan
        return out

    def is_novel(self, novelty: np.ndarray, predicted: ArrayLike) -> np.ndarray:
        """True where a cell's class novelty exceeds its predicted class's threshold."""
        limit = np.array([self.thresholds.get(str(c), 1.0) for c in np.asarray(predicted)])
        return np.nan_to_num(novelty, nan=0.0) > limit


def fold_rows(table, label, novel, species, other, fold, seed) -> pd.DataFrame:
    y = table[label].astype(str).to_numpy()
    train_idx = fold.train[y[fold.train] != novel]
    train, test = table.iloc[train_idx], table.iloc[fold.test]
    features = usable_features(table)
    forest = make_forest(seed, n_jobs=1)
    model = clone(forest).fit(train[features], y[train_idx])
    inner = donor_kfold(5, seed + fold.fold)
    oof = out_of_fold_proba(clone(forest), train[features], y[train_idx], train["donor"], inner)
    classes = sorted(set(y[train_idx]))
    temperature = Temperature.fit(oof, y[train_idx], classes)
    conformal = MondrianConformal.fit(temperature.apply(oof), y[train_idx], classes)
    reference = fit_trust_reference(train, features, species, other, seed, model)
    proba = temperature.apply(model.predict_proba(test[features]))
    predicted = np.asarray(classes)[proba.argmax(axis=1)]
    sets = conformal.set_mask(proba, ALPHA)
    pvals = conformal.p_values(proba)
    novelty = reference.novelty.novelty(test[features])
    flags = reference.flags(test, novelty)
    other_flags = [any(f != "novel" for f in fl) for fl in flags]
    rows = pd.DataFrame(
        {
            "true": y[fold.test],
            "predicted": predicted,
            "singleton": sets.sum(axis=1) == 1,
            "other_flag": other_flags,
            "global": novelty,
            "global_flag": reference.novelty.is_novel(novelty),
            "1-credibility": 1 - pvals[np.arange(len(test)), proba.argmax(axis=1)],
            "1-top p": 1 - proba.max(axis=1),
        }
    )
    for k in KS:
        cn = ClassNovelty.fit(reference.novelty, y[train_idx], train["donor"].to_numpy(), k=k)
        score = cn.novelty(test[features], predicted, reference.novelty)
        rows[f"class-k{k}"] = score
        rows[f"class-k{k}_flag"] = cn.is_novel(score, predicted)
    return rows


def report(rows: pd.DataFrame, novel: str) -> None:
    is_novel = (rows["true"] == novel).to_numpy()
    known = ~is_novel
    correct = (rows["true"] == rows["predicted"]).to_numpy()
    base_conf = rows["singleton"] & ~rows["other_flag"]
    print(f"  no novelty flag: {novel} confident {base_conf[is_novel].mean():.1%}; "
          f"in-distribution confident {base_conf[known].mean():.1%} "
          f"(accuracy {correct[known & base_conf].mean():.3f})")  # fmt: skip
    for name in ["global", *[f"class-k{k}" for k in KS], "1-credibility", "1-top p"]:
        score = rows[name].to_numpy(float)
        ok = np.isfinite(score)
        auroc = roc_auc_score(is_novel[ok], score[ok])
        line = f"  {name:14} AUROC {auroc:.3f}"
        if f"{name}_flag" in rows:
            conf = base_conf & ~rows[f"{name}_flag"]
            both = base_conf & ~rows[f"{name}_flag"] & ~rows["global_flag"]
            line += (
                f"; flag alone: {novel} confident {conf[is_novel].mean():.1%}, in-dist "
                f"confident {conf[known].mean():.1%} (acc {correct[known & conf].mean():.3f})"
                f"; with global: {novel} {both[is_novel].mean():.1%}, in-dist "
                f"{both[known].mean():.1%} (acc {correct[known & both].mean():.3f})"
            )
        print(line)
    called = rows.loc[is_novel, "predicted"].value_counts(normalize=True).round(2).to_dict()
    print(f"  {novel} cells are called: {called}")


def ceiling(table, label, novel, folds, seed) -> None:
    """A supervised forest: novel class vs the class its cells are mostly called."""
    y = table[label].astype(str).to_numpy()
    features = usable_features(table)
    for against in sorted(set(y) - {novel}):
        keep = np.isin(y, [novel, against])
        score = np.full(len(y), np.nan)
        for fold in folds:
            tr = fold.train[keep[fold.train]]
            te = fold.test[keep[fold.test]]
            model = make_forest(seed, n_jobs=1).fit(table.iloc[tr][features], y[tr] == novel)
            score[te] = model.predict_proba(table.iloc[te][features])[:, 1]
        ok = keep & np.isfinite(score)
        fpr, tpr, _ = roc_curve(y[ok] == novel, score[ok])
        at5 = float(np.interp(0.05, fpr, tpr))
        print(f"  ceiling {novel} vs {against}: supervised AUROC "
              f"{roc_auc_score(y[ok] == novel, score[ok]):.3f}; {novel} flagged at 5% "
              f"false alarms on {against}: {at5:.1%}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--species", default="mouse")
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--ceiling", action="store_true")
    args = parser.parse_args()
    label, novel = RUNS[args.species]
    cells = {s: build_cells(s)[0] for s in ("mouse", "human")}
    table = cells[args.species]
    table = table[table[label].notna()].reset_index(drop=True)
    other = {s: t for s, t in cells.items() if s != args.species}
    splitter = DonorKFold(5, args.repeats, args.seed)
    folds = splitter.folds(table[label].to_numpy(), table["donor"].to_numpy())
    start = time.perf_counter()
    rows = []
    for fold in folds:
        rows.append(fold_rows(table, label, novel, args.species, other, fold, args.seed))
        print(f"fold {fold.repeat}.{fold.fold}: {time.perf_counter() - start:.0f} s", flush=True)
    print(f"{args.species}: {novel} left out, seed-{args.seed} donor-grouped 5x{args.repeats}")
    report(pd.concat(rows, ignore_index=True), novel)
    if args.ceiling:
        ceiling(table, label, novel, folds, args.seed)


if __name__ == "__main__":
    main()
