"""Per-family sparse PCA, as Gouwens et al. 2020 did: keep components with adjusted
explained variance >= 1%, z-score them and concatenate across families.

A cell that lacks a whole family gets NaN scores for that family (missing stays missing);
values missing inside a present family are filled with the training median first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from math import ceil
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from ..features.families import SCALAR_FAMILIES
from .spca import SparsePCAResult, sparse_pca

MIN_ADJUSTED_VARIANCE = 0.01


@dataclass(eq=False, repr=False)  # the parameters as fields: scikit-learn's __init__, written once
class FamilySPCA(TransformerMixin, BaseEstimator):
    """Scalar-family sPCA on a cell table's canonical features.

    `nonzero_fraction` of a family's features carry non-zero loadings in each of up to
    `max_components` components (scalar families have 5-15 features, so no published
    per-family setting exists; Gouwens' per-family settings are for feature vectors).
    """

    max_components: int = 4
    nonzero_fraction: float = 0.5
    min_variance: float = MIN_ADJUSTED_VARIANCE

    def fit(self, X: pd.DataFrame, y=None) -> FamilySPCA:
        self.models_: dict[str, dict] = {}
        for fam in SCALAR_FAMILIES:
            cols = [c for c in fam.columns if c in X.columns and X[c].notna().any()]
            present = X[cols].notna().any(axis=1).to_numpy() if cols else np.zeros(len(X), bool)
            if len(cols) == 0 or present.sum() < 3:
                continue
            values = X.loc[present, cols].to_numpy(float)
            median = np.nanmedian(values, axis=0)
            filled = np.where(np.isnan(values), median, values)
            mean, std = filled.mean(axis=0), filled.std(axis=0)
            std = np.where(std > 0, std, 1.0)
            z = (filled - mean) / std
            n_nonzero = max(1, ceil(self.nonzero_fraction * len(cols)))
            k = min(self.max_components, len(cols))
            result = sparse_pca(z, k, [n_nonzero] * k if n_nonzero < len(cols) else None)
            keep = result.adjusted_variance_ratio >= self.min_variance
            if not keep.any():
                continue
            result.loadings = result.loadings[:, keep]
            result.adjusted_variance_ratio = result.adjusted_variance_ratio[keep]
            scores = result.transform(z)
            self.models_[fam.name] = {
                "columns": cols,
                "median": median,
                "mean": mean,
                "std": std,
                "spca": result,
                "score_mean": scores.mean(axis=0),
                "score_std": np.where(scores.std(axis=0) > 0, scores.std(axis=0), 1.0),
            }
        self.feature_names_out_ = [
            f"{name}:pc{i + 1}"
            for name, m in self.models_.items()
            for i in range(m["spca"].loadings.shape[1])
        ]
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        blocks = []
        for m in self.models_.values():
            values = X.reindex(columns=m["columns"]).to_numpy(float)
            present = ~np.isnan(values).all(axis=1)
            filled = np.where(np.isnan(values), m["median"], values)
            spca: SparsePCAResult = m["spca"]
            scores = (spca.transform((filled - m["mean"]) / m["std"]) - m["score_mean"]) / m[
                "score_std"
            ]
            scores[~present] = np.nan
            blocks.append(scores)
        data = np.hstack(blocks) if blocks else np.empty((len(X), 0))
        return pd.DataFrame(data, index=X.index, columns=self.feature_names_out_)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.asarray(self.feature_names_out_, dtype=object)

    def explained_variance(self) -> dict[str, list[float]]:
        """Adjusted explained-variance ratio of the kept components, per family."""
        return {n: m["spca"].adjusted_variance_ratio.tolist() for n, m in self.models_.items()}


def load_gouwens_config(path: str | Path) -> dict:
    """Per-family settings of Gouwens et al. 2020 (drcme's spca config JSON)."""
    return json.loads(Path(path).read_text())


def _columns_of(setting: dict, width: int) -> np.ndarray:
    """drcme's `range`: [start, end] slices the family; longer lists cover the whole family."""
    bounds = setting.get("range")
    if bounds and len(bounds) == 2:
        return np.arange(bounds[0], min(bounds[1], width))
    return np.arange(width)


def spca_feature_vectors(
    vectors: dict[str, np.ndarray], config: dict, min_variance: float = MIN_ADJUSTED_VARIANCE
) -> tuple[pd.DataFrame, dict[str, list[float]]]:
    """sPCA of IPFX feature vectors with Gouwens' per-family settings.

    Returns z-scored components (NaN rows where a cell lacks the family) and the adjusted
    explained-variance ratios kept per family.
    """
    blocks, variance = [], {}
    n_cells = len(next(iter(vectors.values())))
    for name, setting in config.items():
        if name not in vectors:
            continue
        data = np.asarray(vectors[name], float)
        data = data[:, _columns_of(setting, data.shape[1])]
        complete = ~np.isnan(data).any(axis=1)
        if complete.sum() < 3:
            continue
        result = sparse_pca(
            data[complete], setting["n_components"], setting.get("nonzero_component_list") or None
        )
        keep = result.adjusted_variance_ratio >= min_variance
        scores = np.full((n_cells, int(keep.sum())), np.nan)
        fitted = result.transform(data[complete])[:, keep]
        std = fitted.std(axis=0)
        scores[complete] = (fitted - fitted.mean(axis=0)) / np.where(std > 0, std, 1.0)
        variance[name] = result.adjusted_variance_ratio[keep].tolist()
        blocks.append(
            pd.DataFrame(scores, columns=[f"{name}:pc{i + 1}" for i in range(scores.shape[1])])
        )
    return pd.concat(blocks, axis=1), variance
