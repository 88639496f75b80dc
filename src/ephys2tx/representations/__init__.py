"""Representations of cells: per-family sparse PCA and 2-D embeddings."""
