"""Cross-species sanity checks on harmonized features: a unit slip must not pass silently."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..features.families import SCALAR_FEATURES

# How far a shared feature's mouse median may sit from the human median. Species differ
# (human interneurons: lower rheobase, more sag), but not by the 10x or 1000x of a unit slip.
PLAUSIBLE_FACTOR = 3.0
# Human GABAergic cells show several-fold larger sag than mouse (Lee et al. 2023, Fig. 2).
FEATURE_FACTORS = {"sag": 6.0}


def median_ratios(mouse: pd.DataFrame, human: pd.DataFrame) -> pd.Series:
    """mouse median / human median for every canonical feature both species measure."""
    shared = [
        f
        for f in SCALAR_FEATURES
        if f in mouse and f in human and mouse[f].notna().any() and human[f].notna().any()
    ]
    return pd.Series(
        {f: mouse[f].median() / human[f].median() for f in shared if human[f].median() != 0},
        dtype=float,
    )


def implausible_features(mouse: pd.DataFrame, human: pd.DataFrame) -> dict[str, float]:
    """Shared features whose medians differ in sign or by more than a plausible factor."""
    out = {}
    for name, ratio in median_ratios(mouse, human).items():
        factor = FEATURE_FACTORS.get(name, PLAUSIBLE_FACTOR)
        if not np.isfinite(ratio) or ratio <= 0 or not (1 / factor <= ratio <= factor):
            out[name] = float(ratio)
    return out
