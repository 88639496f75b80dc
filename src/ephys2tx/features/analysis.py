"""What extraction produces, as types: per-protocol IPFX analyses, the cell's analysis, and
the extracted features with a status and reason per family.

Types only (no IPFX import at run time), so `vectors`, `scalars` and `batch` can all use them
without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ipfx.stimulus_protocol_analysis import StimulusProtocolAnalysis
    from ipfx.sweep import SweepSet

# Status of one feature family of a cell; a cell whose families are all missing has FAILED.
OK, PARTIAL, MISSING, FAILED = "ok", "partial", "missing", "failed"


@dataclass
class ProtocolAnalysis:
    """IPFX analysis of one stimulus protocol: sweeps, analyzer and its `analyze()` output."""

    sweeps: SweepSet | None = None
    features: dict | None = None
    analyzer: StimulusProtocolAnalysis | None = None
    start: float | None = None
    end: float | None = None
    reason: str | None = None  # why there is no analysis (None when there is one)


@dataclass
class CellAnalysis:
    """Spike detection results of a whole cell, computed once and shared by all features."""

    cell_id: str
    long_square: ProtocolAnalysis
    short_square: ProtocolAnalysis
    ramp: ProtocolAnalysis
    chirp: ProtocolAnalysis


@dataclass
class CellFeatures:
    """Everything extracted from one cell, with a status and reason per family."""

    cell_id: str
    scalars: dict[str, float]
    vectors: dict[str, np.ndarray]
    family_status: dict[str, str] = field(default_factory=dict)
    family_reason: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """ok: every family present; failed: none; partial otherwise."""
        present = [s != MISSING for s in self.family_status.values()]
        return OK if all(present) else (FAILED if not any(present) else PARTIAL)

    @property
    def reason(self) -> str:
        """The reasons of the families that are not ok, one `family: reason` each."""
        return "; ".join(
            f"{fam}: {self.family_reason[fam]}"
            for fam, s in self.family_status.items()
            if s != OK and self.family_reason.get(fam)
        )
