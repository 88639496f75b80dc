"""Recalibration of class probabilities, fitted on donor-grouped out-of-fold scores.

Why: a class-balanced forest averages many trees and its top probability is far below its
accuracy (the figures: docs/results/trust.md; the methods compared:
docs/research/default-model.md#calibration). Every method here maps log-probabilities through a
softmax, p -> softmax(W log p + b), fitted by minimizing the log-loss of out-of-fold
probabilities of the training cells (donor-grouped, so no donor is scored by a model that
saw it):
- `temperature`: W = I / T, b = 0 (one parameter; the most probable class never changes);
- `vector`: W diagonal, plus a bias per class (2K parameters, Guo et al. 2017's vector
  scaling); the bias corrects the class-balanced training prior, so the top class can change;
- `dirichlet`: W full, plus b (Kull et al. 2019's Dirichlet calibration: a multinomial
  logistic regression on log p, scikit-learn's, L2-penalized).
Which one a model uses was chosen on seed-100 folds (`benchmarks/select_calibration.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize, minimize_scalar
from scipy.special import log_softmax

from ..errors import Ephys2txError

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


@dataclass
class LogitScaling:
    """p -> softmax(log p @ weights.T + bias): vector scaling (diagonal weights) or
    Dirichlet calibration (full weights)."""

    method: str
    weights: np.ndarray  # (k, k)
    bias: np.ndarray  # (k,)

    @classmethod
    def fit_vector(
        cls, proba: np.ndarray, y: ArrayLike, classes: Sequence[str], l2: float = 1e-3
    ) -> LogitScaling:
        """Diagonal weights and biases by L-BFGS on the log-loss (a small L2 pull of the
        weights towards 1 and the biases towards 0 keeps them finite on separable data)."""
        column = _columns(y, classes)
        logp = _log_p(proba)
        n, k = logp.shape
        onehot = np.eye(k)[column]

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w, b = theta[:k], theta[k:]
            z = log_softmax(logp * w + b, axis=1)
            resid = (np.exp(z) - onehot) / n
            value = -np.sum(onehot * z) / n + l2 * (np.sum((w - 1) ** 2) + np.sum(b**2))
            grad = np.concatenate(
                [(resid * logp).sum(axis=0) + 2 * l2 * (w - 1), resid.sum(axis=0) + 2 * l2 * b]
            )
            return value, grad

        theta0 = np.concatenate([np.ones(k), np.zeros(k)])
        best = minimize(loss, theta0, jac=True, method="L-BFGS-B")
        return cls("vector", np.diag(best.x[:k]), best.x[k:])

    @classmethod
    def fit_dirichlet(
        cls, proba: np.ndarray, y: ArrayLike, classes: Sequence[str], C: float = 1.0
    ) -> LogitScaling:
        """Full weights: scikit-learn's multinomial logistic regression on log p."""
        from sklearn.linear_model import LogisticRegression

        column = _columns(y, classes)
        k = len(classes)
        model = LogisticRegression(C=C, max_iter=2000).fit(_log_p(proba), column)
        weights, bias = np.zeros((k, k)), np.full(k, -30.0)  # an unseen class: never
        weights[model.classes_] = model.coef_ if k > 2 else np.vstack([-model.coef_, model.coef_])
        bias[model.classes_] = (
            model.intercept_ if k > 2 else [-model.intercept_[0], model.intercept_[0]]
        )
        return cls("dirichlet", weights, bias)

    def apply(self, proba: np.ndarray) -> np.ndarray:
        """Recalibrated probabilities; rows sum to 1."""
        return np.exp(log_softmax(_log_p(proba) @ self.weights.T + self.bias, axis=1))


Recalibration = Temperature | LogitScaling
RECALIBRATIONS = ("none", "temperature", "vector", "dirichlet")


def fit_recalibration(
    method: str, proba: np.ndarray, y: ArrayLike, classes: Sequence[str]
) -> Recalibration:
    """Fit one of `RECALIBRATIONS` on out-of-fold probabilities (columns = `classes`)."""
    if method == "none":
        return Temperature(1.0)
    if method == "temperature":
        return Temperature.fit(proba, y, classes)
    if method == "vector":
        return LogitScaling.fit_vector(proba, y, classes)
    if method == "dirichlet":
        return LogitScaling.fit_dirichlet(proba, y, classes)
    raise Ephys2txError(f"unknown recalibration {method!r}; choose one of {RECALIBRATIONS}")
