"""Novelty scores for a class the model never saw, compared on seed-100 donor-grouped folds
(never the reported seed-0 folds). Mouse Sncg or human Lamp5 is left out of training; its
cells stay in every test fold. In each outer fold the forest, its calibration (inner
donor-grouped out-of-fold temperature and Mondrian scores) and the training summary come from
the training cells only, as in `bench_trust.py`. Scores compared:

- `global`: the stored novelty (kNN typicality against all training cells);
- `class-k<k>`: kNN typicality against the training cells of the *predicted* class,
  calibrated per class (`ClassNovelty` below; measured, not adopted) (the share of that class's training cells, scored leaving their own
  donor out, that are more typical);
- `1-credibility`: 1 - the conformal p-value of the predicted class;
- `1-top p`: 1 - the top (temperature-scaled) probability.

For each: the AUROC between novel-class cells and in-distribution test cells, and, with a
flag at the threshold that flags 5% of training cells (per class for class-conditional
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
from ephys2tx.models.forest import make_forest
from ephys2tx.models.trusted import fit_training_summary
from ephys2tx.trust.conformal import MondrianConformal, out_of_fold_proba
from ephys2tx.trust.novelty import NOVEL_SHARE, NoveltyBaseline
from ephys2tx.trust.temperature import Temperature

RUNS = {"human": ("label", "Lamp5"), "mouse": ("label5", "Sncg")}
ALPHA = 0.1
KS = (5, 10, 20)
SMALL_ALPHAS = (0.05, 0.02)
PROX_KS = (1, 5, 10, 30)


@dataclass
class ClassNovelty:
    """Novelty of a cell against the training cells of its *predicted* class.

    Same scaled, weighted, NaN-aware distance as `NoveltyBaseline` (whose training cells
    it reuses, passed as `base`); a cell's atypicality is its mean distance to the k nearest
    training cells of the class it is called, and its class novelty the share of that
    class's training cells (each scored against the cells of its class from other donors)
    that are more typical. The per-class threshold flags `NOVEL_SHARE` of each class's
    training cells.
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
        cls, base: NoveltyBaseline, labels: ArrayLike, groups: ArrayLike, k: int = 10
    ) -> ClassNovelty:
        """Per class: leave-own-donor-out kNN distances of its training cells."""
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

    def novelty(self, X: ArrayLike, predicted: ArrayLike, base: NoveltyBaseline) -> np.ndarray:
        """Class novelty in [0, 1] of each row against the training cells of its predicted
        class (NaN when nothing is measured or the class has no training cells)."""
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


def fold_rows(table, label, novel, species, other, fold, seed, class_scores=False) -> pd.DataFrame:
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
    reference = fit_training_summary(train, features, species, other, seed, model)
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
    if class_scores:
        for k in KS:
            cn = ClassNovelty.fit(reference.novelty, y[train_idx], train["donor"].to_numpy(), k=k)
            score = cn.novelty(test[features], predicted, reference.novelty)
            rows[f"class-k{k}"] = score
            rows[f"class-k{k}_flag"] = cn.is_novel(score, predicted)
    # reference-cell distributions (out of fold / out of donor), for 5% false-alarm flags
    nov_ref = reference.novelty._share_below(
        reference.novelty._knn_distance(reference.novelty.cells, train["donor"].to_numpy())
    )
    topp_ref = 1 - temperature.apply(oof).max(axis=1)
    pct_topp = percentile_of(topp_ref, rows["1-top p"].to_numpy())
    pct_topp_ref = percentile_of(topp_ref, topp_ref)
    rows["1-top p_flag"] = rows["1-top p"].to_numpy() > np.quantile(topp_ref, 1 - NOVEL_SHARE)
    nov = np.nan_to_num(novelty, nan=0.0)
    for name, combine in (("max(nov,1-p)", np.maximum), ("mean(nov,1-p)", _mean)):
        ref_score = combine(np.nan_to_num(nov_ref, nan=0.0), pct_topp_ref)
        rows[name] = combine(nov, pct_topp)
        rows[f"{name}_flag"] = rows[name].to_numpy() > np.quantile(ref_score, 1 - NOVEL_SHARE)
    cred = pvals.max(axis=1)
    rows["1-max p-value"] = 1 - cred
    for a in SMALL_ALPHAS:
        rows[f"empty set a={a}_flag"] = cred <= a  # the conformal set at alpha a is empty
    rows["vote entropy"] = vote_entropy(model, test[features].to_numpy(float))
    leaves_train, leaves = model.apply(train[features]), model.apply(test[features])
    ytr = y[train_idx]
    for k in PROX_KS:
        rows[f"1-prox k{k}"] = 1 - proximity(leaves_train, ytr, leaves, predicted, k)
    rows["1-prox all k10"] = 1 - proximity(leaves_train, ytr, leaves, None, 10)
    # reference: each training cell against other donors' cells of its class, over the trees
    # it was out of bag in; a 5% false-alarm flag and a rank average with 1 - top p
    inbag = np.zeros((len(train_idx), len(model.estimators_)), bool)
    for t, sample in enumerate(model.estimators_samples_):
        inbag[sample, t] = True
    ref_prox = 1 - proximity(
        leaves_train, ytr, leaves_train, ytr, 10, ~inbag, train["donor"].to_numpy()
    )
    prox = rows["1-prox k10"].to_numpy()
    rows["1-prox k10_flag"] = prox > np.quantile(ref_prox, 1 - NOVEL_SHARE)
    for name, combine in (("max(prox,1-p)", np.maximum), ("mean(prox,1-p)", _mean)):
        ref_score = combine(percentile_of(ref_prox, ref_prox), pct_topp_ref)
        rows[name] = combine(percentile_of(ref_prox, prox), pct_topp)
        rows[f"{name}_flag"] = rows[name].to_numpy() > np.quantile(ref_score, 1 - NOVEL_SHARE)
    return rows


def _mean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a + b) / 2


def percentile_of(ref: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Share of the reference values below each x (a rank on the reference scale)."""
    ref = np.sort(np.asarray(ref, float)[np.isfinite(ref)])
    return np.searchsorted(ref, np.asarray(x, float), side="left") / max(len(ref), 1)


def vote_entropy(forest, X: np.ndarray) -> np.ndarray:
    """Entropy (bits) of the trees' hard votes: disagreement between ensemble members."""
    votes = np.zeros((len(X), len(forest.classes_)))
    for tree in forest.estimators_:
        votes[np.arange(len(X)), tree.predict(X).astype(int)] += 1
    share = votes / len(forest.estimators_)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.nansum(np.where(share > 0, share * np.log2(share), 0.0), axis=1)


def proximity(leaves_ref, y_ref, leaves, predicted, k=10, trees=None, groups=None, chunk=16):
    """Mean forest proximity (share of trees where both land in the same leaf) of each row
    to its k most proximate training cells of the class it is called (`predicted`; None:
    any class). `trees` (rows x trees, bool) limits each row to some trees (out of bag);
    `groups` (rows = training cells) leaves out the row's own donor."""
    out = np.full(len(leaves), np.nan)
    labels = np.zeros(len(leaves), int) if predicted is None else np.asarray(predicted)
    y_ref = np.zeros(len(leaves_ref), int) if predicted is None else np.asarray(y_ref)
    for c in np.unique(labels):
        ref_idx = np.flatnonzero(y_ref == c)
        rows = np.flatnonzero(labels == c)
        kk = min(k, len(ref_idx))
        for start in range(0, len(rows), chunk):
            r = rows[start : start + chunk]
            same = leaves[r][:, None, :] == leaves_ref[ref_idx][None, :, :]
            if trees is None:
                prox = same.mean(axis=2)
            else:
                w = trees[r][:, None, :]
                prox = (same & w).sum(axis=2) / np.maximum(w.sum(axis=2), 1)
            if groups is not None:
                prox[groups[r][:, None] == groups[ref_idx][None, :]] = -np.inf
            out[r] = -np.partition(-prox, kk - 1, axis=1)[:, :kk].mean(axis=1)
    return out


def report(rows: pd.DataFrame, novel: str) -> None:
    is_novel = (rows["true"] == novel).to_numpy()
    known = ~is_novel
    correct = (rows["true"] == rows["predicted"]).to_numpy()
    base_conf = rows["singleton"] & ~rows["other_flag"]
    print(f"  no novelty flag: {novel} confident {base_conf[is_novel].mean():.1%}; "
          f"in-distribution confident {base_conf[known].mean():.1%} "
          f"(accuracy {correct[known & base_conf].mean():.3f})")  # fmt: skip
    names = ["global", *[f"class-k{k}" for k in KS], "1-credibility", "1-top p"]
    names += ["max(nov,1-p)", "mean(nov,1-p)", "1-max p-value", "vote entropy"]
    names += [*[f"1-prox k{k}" for k in PROX_KS], "1-prox all k10"]
    names += ["max(prox,1-p)", "mean(prox,1-p)"]
    names += [f"empty set a={a}" for a in SMALL_ALPHAS]
    for name in names:
        if name in rows:
            score = rows[name].to_numpy(float)
            ok = np.isfinite(score)
            line = f"  {name:14} AUROC {roc_auc_score(is_novel[ok], score[ok]):.3f}"
        elif f"{name}_flag" in rows:
            line = f"  {name:14} (a flag)"
        else:
            continue
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


def tradeoff(rows: pd.DataFrame, novel: str, cost: float = 0.03, target: float = 0.30) -> None:
    """What a flag on each score could do at best (thresholds set on these test cells, so an
    upper bound, for the argument only): the novel cells left confident when the flag may
    take `cost` of the in-distribution cells out of the confident calls, and the share of
    in-distribution cells it must take out to leave at most `target` of novel cells."""
    is_novel = (rows["true"] == novel).to_numpy()
    base = (rows["singleton"] & ~rows["other_flag"]).to_numpy()
    print(f"  oracle trade-off (thresholds on the test cells; an upper bound): at a cost of "
          f"{cost:.0%} of in-distribution cells / to reach {target:.0%} of {novel} confident")  # fmt: skip
    for name in rows.columns:
        if name in ("true", "predicted", "singleton", "other_flag") or name.endswith("_flag"):
            continue
        score = np.nan_to_num(rows[name].to_numpy(float), nan=-np.inf)
        known = np.sort(score[~is_novel & base])[::-1]  # most novel first
        n_known = (~is_novel).sum()
        take = int(cost * n_known)
        t = known[take] if take < len(known) else -np.inf
        left = np.mean(base[is_novel] & (score[is_novel] <= t))
        nov = np.sort(score[is_novel & base])[::-1]
        need = int(np.ceil(base[is_novel].sum() - target * is_novel.sum()))
        t_need = nov[need - 1] if 0 < need <= len(nov) else np.inf
        paid = np.sum(base & ~is_novel & (score >= t_need)) / n_known
        print(f"    {name:16} {left:.1%} / in-distribution cost {paid:.1%}")


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
    parser.add_argument("--class-scores", action="store_true", help="also class-kNN typicality")
    parser.add_argument("--save", help="write the per-cell scores to this CSV")
    parser.add_argument("--load", help="report on per-cell scores saved by --save")
    args = parser.parse_args()
    label, novel = RUNS[args.species]
    if args.load:
        rows = pd.read_csv(args.load)
        report(rows, novel)
        tradeoff(rows, novel)
        return
    cells = {s: build_cells(s)[0] for s in ("mouse", "human")}
    table = cells[args.species]
    table = table[table[label].notna()].reset_index(drop=True)
    other = {s: t for s, t in cells.items() if s != args.species}
    splitter = DonorKFold(5, args.repeats, args.seed)
    folds = splitter.folds(table[label].to_numpy(), table["donor"].to_numpy())
    start = time.perf_counter()
    rows = []
    for fold in folds:
        rows.append(
            fold_rows(table, label, novel, args.species, other, fold, args.seed, args.class_scores)
        )
        print(f"fold {fold.repeat}.{fold.fold}: {time.perf_counter() - start:.0f} s", flush=True)
    print(f"{args.species}: {novel} left out, seed-{args.seed} donor-grouped 5x{args.repeats}")
    rows = pd.concat(rows, ignore_index=True)
    if args.save:
        rows.to_csv(args.save, index=False)
    report(rows, novel)
    tradeoff(rows, novel)
    if args.ceiling:
        ceiling(table, label, novel, folds, args.seed)


if __name__ == "__main__":
    main()
