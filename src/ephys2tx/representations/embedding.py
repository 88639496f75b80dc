"""2-D UMAP of the sPCA space and per-subclass silhouette scores: how separable are classes."""

from __future__ import annotations

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
    import umap  # slow to import; only needed here

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
    reducer = umap.UMAP(n_neighbors=25, min_dist=0.3, random_state=seed, n_jobs=1)
    xy = reducer.fit_transform(X)
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
