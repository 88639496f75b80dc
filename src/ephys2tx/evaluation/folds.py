"""The fold rule, shared by every model so that all are compared on the same folds.

`grouped` (the default): repeated stratified K-fold where no donor is in both train and
test. `seed`: the reference study's protocol (mouse 60/20/20 random split, human 5-fold
stratified, both repeated over seeds), which ignores donors. Its 20% validation cells join
the training cells: our models hold out their own early-stopping cells from what they are
given, so each model sees the 80% the study's models saw and is tested on the same 20%.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from ..errors import Ephys2txError

PROTOCOLS = ("grouped", "seed")


@dataclass(frozen=True)
class Fold:
    """Row indices of one train/test split."""

    repeat: int
    fold: int
    train: np.ndarray
    test: np.ndarray


def donor_kfold(n_folds: int = 5, seed: int = 0) -> StratifiedGroupKFold:
    """One repeat of the fold rule as a scikit-learn splitter: `split(X, y, groups=donors)`."""
    return StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)


def grouped_folds(
    y: np.ndarray, groups: np.ndarray, n_folds: int = 5, n_repeats: int = 3, seed: int = 0
) -> list[Fold]:
    """Repeated stratified group K-fold: no donor is in both train and test."""
    y, groups = np.asarray(y), np.asarray(groups)
    if len(np.unique(groups)) < n_folds:
        raise Ephys2txError(
            f"only {len(np.unique(groups))} donors for {n_folds} donor-grouped folds; use fewer --folds"
        )
    folds = []
    for repeat in range(n_repeats):
        splitter = donor_kfold(n_folds, seed + repeat)
        for k, (train, test) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
            folds.append(Fold(repeat, k, train, test))
    return folds


def seed_folds(
    y: np.ndarray, species: str, n_repeats: int = 10, n_folds: int = 5, seed: int = 0
) -> list[Fold]:
    """The reference study's protocol: mouse 60/20/20 split per seed, human K-fold per seed."""
    y = np.asarray(y)
    idx = np.arange(len(y))
    folds = []
    for repeat in range(n_repeats):
        rs = seed + repeat
        if species == "mouse":
            train, rest = train_test_split(idx, test_size=0.4, stratify=y, random_state=rs)
            val, test = train_test_split(rest, test_size=0.5, stratify=y[rest], random_state=rs)
            folds.append(Fold(repeat, 0, np.sort(np.concatenate([train, val])), test))
        else:
            splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=rs)
            for k, (train, test) in enumerate(splitter.split(idx, y)):
                folds.append(Fold(repeat, k, train, test))
    return folds


def make_folds(
    y: np.ndarray,
    groups: np.ndarray,
    species: str,
    protocol: str = "grouped",
    n_folds: int = 5,
    n_repeats: int = 3,
    seed: int = 0,
) -> list[Fold]:
    """The folds of a protocol; every model evaluated on a species uses this."""
    if protocol == "grouped":
        return grouped_folds(y, groups, n_folds, n_repeats, seed)
    if protocol == "seed":
        return seed_folds(y, species, n_repeats, n_folds, seed)
    raise Ephys2txError(f"unknown protocol {protocol!r}; choose one of: {', '.join(PROTOCOLS)}")


def cell_folds(
    cells: pd.DataFrame,
    label: str,
    species: str,
    protocol: str = "grouped",
    n_folds: int = 5,
    n_repeats: int = 3,
    seed: int = 0,
) -> list[Fold]:
    """`make_folds` for a cell table: its `label` column, grouped by its `donor` column."""
    y, donors = cells[label].to_numpy(), cells["donor"].to_numpy()
    return make_folds(y, donors, species, protocol, n_folds, n_repeats, seed)


def subsample_groups(
    train: np.ndarray, groups: np.ndarray, fraction: float, seed: int = 0
) -> np.ndarray:
    """Keep the cells of a random `fraction` of the training donors (learning curves)."""
    if fraction >= 1.0:
        return train
    donors = np.unique(groups[train])
    rng = np.random.default_rng(seed)
    n_keep = max(1, int(round(fraction * len(donors))))
    kept = rng.choice(donors, size=n_keep, replace=False)
    return train[np.isin(groups[train], kept)]
