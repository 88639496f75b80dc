"""Ensembles of scikit-learn classifiers: soft voting over named members, one seed for all
of them, and a readable description of what they are (for cache keys and model cards).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import VotingClassifier

# Parameters that say how an estimator runs, not what it learns (the seed is recorded apart).
NOT_DESCRIBED = ("n_jobs", "random_state", "verbose")


def soft_vote(members: Sequence[tuple[str, BaseEstimator]]) -> BaseEstimator:
    """The average of the members' class probabilities (a lone member is itself)."""
    members = list(members)
    if not members:
        raise ValueError("an ensemble needs at least one member")
    if len(members) == 1:
        return members[0][1]
    return VotingClassifier(members, voting="soft")


def seeded(estimator: BaseEstimator, seed: int | None, n_jobs: int | None = None):
    """A clone of `estimator` with every `random_state` inside it set to `seed` and every
    `n_jobs` it sets (not None) to `n_jobs`; None leaves them as they are.

    Why one seed for all: the members of an ensemble are seeded alike (as the reported models
    were), so a model is reproduced by its estimators plus one number. An `n_jobs` left None
    (a voting ensemble's process pool, a solver's) stays None: only the thread counts the
    members ask for follow the caller's."""
    estimator = clone(estimator)
    params = estimator.get_params(deep=True)
    update = {}
    for name, value in params.items():
        last = name.rsplit("__", 1)[-1]
        if last == "random_state" and seed is not None:
            update[name] = seed
        elif last == "n_jobs" and n_jobs is not None and value is not None:
            update[name] = n_jobs
    return estimator.set_params(**update)


def describe(estimator: BaseEstimator) -> dict:
    """{"class": name, "params": ...} of an estimator: the parameters set to other than
    their defaults, nested estimators described alike. JSON-ready and stable, so it can key
    a cache and be read on a model card; any parameter set differently changes it. The seed
    and thread counts are left out (`NOT_DESCRIBED`): they do not say what the model is."""
    defaults = {
        name: p.default for name, p in inspect.signature(type(estimator)).parameters.items()
    }
    params = {
        k: _plain(v)
        for k, v in sorted(estimator.get_params(deep=False).items())
        if k not in NOT_DESCRIBED and not _same(v, defaults.get(k, inspect.Parameter.empty))
    }
    return {"class": type(estimator).__name__, "params": params}


def describe_members(members: Sequence[tuple[str, BaseEstimator]]) -> dict[str, dict]:
    """{name: `describe(estimator)`} of an ensemble's members, in their order."""
    return {name: describe(est) for name, est in members}


def _same(value, default) -> bool:
    """A parameter left at its default (NaN equals NaN; estimators never do)."""
    if isinstance(value, BaseEstimator) or isinstance(default, BaseEstimator):
        return False
    if isinstance(value, float) and isinstance(default, float):
        return value == default or (math.isnan(value) and math.isnan(default))
    try:
        return bool(type(value) is type(default) and value == default)
    except (TypeError, ValueError):  # arrays and the like compare element-wise
        return False


def _plain(value):
    """A parameter value as JSON: estimators described, sequences as lists, non-finite
    floats and other objects as text."""
    if isinstance(value, BaseEstimator):
        return describe(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):  # a numpy scalar
        return _plain(value.item())
    return getattr(value, "__name__", None) or repr(value)
