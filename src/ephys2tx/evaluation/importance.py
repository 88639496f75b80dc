"""Which feature families a model leans on: the forest's permutation importance per family."""

from __future__ import annotations

import pandas as pd
from rich.progress import track
from sklearn.base import clone
from sklearn.inspection import permutation_importance

from ..features.families import FAMILY_OF_FEATURE
from ..threads import limit, predicting
from .splits import Fold


def family_permutation_importance(
    estimator,
    cells: pd.DataFrame,
    label: str,
    features: list[str],
    folds: list[Fold],
    n_repeats: int = 3,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-feature permutation importance (drop in macro-F1 on each test fold), summed per
    family; returns family, mean, sd over folds, sorted by mean."""
    X, y = cells[features], cells[label].to_numpy()
    family = pd.Series([FAMILY_OF_FEATURE[f] for f in features], index=features)
    per_fold = []
    for fold in track(folds, description="permutation importance", transient=True):
        with limit():
            model = clone(estimator).fit(X.iloc[fold.train], y[fold.train])
        # predictions sum a forest's trees in one order (`predicting`): tied votes among
        # the thousands of permuted tables broke differently from run to run otherwise
        with predicting():
            result = permutation_importance(
                model,
                X.iloc[fold.test],
                y[fold.test],
                scoring="f1_macro",
                n_repeats=n_repeats,
                random_state=seed,
            )
        per_fold.append(pd.Series(result.importances_mean, index=features).groupby(family).sum())
    table = pd.concat(per_fold, axis=1)
    out = pd.DataFrame({"family": table.index, "mean": table.mean(axis=1), "sd": table.std(axis=1)})
    return out.fillna({"sd": 0.0}).sort_values("mean", ascending=False).reset_index(drop=True)
