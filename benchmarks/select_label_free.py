"""Label-free adaptation candidates on the M1 cells (issue 19, row b), scored with the
benchmark's nested protocol: every candidate's calls on all cells, then for each of 5 folds
of M1 mice the candidate with the best macro-F1 on the *other* folds' GABAergic cells is
taken for that fold. Prints each candidate's figures on all cells (for the record), a
paired bootstrap over mice of its macro-F1 difference from the class-anchored map, and the
nested figure of each family added to the benchmark's pool (no map, the anchored map).

    EPHYS2TX_MIRROR=../shared/data OMP_NUM_THREADS=1 .venv/bin/python \\
        benchmarks/select_label_free.py --out /tmp/label-free --fold-seeds 5

Families (settings fixed before scoring; docs/research/label-free-adaptation.md):
- CORAL (Sun et al. 2016) on reference-standardized features, covariances + lambda*I:
  global (the lab's non-`not_interneuron` cells to all training cells), after the anchored
  map (whole or covariance only), and class-conditional (pooled within-class covariances of
  the confident calls against the training cells', offsets pooled over classes; 5 rounds);
- prior correction of P(subclass) by the lab's class mix estimated without labels (mean
  probability, share of calls, EM of Saerens et al. 2002); the members are class-balanced,
  so the training prior is uniform;
- self-training: the anchored map's confident calls (top P >= 0.7, not flagged) join the
  training cells at weight 0.5, the default subclass average refitted, 1-3 rounds; plain,
  or with the training cells reweighted to the lab's estimated class mix;
- the anchored map's own settings (anchor threshold, rounds) and the map in log units
  for the positive features; per-class maps mixed by each cell's P(subclass);
- transductive use of the lab's own geometry: label spreading (Zhou et al. 2004) of the
  anchored map's P(subclass) over a k-nearest-neighbour graph of the lab's cells (shared
  features, or all of the lab's own columns, Yeo-Johnson-transformed on the lab's cells),
  and a forest trained on the anchored map's confident calls on those columns, cross-fitted
  over the folds of mice (no label is read), alone or averaged with the anchored map;
- the same label spreading with k and alpha chosen on Allen cells only (`allen_spreading`:
  5 folds of Allen donors, seed 100; the 12-feature subclass average's out-of-fold
  P(subclass) spread over each held-out fold's cells on all of Allen's features).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.metrics import accuracy_score, f1_score, recall_score
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PowerTransformer

from ephys2tx.datasets.cells import usable_features
from ephys2tx.datasets.labels import DEFAULT_LABEL
from ephys2tx.datasets.scala2021 import m1_cells
from ephys2tx.default_model import DEFAULT_SETTINGS, default_model_for_lab, default_training_cells
from ephys2tx.evaluation.crosslab import MOUSE_FOLDS, mouse_folds
from ephys2tx.models.ensemble import seeded
from ephys2tx.models.forest import make_forest
from ephys2tx.models.lab import (
    ANCHOR_MIN_CELLS,
    ANCHOR_PROBABILITY,
    FeatureShift,
    class_anchored_shift,
    lab_features,
    own_columns,
)
from ephys2tx.trust.interneuron import m1_detector

PSEUDO_WEIGHT = 0.5
LAMBDAS = (1.0, 0.1)
BOOTSTRAPS = 500


class Setup:
    """The M1 cells, the reference fit on the 12 shared features, held-out detector flags."""

    def __init__(self, seed: int = 0):
        self.ref = default_training_cells("mouse")
        lab, _ = m1_cells()
        self.lab = lab.reset_index(drop=True)
        self.feats = lab_features(self.lab[self.lab["cell_class"] == "gabaergic"], self.ref)
        self.fit = default_model_for_lab("mouse", self.lab, self.feats, self.ref, seed)
        self.classes = list(self.fit.taxonomy.subclasses)
        self.names = np.asarray(self.classes, dtype=object)
        self.ref_y = self.ref[DEFAULT_LABEL["mouse"]].to_numpy(dtype=object)
        self.folds = mouse_folds(self.lab["donor"], MOUSE_FOLDS, seed)
        score = np.full(len(self.lab), np.nan)
        for k in range(MOUSE_FOLDS):  # as the benchmark: fitted on the other mice
            test = self.folds == k
            det = m1_detector(
                "mouse", self.feats, self.ref, exclude_donors=set(self.lab.loc[test, "donor"]),
                seed=seed, m1=self.lab,
            )  # fmt: skip
            score[test] = det.score(self.lab[test])
        self.eligible = ~(np.nan_to_num(score) > 0.5)
        self.gaba = (self.lab["cell_class"] == "gabaergic").to_numpy()
        self.truth = self.lab["label5"].to_numpy(dtype=object).astype(str)
        R = self.ref[self.feats].to_numpy(float)
        self.mu, self.sd = np.nanmean(R, 0), np.nanstd(R, 0)

    def proba(self, cells: pd.DataFrame) -> np.ndarray:
        levels = self.fit.model.predict_proba_levels(cells.reindex(columns=self.feats))
        return levels["subclass"].to_numpy()

    def anchors(self, p: np.ndarray, threshold: float = ANCHOR_PROBABILITY) -> np.ndarray:
        return np.where(self.eligible & (p.max(1) >= threshold), self.names[p.argmax(1)], None)

    def anchored(self, threshold=ANCHOR_PROBABILITY, rounds=5, log=()) -> tuple:
        """The class-anchored map (as `align_unlabelled`), optionally in log units for `log`."""
        L, R = self.lab.copy(), self.ref.copy()
        for f in log:
            L[f], R[f] = np.log(L[f]), np.log(R[f])

        def to_ref(shift):
            out = shift.to_reference(L)
            for f in log:
                out[f] = np.exp(out[f])
            return out

        shift = FeatureShift.identity(self.feats)
        for _ in range(rounds):
            called = self.anchors(self.proba(to_ref(shift)), threshold)
            shift = class_anchored_shift(L, called, R, self.ref_y, self.feats)
        return self.proba(to_ref(shift)), shift

    # CORAL, in reference-standardized units
    def z(self, cells: pd.DataFrame) -> np.ndarray:
        return (cells[self.feats].to_numpy(float) - self.mu) / self.sd

    def from_z(self, Z: np.ndarray) -> pd.DataFrame:
        out = self.lab.copy()
        out[self.feats] = Z * self.sd + self.mu
        return out


def _root(C: np.ndarray, inverse: bool = False) -> np.ndarray:
    w, V = np.linalg.eigh(C)
    return (V * np.clip(w, 1e-9, None) ** (-0.5 if inverse else 0.5)) @ V.T


def _pooled(Z: np.ndarray, y: np.ndarray, classes: list) -> tuple[np.ndarray, dict]:
    S, n, means = np.zeros((Z.shape[1],) * 2), 0, {}
    for c in classes:
        Zc = Z[y == c]
        means[c] = Zc.mean(0)
        S += (Zc - means[c]).T @ (Zc - means[c])
        n += len(Zc) - 1
    return S / n, means


def coral_candidates(s: Setup, shift: FeatureShift, p_anchor: np.ndarray) -> dict:
    Rz = s.z(s.ref)
    ok = np.isfinite(Rz).all(1)
    Rz, ry = Rz[ok], s.ref_y[ok]
    eye = np.eye(len(s.feats))
    out = {}
    for lam in LAMBDAS:
        Cr = np.cov(Rz.T) + lam * eye
        for name, pre, keep_mean in (
            ("coral", None, False),
            ("anchored + coral", shift, False),
            ("anchored + coral, covariance only", shift, True),
        ):
            Z = s.z(pre.to_reference(s.lab) if pre is not None else s.lab)
            L = Z[s.eligible]
            A = _root(Cr) @ _root(np.cov(L.T) + lam * eye, inverse=True)
            b = (L.mean(0) if keep_mean else Rz.mean(0)) - A @ L.mean(0)
            out[f"{name}, lambda {lam:g}"] = s.proba(s.from_z(Z @ A.T + b))
        for start, label in ((p_anchor, "from the anchored calls"), (s.proba(s.lab), "from none")):
            p = start
            for _ in range(5):
                called = s.anchors(p)
                counts = pd.Series(called[called != None]).value_counts()  # noqa: E711
                cls = [c for c, n in counts.items() if n >= ANCHOR_MIN_CELLS]
                keep = np.isin(called, cls)
                Sl, ml = _pooled(s.z(s.lab)[keep], called[keep], cls)
                Sr, mr = _pooled(Rz[np.isin(ry, cls)], ry[np.isin(ry, cls)], cls)
                A = _root(Sr + lam * eye) @ _root(Sl + lam * eye, inverse=True)
                w = np.array([counts[c] for c in cls], float) / sum(counts[c] for c in cls)
                b = sum(wi * (mr[c] - A @ ml[c]) for wi, c in zip(w, cls, strict=True))
                p = s.proba(s.from_z(s.z(s.lab) @ A.T + b))
            out[f"class-conditional coral {label}, lambda {lam:g}"] = p
    return out


def prior_candidates(s: Setup, p_none: np.ndarray, p_anchor: np.ndarray) -> dict:
    k = len(s.classes)
    uniform = np.full(k, 1 / k)

    def adjust(p, pi):
        q = p * (pi / uniform)
        return q / q.sum(1, keepdims=True)

    def em(p):
        pi = uniform.copy()
        for _ in range(100):
            new = adjust(p, pi).mean(0)
            if np.abs(new - pi).max() < 1e-6:
                break
            pi = new
        return pi

    out = {}
    for label, p in (("none", p_none), ("anchored", p_anchor)):
        e = p[s.eligible]
        mixes = {
            "mean probability": e.mean(0),
            "share of calls": np.bincount(e.argmax(1), minlength=k) / len(e),
            "EM": em(e),
        }
        for name, pi in mixes.items():
            out[f"{label} + prior ({name})"] = adjust(p, pi)
    return out


def self_training(s: Setup, shift: FeatureShift, p_anchor: np.ndarray) -> dict:
    members = DEFAULT_SETTINGS["mouse"].subclass
    Rx = s.ref[s.feats].fillna(s.ref[s.feats].median())
    Lx = shift.to_reference(s.lab)[s.feats]
    k = len(s.classes)
    out = {}
    for reweight in (False, True):
        p = p_anchor
        for r in range(1, 4):
            confident = s.eligible & (p.max(1) >= ANCHOR_PROBABILITY)
            w_ref = np.ones(len(Rx))
            if reweight:  # the members are class-balanced: a class's cells total N * pi_c
                pi = p[s.eligible].mean(0)
                w_ref = np.array([pi[s.classes.index(c)] * k for c in s.ref_y])
            X = pd.concat([Rx, Lx[confident]], ignore_index=True)
            y = np.r_[s.ref_y, s.names[p.argmax(1)][confident]].astype(str)
            w = np.r_[w_ref, np.full(confident.sum(), PSEUDO_WEIGHT)]
            p = 0
            for _, est in members:
                e = seeded(est, 0, 1)
                key = (
                    f"{e.steps[-1][0]}__sample_weight"
                    if isinstance(e, Pipeline)
                    else "sample_weight"
                )
                e.fit(X, y, **{key: w})
                p = p + e.predict_proba(Lx)[:, [list(e.classes_).index(c) for c in s.classes]]
            p = p / len(members)
            out[f"self-training{', class mix re-estimated' if reweight else ''}, {r} round(s)"] = p
    return out


def anchored_variants(s: Setup, p_anchor: np.ndarray) -> dict:
    positive = [f for f in s.feats if (s.ref[f].dropna() > 0).all() and (s.lab[f] > 0).all()]
    out = {"anchored, log units for the positive features": s.anchored(log=positive)[0]}
    for t in (0.5, 0.6, 0.8, 0.9):
        out[f"anchored, anchors at P >= {t:g}"] = s.anchored(threshold=t)[0]
    for r in (1, 10):
        out[f"anchored, {r} round(s)"] = s.anchored(rounds=r)[0]
    p = p_anchor
    for _ in range(5):  # per-class maps, each cell mapped by its P-weighted mix of them
        called, maps = s.anchors(p), {}
        for c in s.classes:
            if (called == c).sum() >= ANCHOR_MIN_CELLS:
                only = np.where(called == c, c, None)
                maps[c] = class_anchored_shift(s.lab, only, s.ref, s.ref_y, s.feats)
        X = s.lab[s.feats].to_numpy(float)
        mixed = sum(p[:, [s.classes.index(c)]] * (m.offset + m.scale * X) for c, m in maps.items())
        total = sum(p[:, [s.classes.index(c)]] for c in maps)
        cells = s.lab.copy()
        cells[s.feats] = mixed / total
        p = s.proba(cells)
    out["per-class maps mixed by P(subclass)"] = p
    return out


def _spread(Z: np.ndarray, P0: np.ndarray, k: int, alpha: float) -> np.ndarray:
    """Label spreading of P0 over a symmetric Gaussian k-nearest-neighbour graph of Z."""
    d, nb = NearestNeighbors(n_neighbors=k + 1).fit(Z).kneighbors(Z)
    W = np.zeros((len(Z),) * 2)
    rows = np.repeat(np.arange(len(Z)), k)
    W[rows, nb[:, 1:].ravel()] = np.exp(-((d[:, 1:] / np.median(d[:, 1:])) ** 2)).ravel()
    W = (W + W.T) / 2
    D = 1 / np.sqrt(W.sum(1))
    F = np.linalg.solve(np.eye(len(Z)) - alpha * W * D[:, None] * D[None, :], (1 - alpha) * P0)
    return F / F.sum(1, keepdims=True)


def own_geometry(s: Setup, p_anchor: np.ndarray) -> dict:
    out = {}
    for cols, label in ((s.feats, "shared features"), (own_columns(s.lab), "own columns")):
        X = SimpleImputer(strategy="median").fit_transform(s.lab[cols].astype(float))
        Z = PowerTransformer().fit(X[s.eligible]).transform(X)
        e = np.flatnonzero(s.eligible)
        for k in (10, 20):
            for alpha in (0.5, 0.9):
                p = p_anchor.copy()
                p[e] = _spread(Z[e], p_anchor[e], k, alpha)
                out[f"label spreading, {label}, k {k}, alpha {alpha:g}"] = p
        confident = s.eligible & (p_anchor.max(1) >= ANCHOR_PROBABILITY)
        called = s.names[p_anchor.argmax(1)].astype(str)
        p = np.zeros_like(p_anchor)
        for fold in range(MOUSE_FOLDS):
            train, test = confident & (s.folds != fold), s.folds == fold
            forest = make_forest(0, n_estimators=300, n_jobs=1)
            forest.fit(s.lab.loc[train, cols].astype(float), called[train])
            order = [list(forest.classes_).index(c) for c in s.classes]
            p[test] = forest.predict_proba(s.lab.loc[test, cols].astype(float))[:, order]
        out[f"forest on confident calls, {label}"] = p
        out[f"forest on confident calls, {label}, averaged with anchored"] = (p + p_anchor) / 2
    return out


SPREAD_GRID = [(k, a) for k in (5, 10, 20) for a in (0.2, 0.5, 0.8, 0.9)]


def allen_spreading(s: Setup, seed: int = 100) -> tuple[tuple[int, float], dict]:
    """The (k, alpha) of label spreading with the best mean macro-F1 on Allen cells: the
    subclass average on the lab's features fitted on 4 folds of donors, its P(subclass) on
    the 5th spread over that fold's cells (all of Allen's features, as a lab's own columns)."""
    y = s.ref_y.astype(str)
    folds = mouse_folds(s.ref["donor"], MOUSE_FOLDS, seed)
    X = s.ref[s.feats].fillna(s.ref[s.feats].median())
    columns = usable_features(s.ref)
    scores = {g: [] for g in [None, *SPREAD_GRID]}
    for fold in range(MOUSE_FOLDS):
        train, test = folds != fold, folds == fold
        members = DEFAULT_SETTINGS["mouse"].subclass
        P = 0
        for _, est in members:
            e = seeded(est, 0, 1).fit(X[train], y[train])
            P = P + e.predict_proba(X[test])[:, [list(e.classes_).index(c) for c in s.classes]]
        P = P / len(members)
        G = SimpleImputer(strategy="median").fit_transform(s.ref.loc[test, columns].astype(float))
        Z = PowerTransformer().fit_transform(G)
        scores[None].append(f1_score(y[test], s.names[P.argmax(1)].astype(str), average="macro"))
        for k, alpha in SPREAD_GRID:
            Q = _spread(Z, P, k, alpha)
            scores[(k, alpha)].append(
                f1_score(y[test], s.names[Q.argmax(1)].astype(str), average="macro")
            )
    mean = {str(g): float(np.mean(v)) for g, v in scores.items()}
    best = max(SPREAD_GRID, key=lambda g: round(mean[str(g)], 6))
    return best, mean


def allen_chosen(s: Setup, p_anchor: np.ndarray) -> dict:
    (k, alpha), mean = allen_spreading(s)
    print(f"label spreading on Allen cells (mean macro-F1 over 5 folds of donors): {mean}")
    X = SimpleImputer(strategy="median").fit_transform(s.lab[own_columns(s.lab)].astype(float))
    Z = PowerTransformer().fit(X[s.eligible]).transform(X)
    e = np.flatnonzero(s.eligible)
    p = p_anchor.copy()
    p[e] = _spread(Z[e], p_anchor[e], k, alpha)
    return {f"label spreading, own columns, k {k}, alpha {alpha:g} (chosen on Allen cells)": p}


def figures(s: Setup, calls: np.ndarray, idx: np.ndarray | None = None) -> dict:
    idx = np.flatnonzero(s.gaba) if idx is None else idx
    y, c = s.truth[idx], calls[idx].astype(str)
    out = {
        "macro_f1": f1_score(y, c, labels=s.classes, average="macro", zero_division=0),
        "accuracy": accuracy_score(y, c),
    }
    recall = recall_score(y, c, labels=s.classes, average=None, zero_division=0)
    return out | {f"recall_{k}": float(r) for k, r in zip(s.classes, recall, strict=True)}


def nested(s: Setup, calls: dict) -> tuple[np.ndarray, list]:
    out, chosen = np.empty(len(s.lab), dtype=object), []
    for k in range(MOUSE_FOLDS):
        inner = np.flatnonzero(s.gaba & (s.folds != k))
        score = {m: round(figures(s, c, inner)["macro_f1"], 6) for m, c in calls.items()}
        best = max(calls, key=score.get)  # ties: the first listed
        chosen.append(best)
        out[s.folds == k] = calls[best][s.folds == k]
    return out, chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("label-free"))
    parser.add_argument(
        "--fold-seeds", type=int, default=1,
        help="repeat the nested choice over this many shuffles of the mice into folds "
        "(seed 0 is the benchmark's; the candidates stay as fitted with seed-0 folds)",
    )  # fmt: skip
    args = parser.parse_args()
    s = Setup()
    p_none = s.proba(s.lab)
    p_anchor, shift = s.anchored()
    families = {
        "CORAL": coral_candidates(s, shift, p_anchor),
        "prior correction": prior_candidates(s, p_none, p_anchor),
        "self-training": self_training(s, shift, p_anchor),
        "anchored map variants": anchored_variants(s, p_anchor),
        "the lab's own geometry": own_geometry(s, p_anchor),
        "label spreading chosen on Allen cells": allen_chosen(s, p_anchor),
    }
    base = {"none": p_none, "anchored": p_anchor}
    proba = base | {k: v for fam in families.values() for k, v in fam.items()}
    calls = {k: s.names[p.argmax(1)] for k, p in proba.items()}
    rng = np.random.default_rng(0)
    g = np.flatnonzero(s.gaba)
    mice = s.lab["donor"].astype(str).to_numpy()[g]
    by_mouse = {m: g[mice == m] for m in np.unique(mice)}
    keys = list(by_mouse)
    draws = [
        np.concatenate([by_mouse[keys[i]] for i in rng.integers(0, len(keys), len(keys))])
        for _ in range(BOOTSTRAPS)
    ]
    anchored_boot = np.array([figures(s, calls["anchored"], d)["macro_f1"] for d in draws])
    rows = {}
    for name, c in calls.items():
        diff = np.array([figures(s, c, d)["macro_f1"] for d in draws]) - anchored_boot
        rows[name] = figures(s, c) | {
            "diff_low": float(np.quantile(diff, 0.025)),
            "diff_high": float(np.quantile(diff, 0.975)),
        }
    print("| candidate | macro-F1 | accuracy | vs anchored (95%, mice bootstrap) | "
          + " | ".join(f"{c} recall" for c in s.classes) + " |")  # fmt: skip
    print("|---" * (4 + len(s.classes)) + "|")
    for name, r in sorted(rows.items(), key=lambda kv: -kv[1]["macro_f1"]):
        recalls = " | ".join(f"{r[f'recall_{c}']:.2f}" for c in s.classes)
        print(
            f"| {name} | {r['macro_f1']:.3f} | {r['accuracy']:.3f} | "
            f"{r['diff_low']:+.3f} to {r['diff_high']:+.3f} | {recalls} |"
        )
    pools = {"none, anchored": base}
    pools |= {f"none, anchored + {fam}": base | cands for fam, cands in families.items()}
    pools["all candidates"] = proba
    selection = {}
    for seed in range(args.fold_seeds):
        s.folds = mouse_folds(s.lab["donor"], MOUSE_FOLDS, seed)
        for pool, members in pools.items():
            out, chosen = nested(s, {k: calls[k] for k in members})
            f = figures(s, out)
            selection[f"fold seed {seed}: {pool}"] = {
                "macro_f1": f["macro_f1"], "accuracy": f["accuracy"], "chosen": chosen
            }  # fmt: skip
            print(
                f"nested (fold seed {seed}), {pool}: macro-F1 {f['macro_f1']:.3f}, "
                f"accuracy {f['accuracy']:.3f}; {chosen}"
            )
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"candidates": rows, "nested": selection}
    (args.out / "label-free.json").write_text(json.dumps(payload, indent=1))
    print(f"wrote {args.out}/label-free.json")


if __name__ == "__main__":
    main()
