"""The one sweep model every reader produces (Allen NWB, modern NWB, ABF, synthetic)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

LONG_SQUARE = "long_square"
SHORT_SQUARE = "short_square"
RAMP = "ramp"
CHIRP = "chirp"
TEST_PULSE = "test"
OTHER = "other"


@dataclass
class Sweep:
    """One current-clamp sweep: voltage in mV, current in pA, times in s from sweep start."""

    sweep_number: int
    voltage: np.ndarray
    current: np.ndarray
    sampling_rate: float
    stimulus_type: str = OTHER
    amplitude: float = float("nan")  # stimulus amplitude (step height / ramp slope end), pA
    stim_start: float | None = None
    stim_end: float | None = None
    stimulus_code: str | None = None  # Allen code such as C1LSCOARSE150216, when known
    clamp_mode: str = "current_clamp"

    @property
    def time(self) -> np.ndarray:
        return np.arange(len(self.voltage)) / self.sampling_rate

    @property
    def duration(self) -> float:
        return len(self.voltage) / self.sampling_rate


@dataclass
class Recording:
    """All sweeps of one cell, from one file."""

    source: Path
    cell_id: str
    sweeps: list[Sweep] = field(default_factory=list)
    species: str | None = None
    metadata: dict = field(default_factory=dict)

    def of_type(self, stimulus_type: str) -> list[Sweep]:
        return [s for s in self.sweeps if s.stimulus_type == stimulus_type]
