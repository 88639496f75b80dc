"""The classifiers that ensembles are made of: class-balanced, and each takes NaN.

Each builder returns an unfitted scikit-learn estimator seeded 0 on one thread;
`ensemble.seeded` (or `HierarchicalClassifier`'s `seed` and `n_jobs`) sets both. logreg, knn
and svc impute medians, add missing-value indicators and standardize, inside their own
pipeline: fitted per subclass, they standardize within the subclass.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from ..errors import Ephys2txError
from .ensemble import seeded, soft_vote
from .forest import make_forest
from .hierarchy import QuantileBins

TREES = 300  # the ensembles' forests (the study's own forest keeps forest.make_forest's 500)


def forest(n_estimators: int = TREES) -> RandomForestClassifier:
    """The class-balanced forest of `make_forest` (raw features)."""
    return make_forest(0, "raw", n_estimators=n_estimators, n_jobs=1)


def boosting(class_weight: str | None = "balanced", **params) -> Pipeline:
    """Histogram gradient boosting without early stopping, on unweighted quantile bins
    (`QuantileBins` says why); `params` go to `HistGradientBoostingClassifier`."""
    hgb = HistGradientBoostingClassifier(
        class_weight=class_weight, early_stopping=False, random_state=0, **params
    )
    return make_pipeline(QuantileBins(), hgb)


def slow_boosting() -> Pipeline:
    """`boosting` with smaller steps, more of them."""
    return boosting(learning_rate=0.05, max_iter=200)


def small_tree_boosting() -> Pipeline:
    """`boosting` with smaller, regularized trees, for small per-subclass problems."""
    return boosting(max_leaf_nodes=15, min_samples_leaf=10, l2_regularization=1.0)


def unweighted_boosting() -> Pipeline:
    """`boosting` without class weights."""
    return boosting(class_weight=None)


def _standardized(classifier: BaseEstimator) -> Pipeline:
    """`classifier` on median-imputed, standardized inputs with missing-value indicators."""
    imputer = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
    return make_pipeline(imputer, StandardScaler(), classifier)


def logistic(C: float = 0.1) -> Pipeline:
    """Logistic regression (inverse regularization `C`)."""
    return _standardized(LogisticRegression(C=C, class_weight="balanced", max_iter=5000))


def svc() -> Pipeline:
    """An RBF support vector classifier, its scores made probabilities by Platt scaling on
    5 inner folds (`CalibratedClassifierCV`)."""
    machine = SVC(class_weight="balanced", random_state=0)
    return _standardized(CalibratedClassifierCV(machine, ensemble=False))


def knn() -> Pipeline:
    """15 nearest neighbours, distance-weighted."""
    return _standardized(KNeighborsClassifier(n_neighbors=15, weights="distance"))


# The members by the names the selection benchmarks' --kinds options use (benchmarks/).
BY_NAME: dict[str, Callable[[], BaseEstimator]] = {
    "rf": forest,
    "hgb": boosting,
    "hgb-u": unweighted_boosting,
    "hgb-slow": slow_boosting,
    "hgb-t": small_tree_boosting,
    "logreg": logistic,
    "logreg1": partial(logistic, C=1.0),
    "logreg10": partial(logistic, C=10.0),
    "knn": knn,
    "svc": svc,
}


def named(names: str, seed: int = 0, n_jobs: int = 1) -> BaseEstimator:
    """The soft-voting ensemble of `BY_NAME` members joined by + (e.g. "rf+svc"), seeded:
    for the selection benchmarks' command lines."""
    unknown = [n for n in names.split("+") if n not in BY_NAME]
    if unknown:
        raise Ephys2txError(
            f"unknown member {unknown[0]!r}; choose from {', '.join(BY_NAME)} joined by +"
        )
    members = [(n, BY_NAME[n]()) for n in names.split("+")]
    return seeded(soft_vote(members), seed, n_jobs)
