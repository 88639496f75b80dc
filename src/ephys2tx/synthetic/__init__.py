"""SYNTHETIC interneurons: conductance-based cells recorded with the Allen Patch-seq protocol.

No Allen Patch-seq NWB file is available offline, so tests and the offline demo use these
simulated cells instead. The package has four parts:

- `params`: each subclass's generating parameters (mouse and human) and their variability;
- `membrane`: the single-compartment model, integrated by numba at 50 kHz;
- `protocol`: the Allen stimulus protocol, run on one cell (`simulate_cell`);
- `cohort`: many cells over synthetic donors, written as Allen-style NWB (`write_cohort`).
"""

from ..schema import SUBCLASSES
from .cohort import SYNTHETIC_NOTICE, write_cohort
from .membrane import SAMPLING_RATE
from .params import CellParams, sample_params, typical_params
from .protocol import (
    LONG_SQUARE_CODE,
    RAMP_CODE,
    SHORT_SQUARE_CODE,
    SHORT_SQUARE_FINE_CODE,
    long_square_current,
    ramp_current,
    short_square_current,
    simulate_cell,
)

__all__ = [
    "LONG_SQUARE_CODE",
    "RAMP_CODE",
    "SAMPLING_RATE",
    "SHORT_SQUARE_CODE",
    "SHORT_SQUARE_FINE_CODE",
    "SUBCLASSES",
    "SYNTHETIC_NOTICE",
    "CellParams",
    "long_square_current",
    "ramp_current",
    "sample_params",
    "short_square_current",
    "simulate_cell",
    "typical_params",
    "write_cohort",
]
