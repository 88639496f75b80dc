"""Read/write IPFX feature-vector HDF5 files (the layout of IPFX's `fv_<code>.h5`).

One dataset per family (cells x family length) plus `ids`, as IPFX writes them. We add a
`mask` dataset (cells x families, True = family present; its `families` attribute names the
columns) and `reasons` (why a family is missing), so a missing family is NaN + mask, never
zeros. Files without a mask (e.g. IPFX's own) are read with mask = "row has a finite value".
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ..errors import Ephys2txError
from ..files import atomic_write
from .families import VECTOR_FAMILIES

MASK = "mask"
REASONS = "reasons"
IDS = "ids"


@dataclass
class FeatureVectors:
    """Feature vectors of many cells: ids, one array per family, presence mask and reasons."""

    ids: np.ndarray
    vectors: dict[str, np.ndarray]
    mask: pd.DataFrame  # index = ids, one bool column per family
    reasons: pd.DataFrame | None = None

    def __len__(self) -> int:
        return len(self.ids)


def _ids_array(ids: list) -> np.ndarray:
    """IPFX stores integer specimen ids; fall back to UTF-8 strings for other ids."""
    try:
        as_int = np.array([int(str(i)) for i in ids], dtype=np.int64)
        if [str(i) for i in as_int] == [str(i) for i in ids]:
            return as_int
    except ValueError:
        pass
    return np.array([str(i) for i in ids], dtype=object)


def write_feature_vectors(
    path: str | Path,
    ids: list,
    vectors: dict[str, np.ndarray],
    mask: np.ndarray | None = None,
    reasons: list[list[str]] | None = None,
) -> Path:
    """Write cells x length arrays per family (NaN rows where missing), atomically.

    `mask` and `reasons` columns follow the order of `vectors`' keys.
    """
    path = Path(path)
    known = {f.name for f in VECTOR_FAMILIES}
    families = list(vectors)
    if unknown := [f for f in families if f not in known]:
        raise ValueError(f"unknown vector families {unknown}")
    n = len(ids)
    for name in families:
        if vectors[name].shape[0] != n:
            raise ValueError(f"{name} has {vectors[name].shape[0]} rows for {n} ids")
    if mask is None:
        mask = (
            np.column_stack([np.isfinite(vectors[f]).any(axis=1) for f in families])
            if n
            else (np.zeros((0, len(families)), bool))
        )
    # Built in memory, then written with plain file I/O: HDF5 itself may crash the process
    # (not raise) when the disk fills while it writes, and a Python OSError is what we need.
    image = io.BytesIO()
    with h5py.File(image, "w") as h5:
        ids_arr = _ids_array(list(ids))
        if ids_arr.dtype == object:
            h5.create_dataset(IDS, data=ids_arr, dtype=h5py.string_dtype())
        else:
            h5.create_dataset(IDS, data=ids_arr, compression="gzip")
        for name in families:
            h5.create_dataset(name, data=np.asarray(vectors[name], float), compression="gzip")
        ds = h5.create_dataset(MASK, data=np.asarray(mask, bool))
        ds.attrs["families"] = families
        if reasons is not None:
            text = np.array([[str(x) for x in row] for row in reasons], dtype=object)
            r = h5.create_dataset(
                REASONS, data=text.reshape(n, len(families)), dtype=h5py.string_dtype()
            )
            r.attrs["families"] = families
    return atomic_write(path, lambda tmp: tmp.write_bytes(image.getbuffer()))


def read_feature_vectors(path: str | Path) -> FeatureVectors:
    """Read an IPFX-layout feature-vector file (ours or IPFX's)."""
    path = Path(path)
    if not path.is_file():
        raise Ephys2txError(f"feature-vector file {path} not found; run `ephys2tx extract` first")
    with h5py.File(path, "r") as h5:
        if IDS not in h5:
            raise Ephys2txError(f"{path} has no `ids` dataset; is it an IPFX feature-vector file?")
        ids = h5[IDS][()]
        if ids.dtype.kind in "SO":
            ids = np.array([i.decode() if isinstance(i, bytes) else str(i) for i in ids], object)
        vectors = {f.name: h5[f.name][()] for f in VECTOR_FAMILIES if f.name in h5}
        if MASK in h5:
            cols = [str(c) for c in h5[MASK].attrs["families"]]
            mask = pd.DataFrame(h5[MASK][()], index=ids, columns=cols)
        else:
            mask = pd.DataFrame(
                {k: np.isfinite(v).any(axis=1) for k, v in vectors.items()}, index=ids
            )
        reasons = None
        if REASONS in h5:
            cols = [str(c) for c in h5[REASONS].attrs["families"]]
            raw = h5[REASONS][()]
            reasons = pd.DataFrame(
                [[x.decode() if isinstance(x, bytes) else x for x in row] for row in raw],
                index=ids,
                columns=cols,
            )
    return FeatureVectors(ids, vectors, mask, reasons)
