"""The UMAP shortcut (neighbours from one compiled distance loop) changes no coordinate."""

from __future__ import annotations

import numpy as np


def test_umap_2d_matches_plain_umap_bit_for_bit():
    import umap

    from ephys2tx.representations.embedding import umap_2d

    rng = np.random.default_rng(3)
    centers = rng.normal(0, 4, size=(3, 6))
    X = np.vstack([c + rng.normal(size=(60, 6)) for c in centers])
    plain = umap.UMAP(n_neighbors=25, min_dist=0.3, random_state=0, n_jobs=1).fit_transform(X)
    fast = umap_2d(X, seed=0)
    np.testing.assert_array_equal(fast, plain)
    tiny = X[:20]  # fewer cells than neighbours: UMAP's own path, still the same numbers
    plain = umap.UMAP(n_neighbors=25, min_dist=0.3, random_state=0, n_jobs=1).fit_transform(tiny)
    np.testing.assert_array_equal(umap_2d(tiny, seed=0), plain)
