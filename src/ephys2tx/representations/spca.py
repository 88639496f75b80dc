"""Sparse PCA (Zou, Hastie & Tibshirani 2006) with a fixed number of non-zero loadings.

This is the elastic-net SPCA that Gouwens et al. 2019/2020 applied per feature family:
alternate an elastic-net regression for each sparse loading vector B[:, j] (solved by
LARS-EN on the Gram matrix, stopped when it has the requested number of non-zeros) with
a Procrustes update of the orthonormal matrix A. Components are ranked by *adjusted*
explained variance (QR of the score matrix), because sparse components are correlated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import lars_path_gram


@dataclass
class SparsePCAResult:
    """Loadings (p x k, unit columns), centering mean and adjusted explained variance ratios."""

    loadings: np.ndarray
    mean: np.ndarray
    adjusted_variance_ratio: np.ndarray
    n_iter: int

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, float) - self.mean) @ self.loadings


def _lars_en_fixed_support(gram: np.ndarray, xy: np.ndarray, n_samples: int, nonzero: int):
    """Elastic-net coefficients along the LARS path at the first step with `nonzero` variables."""
    _, _, coefs = lars_path_gram(
        Xy=xy, Gram=gram, n_samples=n_samples, method="lasso", max_iter=4 * gram.shape[0]
    )
    counts = (coefs != 0).sum(axis=0)
    reached = np.flatnonzero(counts >= nonzero)
    return coefs[:, reached[0] if len(reached) else -1]


def adjusted_variance(X: np.ndarray, loadings: np.ndarray) -> np.ndarray:
    """Variance each component adds beyond the ones before it (ZHT 2006, section 3.4)."""
    scores = X @ loadings
    r = np.linalg.qr(scores, mode="r")
    return np.diag(r) ** 2


def sparse_pca(
    X: np.ndarray,
    n_components: int,
    nonzero: list[int] | None = None,
    ridge: float = 1e-6,
    max_iter: int = 200,
    tol: float = 1e-3,  # as elasticnet::spca (eps.conv)
) -> SparsePCAResult:
    """SPCA of the columns of X; `nonzero[j]` loadings are non-zero in component j.

    `nonzero=None` (or an empty list, as in Gouwens' config for `step_subthresh`) gives
    ordinary PCA.
    """
    X = np.asarray(X, float)
    n, p = X.shape
    mean = X.mean(axis=0)
    Xc = X - mean
    k = min(n_components, p, n)
    sigma = Xc.T @ Xc
    total = float(np.trace(sigma))
    _, _, vt = np.linalg.svd(Xc, full_matrices=False)
    A = vt[:k].T.copy()
    n_iter = 0
    if nonzero:
        nonzero = [min(int(c), p) for c in list(nonzero)[:k]]
        gram = (sigma + ridge * np.eye(p)) / (1.0 + ridge)
        B = A.copy()
        for n_iter in range(1, max_iter + 1):  # noqa: B007 (n_iter is reported)
            for j in range(k):
                B[:, j] = _lars_en_fixed_support(
                    gram, sigma @ A[:, j] / np.sqrt(1 + ridge), n, nonzero[j]
                )
            u, _, wt = np.linalg.svd(sigma @ B, full_matrices=False)
            A_new = u @ wt
            change = np.max(np.abs(A_new - A))
            A = A_new
            if change < tol:
                break
        norms = np.linalg.norm(B, axis=0)
        loadings = B / np.where(norms > 0, norms, 1.0)
    else:
        loadings = A
    # Sign convention: the largest loading of each component is positive (reproducible output).
    signs = np.sign(loadings[np.abs(loadings).argmax(axis=0), np.arange(k)])
    loadings = loadings * np.where(signs == 0, 1.0, signs)
    ratio = adjusted_variance(Xc, loadings) / total if total > 0 else np.zeros(k)
    return SparsePCAResult(loadings, mean, ratio, n_iter)
