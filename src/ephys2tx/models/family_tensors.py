"""A cell table as per-family tensors: standardized values, observed masks, family presence.

The sequence models read cells through this module so that a missing value is always
explicit: it becomes 0 in standardized space *and* 0 in the observed mask, and a family
with no observed value is marked absent (the network then never looks at its values).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtri

from ..errors import Ephys2txError
from ..features.families import SCALAR_FAMILIES, VECTOR_FAMILIES, Family, vector_columns

SCALINGS = ("quantile", "robust", "standard")
_P_CLIP = 1e-3  # quantile scaling maps to at most |z| = 3.09, so no outlier dominates


@dataclass(frozen=True)
class FamilyLayout:
    """Which families a model reads, their columns, and where each sits in the flat matrix."""

    names: tuple[str, ...]
    columns: tuple[tuple[str, ...], ...]
    lengths: tuple[int, ...]  # 0 for scalar families, IPFX length for vector families

    @classmethod
    def from_table(
        cls, table: pd.DataFrame, families: list[str] | tuple[str, ...] | None = None
    ) -> FamilyLayout:
        """Scalar families always (absent columns read as NaN); vector families when stored."""
        chosen: list[Family] = list(SCALAR_FAMILIES)
        chosen += [f for f in VECTOR_FAMILIES if vector_columns(f)[0] in table.columns]
        if families is not None:
            known = {f.name: f for f in SCALAR_FAMILIES + VECTOR_FAMILIES}
            unknown = [name for name in families if name not in known]
            if unknown:
                raise Ephys2txError(
                    f"unknown feature families {unknown}; choose from {', '.join(known)}"
                )
            chosen = [known[name] for name in families]
        return cls(
            names=tuple(f.name for f in chosen),
            columns=tuple(tuple(vector_columns(f) if f.is_vector else f.columns) for f in chosen),
            lengths=tuple(f.length for f in chosen),
        )

    @property
    def all_columns(self) -> list[str]:
        return [c for cols in self.columns for c in cols]

    @property
    def slices(self) -> list[tuple[int, int]]:
        """(start, stop) of each family in the flat feature matrix."""
        out, start = [], 0
        for cols in self.columns:
            out.append((start, start + len(cols)))
            start += len(cols)
        return out

    def matrix(self, table: pd.DataFrame) -> np.ndarray:
        """Raw values in layout order; columns a table lacks are NaN (missing, not zero)."""
        cols = self.all_columns
        present = [c for c in cols if c in table.columns]
        raw = table.reindex(columns=cols) if len(present) < len(cols) else table[cols]
        try:
            return raw.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise Ephys2txError(
                f"feature columns must be numeric ({exc}); convert them or mark gaps as NaN"
            ) from exc


class Standardizer:
    """Per-feature scaling fitted on training cells; features never observed stay unknown.

    `quantile` maps each feature through its training quantiles to a standard normal
    (robust to the heavy tails of rates and slopes); `robust` uses median and IQR;
    `standard` mean and sd. A feature with fewer than `min_count` training values is
    *unknown*: its values are ignored (observed mask 0) wherever they appear.
    """

    def __init__(self, method: str = "quantile", n_quantiles: int = 101, min_count: int = 5):
        if method not in SCALINGS:
            raise Ephys2txError(f"unknown scaling {method!r}; choose one of: {', '.join(SCALINGS)}")
        self.method = method
        self.n_quantiles = n_quantiles
        self.min_count = min_count

    def fit(self, values: np.ndarray) -> Standardizer:
        values = np.asarray(values, float)
        n_features = values.shape[1]
        counts = np.isfinite(values).sum(axis=0)
        self.known_ = counts >= self.min_count
        self.quantiles_ = np.zeros((self.n_quantiles, n_features))
        self.center_ = np.zeros(n_features)
        self.scale_ = np.ones(n_features)
        probs = np.linspace(0, 1, self.n_quantiles)
        for j in np.flatnonzero(self.known_):
            col = values[:, j]
            col = col[np.isfinite(col)]
            if self.method == "quantile":
                self.quantiles_[:, j] = np.quantile(col, probs)
                if self.quantiles_[0, j] == self.quantiles_[-1, j]:
                    self.known_[j] = False  # constant in training: carries no information
            elif self.method == "robust":
                q25, q50, q75 = np.quantile(col, [0.25, 0.5, 0.75])
                self.center_[j] = q50
                self.scale_[j] = (q75 - q25) / 1.349 or (col.std() or 1.0)
            else:
                self.center_[j] = col.mean()
                self.scale_[j] = col.std() or 1.0
        return self

    def transform(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(standardized values with 0 where missing, observed mask) as float32."""
        values = np.asarray(values, float)
        observed = np.isfinite(values) & self.known_[None, :]
        z = np.zeros_like(values)
        if self.method == "quantile":
            probs = np.linspace(0, 1, self.n_quantiles)
            for j in np.flatnonzero(self.known_):
                rows = observed[:, j]
                if not rows.any():
                    continue
                q, x = self.quantiles_[:, j], values[rows, j]
                # average of forward and backward interpolation handles tied quantiles
                p = 0.5 * (np.interp(x, q, probs) - np.interp(-x, -q[::-1], -probs[::-1]))
                z[rows, j] = ndtri(np.clip(p, _P_CLIP, 1 - _P_CLIP))
        else:
            scaled = (values - self.center_[None, :]) / self.scale_[None, :]
            z = np.where(observed, np.clip(scaled, -5, 5), 0.0)
        return z.astype(np.float32), observed.astype(np.float32)


@dataclass
class FamilyTensors:
    """Network input for n cells: values (n, D), observed (n, D), present (n, F)."""

    values: np.ndarray
    observed: np.ndarray
    present: np.ndarray

    def __len__(self) -> int:
        return len(self.values)

    def take(self, index: np.ndarray) -> FamilyTensors:
        return FamilyTensors(self.values[index], self.observed[index], self.present[index])

    def restricted(self, keep: np.ndarray, layout: FamilyLayout) -> FamilyTensors:
        """The same cells seeing only the features in `keep` (e.g. those another species has)."""
        observed = self.observed * keep[None, :].astype(np.float32)
        return FamilyTensors(self.values * observed, observed, presence(observed, layout))


def presence(observed: np.ndarray, layout: FamilyLayout) -> np.ndarray:
    """A family is present when at least one of its features is observed."""
    return np.stack([observed[:, a:b].any(axis=1) for a, b in layout.slices], axis=1)


def to_tensors(
    table: pd.DataFrame, layout: FamilyLayout, standardizer: Standardizer
) -> FamilyTensors:
    """Standardize a table's family columns and derive the masks."""
    values, observed = standardizer.transform(layout.matrix(table))
    return FamilyTensors(values, observed, presence(observed, layout))
