"""All pairwise distances with UMAP's own compiled Euclidean metric (imported lazily).

Below 4,096 cells UMAP computes every distance itself by calling its numba metric from
Python once per pair (8 million calls for the mouse cells, most of an embedding's time).
The same metric called from one compiled loop gives bit-identical distances (BLAS or
scipy's `pdist` differ in the last bits, and UMAP's layout amplifies that), so passing
them as `metric="precomputed"` leaves the embedding unchanged.
"""

from __future__ import annotations

import numba
import numpy as np
from umap.distances import euclidean


@numba.njit(cache=True)
def euclidean_matrix(X: np.ndarray) -> np.ndarray:
    """Symmetric matrix of `umap.distances.euclidean` between the rows of X."""
    n = X.shape[0]
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = euclidean(X[i], X[j])
            out[j, i] = out[i, j]
    return out
