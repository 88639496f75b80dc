"""Out-of-fold probabilities → temperature → Mondrian conformal scores, level by level.

The calibration step of every model's trust: a flat classifier has one level, the
hierarchical model two (subclass, then t-type). The temperature is fitted on the first
level (the call's) and applied to every level in the model's own way (`OutOfFold.rescale`),
so the conformal scores are those of the probabilities `predict` will see.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .conformal import MondrianConformal, out_of_fold_proba
from .temperature import Temperature

# How a temperature fitted on the first level applies to all levels' probabilities.
Rescale = Callable[[dict[str, np.ndarray], Temperature], dict[str, np.ndarray]]


@dataclass
class OutOfFold:
    """Donor-grouped out-of-fold probabilities of the training cells per level (the first
    level is the call's), each cell's true class per level, and each level's classes (the
    probability columns)."""

    proba: dict[str, np.ndarray]
    truth: dict[str, np.ndarray]
    classes: dict[str, list[str]]
    rescale: Rescale | None = None  # None: the temperature scales each level as it is

    @classmethod
    def flat(cls, estimator, X, y: ArrayLike, groups, cv, level: str, n_jobs: int = 1) -> OutOfFold:
        """One level: an unfitted estimator refitted on each donor-grouped fold (the columns
        are the sorted classes)."""
        y = np.asarray(y).astype(str)
        proba = out_of_fold_proba(estimator, X, y, groups, cv, n_jobs)
        return cls({level: proba}, {level: y}, {level: sorted(set(y))})


@dataclass
class Calibration:
    """Per-level conformal scores and the temperature, fitted on the same out-of-fold
    probabilities; `top_probability` is each training cell's out-of-fold top probability at
    the first level (temperature applied), which calibrates the `novel` flag."""

    conformal: dict[str, MondrianConformal]
    temperature: Temperature
    top_probability: np.ndarray
    # the out-of-fold probabilities, temperature applied ({} for a fit read back from disk)
    scaled: dict[str, np.ndarray]


def calibrate(oof: OutOfFold, scaling: bool = True) -> Calibration:
    """Fit the temperature on the first level (`scaling`; else T = 1), apply it, then fit
    each level's Mondrian conformal scores."""
    first = next(iter(oof.proba))
    temperature = Temperature()
    if scaling:
        temperature = Temperature.fit(oof.proba[first], oof.truth[first], oof.classes[first])
    if oof.rescale is not None:
        scaled = oof.rescale(oof.proba, temperature)
    else:
        scaled = {level: temperature.apply(p) for level, p in oof.proba.items()}
    conformal = {
        level: MondrianConformal.fit(scaled[level], oof.truth[level], oof.classes[level])
        for level in oof.proba
    }
    return Calibration(conformal, temperature, scaled[first].max(axis=1), scaled)
