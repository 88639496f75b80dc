"""2-D UMAP of the sPCA space and per-subclass silhouette scores: how separable are classes."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import silhouette_samples

from .family_spca import FamilySPCA

MIN_FAMILY_COVERAGE = 0.9  # UMAP needs complete rows: use families most cells have


@dataclass
class Embedding:
    """UMAP coordinates of the cells with every used family present, and class separation."""

    coords: pd.DataFrame  # specimen_id, x, y, label
    silhouette: dict[str, float]  # per class, in the sPCA space
    families: list[str]
    n_dropped: int  # cells lacking one of the used families

    def summary(self) -> dict:
        """Separation and coverage, as written to results and silhouette files."""
        return {
            "silhouette": self.silhouette,
            "families": self.families,
            "n_cells": len(self.coords),
            "n_dropped_incomplete": self.n_dropped,
        }


def embed_cells(
    cells: pd.DataFrame,
    features: list[str],
    label: str,
    seed: int = 0,
    spca: FamilySPCA | None = None,
) -> Embedding:
    """sPCA per family, keep well-covered families and complete cells, then UMAP to 2-D."""
    spca = spca or FamilySPCA()
    components = spca.fit(cells[features]).transform(cells[features])
    family = components.columns.str.split(":").str[0]
    coverage = components.notna().T.groupby(family).all().T.mean()
    used = [f for f in coverage.index if coverage[f] >= MIN_FAMILY_COVERAGE]
    space = components.loc[:, family.isin(used)]
    complete = space.notna().all(axis=1).to_numpy()
    X = space.to_numpy()[complete]
    y = cells[label].to_numpy()[complete]
    silhouette = silhouette_samples(X, y)
    xy = umap_2d(X, seed)
    coords = pd.DataFrame(
        {
            "specimen_id": cells["specimen_id"].to_numpy()[complete],
            "x": xy[:, 0],
            "y": xy[:, 1],
            "label": y,
        }
    )
    per_class = {str(c): float(np.mean(silhouette[y == c])) for c in sorted(np.unique(y))}
    per_class["all"] = float(np.mean(silhouette))
    return Embedding(coords, per_class, used, int((~complete).sum()))


def umap_2d(X: np.ndarray, seed: int = 0, n_neighbors: int = 25) -> np.ndarray:
    """2-D UMAP (25 neighbours, min_dist 0.3) of the rows of X, Euclidean distances.

    The neighbours are found beforehand from distances computed in one compiled loop
    (`umap_distances`): the same neighbours and distances UMAP finds below 4,096 rows,
    without its 8 million Python calls of the metric on the mouse cells.
    """
    umap = _cached_umap()
    from .umap_distances import euclidean_matrix

    data = np.ascontiguousarray(X, dtype=np.float32)  # UMAP computes on float32 input
    knn = (None, None, None)  # UMAP's own search
    if n_neighbors < len(data) < 4096:  # UMAP's exact (all-pairs) case
        indices, distances, _ = umap.umap_.nearest_neighbors(
            euclidean_matrix(data), n_neighbors, "precomputed", {}, False, None
        )
        knn = (indices, distances)
    reducer = umap.UMAP(
        n_neighbors=n_neighbors, min_dist=0.3, random_state=seed, n_jobs=1, precomputed_knn=knn
    )
    with warnings.catch_warnings():  # "no NNDescent index: transform unavailable" (not used)
        warnings.filterwarnings("ignore", "precomputed_knn", UserWarning)
        return reducer.fit_transform(data)


_UMAP_CACHING = []


def _cached_umap():
    """umap with every compiled function cached on disk (numba `cache=True`), as
    pynndescent's already are: otherwise each process compiles umap's layout and graph
    functions anew (seconds of CPU each time: docs/development.md). A fresh environment
    still compiles once."""
    import umap  # slow to import; only needed here
    import umap.layouts
    import umap.umap_
    import umap.utils
    from numba.core.dispatcher import Dispatcher

    if not _UMAP_CACHING:
        for module in (umap.umap_, umap.layouts, umap.utils):
            for obj in vars(module).values():
                if isinstance(obj, Dispatcher):
                    obj.enable_caching()
        _UMAP_CACHING.append(True)
    return umap


def compile_umap() -> None:
    """Compile the numba functions of an embedding once, on a small random sample, into
    numba's disk cache (`make install` runs this, so a first `reproduce` need not)."""
    umap_2d(np.random.default_rng(0).normal(size=(60, 4)), n_neighbors=10)
