"""Temperature scaling of class probabilities, fitted on donor-grouped out-of-fold scores.

Why: a class-balanced forest averages many trees and its top probability is far below its
accuracy (the figures: docs/results/trust.md). p -> softmax(log p / T), with T fitted by
minimizing the log-loss of out-of-fold probabilities of the training cells (donor-grouped,
so no donor is scored by a model that saw it); the most probable class never changes.
Vector scaling and Dirichlet calibration were compared on seed-100 folds and not adopted
(docs/research/default-model.md#calibration); they live in
`benchmarks/select_calibration.py`, the selection that measured them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

EPS = 1e-6


def _log_p(proba: ArrayLike) -> np.ndarray:
    return np.log(np.clip(np.asarray(proba, float), EPS, 1.0))


def _columns(y: ArrayLike, classes: Sequence[str]) -> np.ndarray:
    index = {str(c): i for i, c in enumerate(classes)}
    return np.array([index[str(v)] for v in np.asarray(y)])


@dataclass
class Temperature:
    """p -> softmax(log p / T); T = 1 leaves probabilities as they are."""

    temperature: float = 1.0

    @classmethod
    def fit(cls, proba: np.ndarray, y: ArrayLike, classes: Sequence[str]) -> Temperature:
        """The T that minimizes the log-loss of out-of-fold probabilities (columns = classes)."""
        column = _columns(y, classes)
        logp = _log_p(proba)

        def loss(log_t: float) -> float:
            z = log_softmax(logp / np.exp(log_t), axis=1)
            return float(-np.mean(z[np.arange(len(column)), column]))

        best = minimize_scalar(loss, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
        return cls(float(np.exp(best.x)))

    def apply(self, proba: np.ndarray) -> np.ndarray:
        """Scaled probabilities; rows sum to 1."""
        return np.exp(log_softmax(_log_p(proba) / self.temperature, axis=1))

    def to_dict(self) -> dict:
        return {"method": "temperature", "temperature": self.temperature}
