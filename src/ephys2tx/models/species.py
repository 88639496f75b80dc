"""Species fingerprint: which species' public feature distribution a cell resembles.

A gradient-boosted classifier (scikit-learn's HistGradientBoosting, which takes NaN)
separates the mouse (Gouwens et al. 2020) and human (Lee, Dalley et al. 2023) cells on the
features measured in at least 20% of the cells of both species, so that a feature one table
never has cannot give the answer away. It learns physiology and the two public pipelines
alike. `species_mismatch` is raised when the probability of the model's species falls
below `MISMATCH_BELOW[species]`. Out of fold (donor-grouped, seed 100; not the reported
seed-0 folds) some human cells are mouse-like in sag and AHP, with probabilities near 0, so
no threshold separates the species cleanly: with 0.5, 99.2% of mouse cells are flagged under
a human model and 88.5% of human cells under a mouse model, but also 11.5% of human and 0.8%
of mouse cells under a model of their own species. A human model therefore flags only below
0.02 (97.5% of mouse cells, 6.4% of human cells); a mouse model keeps 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

MIN_COVERAGE = 0.2
MISMATCH_BELOW = {"human": 0.02, "mouse": 0.5}


@dataclass
class SpeciesFingerprint:
    """A fitted mouse-vs-human classifier and the features it reads."""

    features: list[str]
    estimator: HistGradientBoostingClassifier

    @classmethod
    def fit(
        cls, cells: Mapping[str, pd.DataFrame], features: list[str], seed: int = 0
    ) -> SpeciesFingerprint:
        """Fit on the cells of each species (keys are species names) over shared features."""
        shared = [
            f
            for f in features
            if all(f in t.columns and t[f].notna().mean() >= MIN_COVERAGE for t in cells.values())
        ]
        X = pd.concat([t[shared] for t in cells.values()], ignore_index=True)
        y = np.concatenate([[name] * len(t) for name, t in cells.items()])
        model = HistGradientBoostingClassifier(
            max_iter=200, learning_rate=0.1, class_weight="balanced", random_state=seed
        )
        return cls(shared, model.fit(X.to_numpy(float), y))

    def proba(self, X: pd.DataFrame, species: str) -> np.ndarray:
        """Probability that each cell comes from `species` (NaN if no shared feature measured)."""
        values = X.reindex(columns=self.features).to_numpy(float)
        classes = list(self.estimator.classes_)
        if species not in classes:
            return np.full(len(values), np.nan)
        p = self.estimator.predict_proba(values)[:, classes.index(species)]
        p[np.isnan(values).all(axis=1)] = np.nan
        return p

    def mismatch(self, X: pd.DataFrame, species: str) -> np.ndarray:
        """True where a cell looks like another species than `species`."""
        return np.nan_to_num(self.proba(X, species), nan=1.0) < MISMATCH_BELOW.get(species, 0.5)
