"""Novelty of a cell against a model's training cells: k-nearest-neighbour typicality.

Method. Features are robust-scaled with the training cells' median and IQR/1.349,
clipped to +-10 and multiplied by a weight per feature: the model's impurity importance
(times the number of features, so weights average 1) where the model has one (forests),
else 1. So the distance counts what the model reads. The distance between two cells is scikit-learn's NaN-aware Euclidean
distance (only coordinates measured in both cells count, scaled up to the full length).
A cell's atypicality is its mean distance to its k = 20 nearest training cells. Each
training cell gets its own atypicality leaving out every cell of its own donor (out of
fold). The novelty of a cell is the share of training cells that are more typical than it
(smaller out-of-fold atypicality): a number in [0, 1]; a cell with no measured feature
gets NaN. The `novel` threshold is the 95th percentile of the training cells' own
out-of-fold novelty, so 5% of the training cells are flagged.

The `novel` flag of a calibrated model (`NovelFlag`) reads more than the kNN novelty: it is
raised when the rank average of the novelty and of 1 - the top (temperature-scaled)
probability, each as a share of the training cells' own out-of-fold values, exceeds the
level that 5% of the training cells reach. On seed-100 folds with a held-out class it left
fewer unseen-class cells confident than the kNN novelty alone, in both species, while
keeping more in-distribution calls confident; a max of the two, forest proximity, tree vote
entropy and an empty conformal set at a smaller alpha did worse (`benchmarks/select_novelty.py`;
the figures: docs/research/trust.md#the-novelty-score). An uncalibrated model (no
out-of-fold probabilities) keeps the kNN-only flag.

k, the global (not per-class) form and the weights were chosen on donor-grouped folds of
seed 100 with a held-out class (mouse Sncg, human Lamp5): per-class distances scored lower
there, and importance weights lifted the AUROC of novelty in both species
(docs/research/trust.md#k-form-and-weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics.pairwise import nan_euclidean_distances

CLIP = 10.0
NOVEL_SHARE = 0.05  # share of training cells the `novel` flag is calibrated to raise


@dataclass
class NoveltyBaseline:
    """A model's training cells in robust-scaled form and their out-of-fold atypicality."""

    features: list[str]
    center: np.ndarray  # (d,) median per feature
    scale: np.ndarray  # (d,) IQR / 1.349 per feature (1 where that is 0 or NaN)
    cells: np.ndarray  # (n_ref, d) scaled, clipped training cells (NaN kept)
    ref_dist: np.ndarray  # (n_ref,) sorted leave-own-donor-out kNN distances
    threshold: float  # novelty above this raises `novel`
    k: int = 20
    weights: np.ndarray | None = None  # (d,) per-feature weight (None: all 1)

    @classmethod
    def fit(
        cls,
        X: ArrayLike,
        groups: ArrayLike,
        features: Sequence[str],
        k: int = 20,
        weights: ArrayLike | None = None,
    ) -> NoveltyBaseline:
        """Scale the training cells and score each against the cells of other donors."""
        X = np.asarray(X, float)
        groups = np.asarray(groups)
        center = np.nanmedian(X, axis=0)
        q75, q25 = np.nanpercentile(X, [75, 25], axis=0)
        scale = (q75 - q25) / 1.349
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        center = np.where(np.isfinite(center), center, 0.0)
        w = None if weights is None else np.asarray(weights, float)
        baseline = cls(
            list(features), center, scale, np.zeros((0, len(center))), np.zeros(0), 1.0, k, w
        )
        cells = baseline._scaled(X)
        baseline.cells = cells
        own = baseline._knn_distance(cells, groups)
        baseline.ref_dist = np.sort(own[np.isfinite(own)])
        baseline.threshold = float(np.quantile(baseline._share_below(own), 1 - NOVEL_SHARE))
        return baseline

    def _scaled(self, X: ArrayLike) -> np.ndarray:
        z = np.clip((np.asarray(X, float) - self.center) / self.scale, -CLIP, CLIP)
        return z if self.weights is None else z * self.weights

    def _distances(self, Z: np.ndarray, chunk: int = 512):
        """(rows, distances to every training cell) in chunks; inf where no feature is
        measured in both cells."""
        for start in range(0, len(Z), chunk):
            rows = slice(start, start + chunk)
            d = nan_euclidean_distances(Z[rows], self.cells)
            d[~np.isfinite(d)] = np.inf
            yield rows, d

    def _knn_distance(self, Z: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
        """Mean distance to the k nearest training cells (of other donors when `groups`)."""
        out = np.full(len(Z), np.nan)
        kk = min(self.k, len(self.cells) - 1 if groups is not None else len(self.cells))
        for rows, d in self._distances(Z):
            if groups is not None:
                d[groups[rows, None] == groups[None, :]] = np.inf
            out[rows] = np.partition(d, kk - 1, axis=1)[:, :kk].mean(axis=1)
        return out

    def neighbours(self, X: ArrayLike, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Row indices of the k nearest training cells (in the order they were fitted) and
        their distances, nearest first, in the novelty distance."""
        Z = self._scaled(X)
        k = min(k, len(self.cells))
        idx = np.zeros((len(Z), k), dtype=int)
        dist = np.zeros((len(Z), k))
        for rows, d in self._distances(Z):
            order = np.argsort(d, axis=1, kind="stable")[:, :k]
            idx[rows], dist[rows] = order, np.take_along_axis(d, order, axis=1)
        return idx, dist

    def _share_below(self, dist: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.ref_dist, dist, side="left") / max(len(self.ref_dist), 1)

    def novelty(self, X: ArrayLike) -> np.ndarray:
        """Novelty in [0, 1] of each row of X (columns = `features`); NaN if nothing is measured."""
        Z = self._scaled(X)
        novelty = self._share_below(self._knn_distance(Z))
        novelty[np.isnan(Z).all(axis=1)] = np.nan
        return novelty

    def own_novelty(self, groups: ArrayLike) -> np.ndarray:
        """Each training cell's novelty against the training cells of other donors (in
        the order fitted; `groups` as at fitting)."""
        return self._share_below(self._knn_distance(self.cells, np.asarray(groups)))

    def is_novel(self, novelty: np.ndarray) -> np.ndarray:
        """True where the novelty exceeds the threshold calibrated on the training cells."""
        return np.nan_to_num(novelty, nan=0.0) > self.threshold

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for an .npz file (see `from_arrays`)."""
        return {
            "features": np.asarray(self.features, dtype=str),
            "center": self.center,
            "scale": self.scale,
            "cells": self.cells.astype(np.float32),
            "ref_dist": self.ref_dist,
            "threshold": np.asarray(self.threshold),
            "k": np.asarray(self.k),
            "weights": np.ones(len(self.center)) if self.weights is None else self.weights,
        }

    @classmethod
    def from_arrays(cls, a) -> NoveltyBaseline:
        """The baseline back from `to_arrays` (or an opened .npz file)."""
        return cls(
            features=[str(f) for f in a["features"]],
            center=np.asarray(a["center"], float),
            scale=np.asarray(a["scale"], float),
            cells=np.asarray(a["cells"], float),
            ref_dist=np.asarray(a["ref_dist"], float),
            threshold=float(a["threshold"]),
            k=int(a["k"]),
            weights=np.asarray(a["weights"], float) if "weights" in a else None,
        )


def share_below(sorted_values: np.ndarray, values: ArrayLike) -> np.ndarray:
    """Share of the (sorted, finite) `sorted_values` below each value."""
    return np.searchsorted(sorted_values, np.asarray(values, float), side="left") / max(
        len(sorted_values), 1
    )


@dataclass
class NovelFlag:
    """The `novel` flag of a calibrated model: the rank average of the kNN novelty and of
    1 - the top probability, each a share of the training cells' own (out-of-fold) values,
    above the level that `NOVEL_SHARE` of the training cells reach."""

    uncertainty: np.ndarray  # sorted out-of-fold 1 - top probability of the training cells
    threshold: float

    @classmethod
    def fit(cls, ref_novelty: ArrayLike, ref_top_probability: ArrayLike) -> NovelFlag:
        """From each training cell's out-of-donor novelty and out-of-fold top probability
        (same cells, same order)."""
        uncertainty = 1 - np.asarray(ref_top_probability, float)
        flag = cls(np.sort(uncertainty[np.isfinite(uncertainty)]), 1.0)
        score = flag.score(ref_novelty, ref_top_probability)
        flag.threshold = float(np.quantile(score[np.isfinite(score)], 1 - NOVEL_SHARE))
        return flag

    def score(self, novelty: ArrayLike, top_probability: ArrayLike) -> np.ndarray:
        """The combined score in [0, 1] (a cell with no measured feature counts novelty 0)."""
        novelty = np.nan_to_num(np.asarray(novelty, float), nan=0.0)
        return (novelty + share_below(self.uncertainty, 1 - np.asarray(top_probability))) / 2

    def is_novel(self, novelty: ArrayLike, top_probability: ArrayLike) -> np.ndarray:
        """True where the combined score exceeds the calibrated threshold."""
        return self.score(novelty, top_probability) > self.threshold

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"uncertainty": self.uncertainty, "threshold": np.asarray(self.threshold)}

    @classmethod
    def from_arrays(cls, a) -> NovelFlag:
        return cls(np.asarray(a["uncertainty"], float), float(a["threshold"]))
