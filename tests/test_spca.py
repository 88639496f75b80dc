"""Sparse PCA: exact sparsity, PCA limit, adjusted variance, families and real feature vectors."""

import h5py
import numpy as np
import pandas as pd
from conftest import SHARED_DATA

from ephys2tx.representations.family_spca import (
    FamilySPCA,
    load_gouwens_config,
    spca_feature_vectors,
)
from ephys2tx.representations.spca import sparse_pca


def _correlated(n=300, p=12, seed=0):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 3))
    mixing = rng.normal(size=(3, p)) * (rng.random((3, p)) < 0.5)
    return latent @ mixing + 0.3 * rng.normal(size=(n, p))


def test_each_component_has_the_requested_number_of_nonzero_loadings():
    result = sparse_pca(_correlated(), 3, [4, 3, 5])
    assert [(result.loadings[:, j] != 0).sum() for j in range(3)] == [4, 3, 5]
    assert np.allclose(np.linalg.norm(result.loadings, axis=0), 1)


def test_without_sparsity_it_is_pca():
    X = _correlated()
    result = sparse_pca(X, 3, None)
    eig = np.linalg.eigvalsh(np.cov(X.T, bias=True))[::-1]
    assert np.allclose(result.adjusted_variance_ratio, eig[:3] / eig.sum(), rtol=1e-6)


def test_sparse_components_explain_less_than_pca_but_most_of_it():
    X = _correlated()
    dense = sparse_pca(X, 3, None).adjusted_variance_ratio.sum()
    sparse = sparse_pca(X, 3, [6, 6, 6]).adjusted_variance_ratio.sum()
    assert 0.6 * dense < sparse <= dense + 1e-9


def test_family_spca_keeps_missing_families_missing(human_cells):
    features = [c for c in human_cells.columns[8:] if human_cells[c].notna().mean() > 0.2]
    spca = FamilySPCA().fit(human_cells[features])
    out = spca.transform(human_cells[features])
    chirp = [c for c in out.columns if c.startswith("chirp:")]
    no_chirp = human_cells["peak_freq_chirp"].isna() & human_cells["3db_freq_chirp"].isna()
    assert chirp and out.loc[no_chirp, chirp].isna().all().all()
    assert out.loc[~no_chirp, chirp].notna().all().all()
    assert all(v >= 0.01 for ratios in spca.explained_variance().values() for v in ratios)
    assert np.allclose(
        out.std(ddof=0), 1, atol=1e-6
    )  # z-scored over the cells that have the family


def test_gouwens_settings_on_the_real_feature_vector_file():
    config = load_gouwens_config(
        SHARED_DATA / "feature_vectors/spca_inh_patchseq_cell_2020_config.json"
    )
    chosen = {k: config[k] for k in ("isi_shape", "subthresh_norm", "step_subthresh")}
    with h5py.File(SHARED_DATA / "feature_vectors/fv_sample2.h5") as f:
        vectors = {k: f[k][()] for k in chosen}
        n = len(f["ids"])
    components, variance = spca_feature_vectors(vectors, chosen)
    assert len(components) == n == 139
    assert isinstance(components, pd.DataFrame) and components.notna().all().all()
    assert variance["isi_shape"][0] > 0.5 and all(v >= 0.01 for v in variance["subthresh_norm"])
