"""The fold rule as scikit-learn splitters, shared by every model so all see the same folds.

`DonorKFold` (the default protocol, "grouped"): repeated stratified K-fold where no donor
is in both train and test. `SeedProtocol` ("seed"): the published study's protocol (mouse
60/20/20 random split, human stratified K-fold, both repeated over seeds), which ignores
donors. Its 20% validation cells join the training cells: our models hold out their own
early-stopping cells from what they are given, so each model sees the 80% the study's
models saw and is tested on the same 20%.

Both have scikit-learn's `split(X, y, groups)` and `get_n_splits`, so they can be passed as
`cv=`; `folds(y, groups)` gives the same splits as `Fold` records (repeat, fold, indices).
Repeat r of a splitter with seed s uses seed s + r.
"""

from __future__ import annotations

from collections.abc import Iterator
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


class _Splitter:
    """`split` and `get_n_splits` from `folds`; subclasses say how folds are made."""

    name = ""
    n_splits: int
    n_repeats: int
    seed: int

    def folds(self, y, groups=None) -> list[Fold]:
        raise NotImplementedError

    def split(self, X, y, groups=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for fold in self.folds(y, groups):
            yield fold.train, fold.test

    def cell_folds(self, cells: pd.DataFrame, label: str) -> list[Fold]:
        """The folds of a cell table: its `label` column, grouped by its `donor` column."""
        return self.folds(cells[label].to_numpy(), cells["donor"].to_numpy())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.n_splits}x{self.n_repeats}, seed={self.seed})"


@dataclass(frozen=True, repr=False)
class DonorKFold(_Splitter):
    """Repeated stratified group K-fold: no donor is in both train and test."""

    n_splits: int = 5
    n_repeats: int = 3
    seed: int = 0
    name = "grouped"

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        return self.n_splits * self.n_repeats

    def folds(self, y, groups=None) -> list[Fold]:
        if groups is None:
            raise Ephys2txError("donor-grouped folds need the donors (groups=)")
        y, groups = np.asarray(y), np.asarray(groups)
        if len(np.unique(groups)) < self.n_splits:
            raise Ephys2txError(
                f"only {len(np.unique(groups))} donors for {self.n_splits} donor-grouped folds; "
                "use fewer --folds"
            )
        folds = []
        for repeat in range(self.n_repeats):
            splitter = donor_kfold(self.n_splits, self.seed + repeat)
            for k, (train, test) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
                folds.append(Fold(repeat, k, train, test))
        return folds


@dataclass(frozen=True, repr=False)
class SeedProtocol(_Splitter):
    """The published study's protocol: mouse 60/20/20 split per seed, human K-fold per seed."""

    species: str = "human"
    n_splits: int = 5
    n_repeats: int = 10
    seed: int = 0
    name = "seed"

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        return self.n_repeats * (1 if self.species == "mouse" else self.n_splits)

    def folds(self, y, groups=None) -> list[Fold]:
        y = np.asarray(y)
        idx = np.arange(len(y))
        folds = []
        for repeat in range(self.n_repeats):
            rs = self.seed + repeat
            if self.species == "mouse":
                train, rest = train_test_split(idx, test_size=0.4, stratify=y, random_state=rs)
                val, test = train_test_split(rest, test_size=0.5, stratify=y[rest], random_state=rs)
                folds.append(Fold(repeat, 0, np.sort(np.concatenate([train, val])), test))
            else:
                splitter = StratifiedKFold(n_splits=self.n_splits, shuffle=True, random_state=rs)
                for k, (train, test) in enumerate(splitter.split(idx, y)):
                    folds.append(Fold(repeat, k, train, test))
        return folds


Splitter = DonorKFold | SeedProtocol


def protocol_splitter(
    protocol: str, species: str, n_splits: int = 5, n_repeats: int = 3, seed: int = 0
) -> Splitter:
    """The splitter of a named protocol (what `--protocol` selects)."""
    if protocol == "grouped":
        return DonorKFold(n_splits, n_repeats, seed)
    if protocol == "seed":
        return SeedProtocol(species, n_splits, n_repeats, seed)
    raise Ephys2txError(f"unknown protocol {protocol!r}; choose one of: {', '.join(PROTOCOLS)}")


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
