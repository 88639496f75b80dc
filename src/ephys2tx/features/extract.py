"""One-pass IPFX feature extraction: a `Recording` -> canonical scalar features + feature vectors.

Spikes are detected ONCE per sweep (`protocols`: IPFX's stimulus-protocol analyses with
`SpikeFeatureExtractor` + `SpikeTrainFeatureExtractor`); both the scalar features (`scalars`,
names and units of the Lee et al. 2023 table) and IPFX's feature vectors (`vectors`) are then
computed from those same results. A family the protocol cannot give is NaN with a recorded
reason, never zeros.

Pure computation: no file I/O here (see `batch.py`).
"""

from __future__ import annotations

import numpy as np

from ..recordings.sweeps import Recording
from . import vectors as vec
from .analysis import MISSING, OK, CellAnalysis, CellFeatures
from .families import FAMILIES, SCALAR_FAMILIES, VECTOR_FAMILIES
from .protocols import analyze_recording
from .scalars import scalar_features


def extract_features(rec: Recording) -> CellFeatures:
    """One pass over a cell: detect spikes once per sweep, then scalar features and vectors."""
    analysis = analyze_recording(rec)
    return features_from_analysis(analysis)


def features_from_analysis(analysis: CellAnalysis) -> CellFeatures:
    """Scalar features + feature vectors + per-family status from one shared analysis."""
    scalars, s_reasons = scalar_features(analysis)
    vectors, v_status, v_reasons = vec.feature_vectors(analysis)
    return _assemble(analysis.cell_id, scalars, s_reasons, vectors, v_status, v_reasons)


def extract_features_separately(rec: Recording) -> CellFeatures:
    """Reference two-pass path: the scalar features and the feature vectors each run their own
    IPFX analysis (spikes detected twice, as running IPFX's two pipelines does). Same results
    as `extract_features`; kept for the benchmark and the equivalence test."""
    scalars, s_reasons = scalar_features(analyze_recording(rec))
    vectors, v_status, v_reasons = vec.feature_vectors(analyze_recording(rec))
    return _assemble(rec.cell_id, scalars, s_reasons, vectors, v_status, v_reasons)


def _assemble(
    cell_id: str,
    scalars: dict[str, float],
    s_reasons: dict[str, str],
    vectors: dict[str, np.ndarray],
    v_status: dict[str, str],
    v_reasons: dict[str, str],
) -> CellFeatures:
    status: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for fam in SCALAR_FAMILIES:
        present = any(np.isfinite(scalars[c]) for c in fam.columns)
        status[fam.name] = OK if present else MISSING
        if not present:
            reasons[fam.name] = s_reasons.get(
                fam.name, "no feature of this family could be computed"
            )
    for fam in VECTOR_FAMILIES:
        status[fam.name] = v_status[fam.name]
        if fam.name in v_reasons:
            reasons[fam.name] = v_reasons[fam.name]
    assert set(status) == set(FAMILIES)
    return CellFeatures(cell_id, scalars, vectors, status, reasons)
