"""Species fingerprint: which species' public feature distribution a cell resembles.

A gradient-boosted classifier (scikit-learn's HistGradientBoosting, which takes NaN and
learns from where a value is missing) separates the mouse (Gouwens et al. 2020) and human
(Lee, Dalley et al. 2023) cells on the features measured in at least `MIN_COVERAGE` of the
cells of both species, so that a feature one table never has cannot give the answer away.
It learns physiology and the two public pipelines alike.

`species_mismatch` is raised when the probability of the model's species falls below a
threshold calibrated at a fixed false-alarm rate: a quantile (`FALSE_ALARM_BY_SPECIES`) of
that probability over the model's own species' cells, each scored out of fold (5
donor-grouped folds of the pooled cells, so no donor is scored by a classifier that saw
it). Some human cells are mouse-like in sag and AHP, so no threshold separates the species
perfectly; the rates and the classifier's settings were chosen on seed-100 folds, with the
calibration nested as in `train` (`benchmarks/select_species.py`): missingness columns, a
slower or regularized HGB, 10 calibration folds or features measured in 5% of cells did not
help more than the per-species rate. A fingerprint fitted without `own` (or asked about
another species) falls back on the fixed `MISMATCH_BELOW`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import StratifiedGroupKFold

MIN_COVERAGE = 0.2
FALSE_ALARM = 0.05  # share of the model's own species flagged (out of fold)
# Per model species, the nominal rate whose held-out false alarms stayed <= 5% on seed-100
# folds (`benchmarks/select_species.py`): the inner out-of-fold fits of the 702 human cells
# are weaker than the final fit, so a nominal 5% flagged fewer than 5% of held-out human
# cells (docs/research/trust.md#the-species-fingerprint).
FALSE_ALARM_BY_SPECIES = {"human": 0.06, "mouse": 0.045}
CALIBRATION_SPLITS = 5
HGB_SETTINGS = {"max_iter": 200, "learning_rate": 0.1}
MISMATCH_BELOW = {"human": 0.02, "mouse": 0.5}  # fingerprints fitted without a threshold


@dataclass(frozen=True)
class FingerprintSettings:
    """How a fingerprint is fitted: which features (measured in at least `min_coverage` of
    each species' cells), whether their missingness pattern is added as 0/1 columns plus the
    share of shared features measured, the classifier, and the calibration."""

    min_coverage: float = MIN_COVERAGE
    missingness: bool = False
    hgb: Mapping[str, object] = field(default_factory=lambda: dict(HGB_SETTINGS))
    false_alarm: float | None = None  # None: FALSE_ALARM_BY_SPECIES, else FALSE_ALARM
    splits: int = CALIBRATION_SPLITS

    def rate(self, species: str) -> float:
        """The nominal false-alarm rate for a model of `species`."""
        if self.false_alarm is not None:
            return self.false_alarm
        return FALSE_ALARM_BY_SPECIES.get(species, FALSE_ALARM)


def design(values: np.ndarray, missingness: bool) -> np.ndarray:
    """The classifier's input: the shared features, then (if asked) one 0/1 column per
    feature for "not measured" and the share of features measured."""
    if not missingness:
        return values
    missing = np.isnan(values)
    return np.hstack([values, missing.astype(float), 1 - missing.mean(axis=1, keepdims=True)])


@dataclass
class SpeciesFingerprint:
    """A fitted mouse-vs-human classifier, the features it reads, and (for the species it was
    calibrated for) the probability below which a cell is of another species."""

    features: list[str]
    estimator: HistGradientBoostingClassifier
    species: str | None = None
    threshold: float | None = None
    missingness: bool = False

    @classmethod
    def fit(
        cls,
        cells: Mapping[str, pd.DataFrame],
        features: list[str],
        seed: int = 0,
        own: str | None = None,
        settings: FingerprintSettings | None = None,
    ) -> SpeciesFingerprint:
        """Fit on the cells of each species (keys are species names) over shared features;
        given `own` (a key), calibrate its threshold on out-of-fold probabilities (cells need
        a `donor` column)."""
        settings = settings or FingerprintSettings()
        shared = [
            f
            for f in features
            if all(
                f in t.columns and t[f].notna().mean() >= settings.min_coverage
                for t in cells.values()
            )
        ]
        values = pd.concat([t[shared] for t in cells.values()], ignore_index=True).to_numpy(float)
        X = design(values, settings.missingness)
        y = np.concatenate([[name] * len(t) for name, t in cells.items()])
        model = HistGradientBoostingClassifier(
            class_weight="balanced", random_state=seed, **settings.hgb
        )
        threshold = None
        if own is not None:
            donors = np.concatenate(
                [name + ":" + t["donor"].astype(str).to_numpy() for name, t in cells.items()]
            )
            splitter = StratifiedGroupKFold(settings.splits, shuffle=True, random_state=seed)
            p_own = np.full(len(y), np.nan)
            for train, test in splitter.split(X, y, donors):
                fitted = clone(model).fit(X[train], y[train])
                p_own[test] = fitted.predict_proba(X[test])[:, list(fitted.classes_).index(own)]
            mine = (y == own) & ~np.isnan(values).all(axis=1)
            threshold = float(np.quantile(p_own[mine], settings.rate(own)))
        return cls(shared, model.fit(X, y), own, threshold, settings.missingness)

    def proba(self, X: pd.DataFrame, species: str) -> np.ndarray:
        """Probability that each cell comes from `species` (NaN if no shared feature measured)."""
        values = X.reindex(columns=self.features).to_numpy(float)
        classes = list(self.estimator.classes_)
        if species not in classes:
            return np.full(len(values), np.nan)
        p = self.estimator.predict_proba(design(values, self.missingness))[
            :, classes.index(species)
        ]
        p[np.isnan(values).all(axis=1)] = np.nan
        return p

    def limit(self, species: str) -> float:
        """The probability of `species` below which a cell is flagged."""
        if self.threshold is not None and self.species == species:
            return self.threshold
        return MISMATCH_BELOW.get(species, 0.5)

    def mismatch(self, X: pd.DataFrame, species: str) -> np.ndarray:
        """True where a cell looks like another species than `species`."""
        return np.nan_to_num(self.proba(X, species), nan=1.0) < self.limit(species)
