"""The Allen Patch-seq stimulus protocol, run on one SYNTHETIC cell (`simulate_cell`).

Stimulus codes are those of IPFX's default stimulus ontology, so IPFX reads the written files
as it reads Allen ones.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import Ephys2txError
from ..recordings.sweeps import LONG_SQUARE, RAMP, SHORT_SQUARE, Recording, Sweep
from .membrane import SAMPLING_RATE, Cell
from .params import CellParams, sample_params

LONG_SQUARE_CODE = "C1LSCOARSE150216"
SHORT_SQUARE_CODE = "C1SSCOARSE150112"
SHORT_SQUARE_FINE_CODE = "C1SSFINEST150112"
RAMP_CODE = "C1RP25PR1S141203"
TEST_PULSE_START, TEST_PULSE_DURATION, TEST_PULSE_AMP = 0.010, 0.010, -20.0  # s, s, pA
STIM_START = 1.02  # s, after the test pulse and a quiet baseline, as in Allen sweeps
LONG_SQUARE_DURATION = 1.0  # s
LONG_SQUARE_SWEEP = 3.0  # s total
LONG_SQUARE_FIRST, LONG_SQUARE_STEP, ABOVE_RHEOBASE = -110.0, 20.0, 160.0  # pA
SHORT_SQUARE_DURATION = 0.003  # s
SHORT_SQUARE_SWEEP = 2.0  # s total
RAMP_SLOPE = 25.0  # pA/s
RAMP_POST = 1.0  # s after the ramp ends
MAX_CURRENT = 3000.0  # pA; a cell that does not fire below this is rejected


def _with_test_pulse(n_samples: int) -> np.ndarray:
    i = np.zeros(n_samples)
    start = round(TEST_PULSE_START * SAMPLING_RATE)
    i[start : start + round(TEST_PULSE_DURATION * SAMPLING_RATE)] = TEST_PULSE_AMP
    return i


def long_square_current(amplitude: float) -> np.ndarray:
    """Allen long square: test pulse, then a 1 s step at 1.02 s; pA at 50 kHz."""
    i = _with_test_pulse(round(LONG_SQUARE_SWEEP * SAMPLING_RATE))
    start = round(STIM_START * SAMPLING_RATE)
    i[start : start + round(LONG_SQUARE_DURATION * SAMPLING_RATE)] = amplitude
    return i


def short_square_current(amplitude: float) -> np.ndarray:
    """Allen short square: test pulse, then a 3 ms step at 1.02 s."""
    i = _with_test_pulse(round(SHORT_SQUARE_SWEEP * SAMPLING_RATE))
    start = round(STIM_START * SAMPLING_RATE)
    i[start : start + round(SHORT_SQUARE_DURATION * SAMPLING_RATE)] = amplitude
    return i


def ramp_current(end_amplitude: float) -> np.ndarray:
    """Allen ramp: test pulse, then 25 pA/s from 1.02 s up to `end_amplitude`, then off."""
    duration = end_amplitude / RAMP_SLOPE
    n_ramp = round(duration * SAMPLING_RATE)
    start = round(STIM_START * SAMPLING_RATE)
    i = _with_test_pulse(start + n_ramp + round(RAMP_POST * SAMPLING_RATE))
    i[start : start + n_ramp] = RAMP_SLOPE * (np.arange(1, n_ramp + 1) / SAMPLING_RATE)
    return i


def _n_spikes(v: np.ndarray, start: float, end: float) -> int:
    """Upward 0 mV crossings in [start, end) s: only to steer the protocol, not a feature."""
    seg = v[round(start * SAMPLING_RATE) : round(end * SAMPLING_RATE)]
    return int(np.count_nonzero((seg[1:] >= 0.0) & (seg[:-1] < 0.0)))


def _short_square_threshold(cell: Cell, step: float, start: float) -> float:
    """Smallest amplitude on a `step` grid from `start` that fires on a short square."""
    window = round(0.06 * SAMPLING_RATE)  # 10 ms before, 50 ms after the pulse, no noise
    onset = round(0.01 * SAMPLING_RATE)
    amp = start
    while amp <= 4 * MAX_CURRENT:
        amps = [amp + k * step for k in range(8)]
        traces = []
        for a in amps:
            i = np.zeros(window)
            i[onset : onset + round(SHORT_SQUARE_DURATION * SAMPLING_RATE)] = a
            traces.append(i)
        for a, v in zip(amps, cell.run(traces, noisy=False), strict=True):
            if _n_spikes(v, 0.0, 0.06) > 0:
                return a
        amp = amps[-1] + step
    raise Ephys2txError("synthetic cell never fires on a short square; parameters out of range")


def simulate_cell(
    subclass: str,
    species: str,
    rng: np.random.Generator,
    params: CellParams | None = None,
    cell_id: str = "synthetic",
    long_squares: bool = True,
    short_squares: bool = True,
    ramp: bool = True,
) -> Recording:
    """Record one SYNTHETIC cell with the Allen protocol; returns a `Recording`.

    Long squares go from -110 pA in 20 pA steps to rheobase + 160 pA; short squares (3 ms)
    bracket threshold on a coarse 100 pA then fine 20 pA grid, repeated at threshold; the ramp
    rises at 25 pA/s until well past the first spike. Deterministic for a given `rng` state
    (the stimuli run in this order, each drawing its noise from the cell's generator).
    """
    params = params or sample_params(subclass, species, rng)
    cell = Cell(params, rng)
    meta: dict = {"synthetic": True, "subclass": subclass, **asdict(params)}
    recorded: list[Recorded] = []
    rheobase = math.nan
    if long_squares or ramp:  # the ramp's end is set by the rheobase the long squares find
        squares, rheobase = _long_squares(cell, f"{species} {subclass}")
        recorded += squares if long_squares else []
    meta["rheobase_pa"] = rheobase
    if short_squares:
        squares, meta["short_square_threshold_pa"] = _short_squares(cell)
        recorded += squares
    if ramp:
        recorded.append(_ramp(cell, rheobase))
    sweeps = [_sweep(number, *stimulus) for number, stimulus in enumerate(recorded)]
    return Recording(
        source=Path(f"{cell_id}.nwb"),
        cell_id=cell_id,
        sweeps=sweeps,
        species=species,
        metadata=meta,
    )


# One recorded stimulus: (current, voltage, stimulus type, Allen code, amplitude in pA).
Recorded = tuple[np.ndarray, np.ndarray, str, str, float]


def _sweep(number: int, current, voltage, kind: str, code: str, amp: float) -> Sweep:
    """A recorded stimulus as a sweep, its end from the stimulus type (a ramp ends at `amp`)."""
    length = {
        LONG_SQUARE: LONG_SQUARE_DURATION,
        SHORT_SQUARE: SHORT_SQUARE_DURATION,
        RAMP: amp / RAMP_SLOPE,
    }[kind]
    start, end = STIM_START, STIM_START + length
    return Sweep(number, voltage, current, SAMPLING_RATE, kind, amp, start, end, code)


def _long_squares(cell: Cell, what: str) -> tuple[list[Recorded], float]:
    """Long squares, four sweeps per compiled call, until rheobase + 160 pA: the sweeps kept
    (up to rheobase + 160 pA) and the rheobase."""
    rheobase = math.nan
    amp = LONG_SQUARE_FIRST
    stim_end = STIM_START + LONG_SQUARE_DURATION
    kept: list[Recorded] = []
    while True:
        amps = [amp + k * LONG_SQUARE_STEP for k in range(4)]
        currents = [long_square_current(a) for a in amps]
        for a, i, v in zip(amps, currents, cell.run(currents), strict=True):
            if math.isnan(rheobase) and _n_spikes(v, STIM_START, stim_end) > 0:
                rheobase = a
            if math.isnan(rheobase) or a <= rheobase + ABOVE_RHEOBASE:
                kept.append((i, v, LONG_SQUARE, LONG_SQUARE_CODE, a))
        amp = amps[-1] + LONG_SQUARE_STEP
        if not math.isnan(rheobase) and amp > rheobase + ABOVE_RHEOBASE:
            return kept, rheobase
        if amp > MAX_CURRENT:
            raise Ephys2txError(
                f"synthetic {what} cell never fired up to {MAX_CURRENT:.0f} pA; "
                "parameters out of range"
            )


def _short_squares(cell: Cell) -> tuple[list[Recorded], float]:
    """Short squares bracketing threshold (coarse, then fine, then 3 repeats at threshold,
    as Allen does) and the fine threshold."""
    coarse = _short_square_threshold(cell, 100.0, 100.0)
    fine = _short_square_threshold(cell, 20.0, max(coarse - 80.0, 20.0))
    plan = [(a, SHORT_SQUARE_CODE) for a in (coarse - 200.0, coarse - 100.0, coarse) if a > 0]
    plan += [(a, SHORT_SQUARE_FINE_CODE) for a in (fine - 40.0, fine - 20.0) if a > 0]
    plan += [(fine, SHORT_SQUARE_FINE_CODE)] * 3
    currents = [short_square_current(a) for a, _ in plan]
    runs = zip(plan, currents, cell.run(currents), strict=True)
    return [(i, v, SHORT_SQUARE, code, a) for (a, code), i, v in runs], fine


def _ramp(cell: Cell, rheobase: float) -> Recorded:
    """A ramp to well past rheobase, extended if the noise draw left it silent."""
    end = math.ceil((1.25 * rheobase + 60.0) / 10.0) * 10.0
    for _ in range(3):
        i = ramp_current(end)
        (v,) = cell.run([i])
        if _n_spikes(v, STIM_START, STIM_START + end / RAMP_SLOPE) > 0:
            break
        end *= 1.5
    return (i, v, RAMP, RAMP_CODE, end)
