"""The old name of the fold rule, kept for callers not yet passed a splitter.

New code builds a splitter (`evaluation.splits`) and asks it for folds; `cell_folds` is that
in one call with the protocol's name and sizes (`reference.py` still calls it).
"""

from __future__ import annotations

import pandas as pd

from .splits import PROTOCOLS, Fold, donor_kfold, protocol_splitter, subsample_groups

__all__ = ["PROTOCOLS", "Fold", "cell_folds", "donor_kfold", "subsample_groups"]


def cell_folds(
    cells: pd.DataFrame,
    label: str,
    species: str,
    protocol: str = "grouped",
    n_folds: int = 5,
    n_repeats: int = 3,
    seed: int = 0,
) -> list[Fold]:
    """The folds of `protocol_splitter(protocol, species, ...)` on a cell table."""
    return protocol_splitter(protocol, species, n_folds, n_repeats, seed).cell_folds(cells, label)
