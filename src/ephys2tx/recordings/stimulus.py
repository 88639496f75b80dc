"""Classify a sweep's stimulus from its command waveform (no Allen stimulus code needed).

Lab recordings (ABF, NWB 2) carry the command current but not Allen codes such as
C1LSCOARSE150216, so the stimulus type, onset, offset and amplitude are read off the
waveform itself. All work is vectorised over samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ipfx.epochs import TEST_PULSE_MAX_TIME

from .sweeps import CHIRP, LONG_SQUARE, OTHER, RAMP, SHORT_SQUARE

# Allen protocols: short square 3 ms, long square 1 s; lab step protocols use 0.1-2 s.
SHORT_SQUARE_MAX_S = 0.02
LONG_SQUARE_MIN_S = 0.1
# A test pulse is a short square near the sweep start followed by the real stimulus
# (MIES: 10 ms); IPFX looks for it before TEST_PULSE_MAX_TIME (0.4 s).
TEST_PULSE_MAX_S = 0.05
# Samples closer than this to the holding level count as "no stimulus" (pA).
MIN_TOLERANCE_PA = 0.5
CHIRP_MIN_CROSSINGS = 8
# Sample-to-sample noise (pA) above which a current is treated as recorded, not commanded.
COMMAND_NOISE_PA = 0.05


@dataclass(frozen=True)
class TestPulse:
    """A short square before the stimulus (times in s from sweep start, amplitude in pA)."""

    __test__ = False  # not a pytest class

    start: float
    end: float
    amplitude: float


@dataclass(frozen=True)
class StimulusInfo:
    """What the command waveform of one sweep is."""

    stimulus_type: str
    amplitude: float  # pA relative to holding; step height, ramp end value, chirp peak
    start: float | None  # s from sweep start
    end: float | None
    baseline: float  # holding current, pA
    test_pulse: TestPulse | None = None


def _tolerance(d: np.ndarray, floor: float = 0.0) -> float:
    peak = float(np.nanmax(np.abs(d))) if d.size else 0.0
    return max(MIN_TOLERANCE_PA, 0.01 * peak, floor)


def denoise(current: np.ndarray, sampling_rate: float) -> tuple[np.ndarray, float]:
    """Median-filter a recorded (noisy) current; a command waveform passes unchanged.

    Returns the current and the noise level left after filtering (pA), which sets the
    smallest step that can be told from noise. A 1 ms median keeps step edges sharp.
    """
    c = np.asarray(current, dtype=float)
    steps = np.abs(np.diff(c))
    sigma = 1.4826 * float(np.median(steps)) / np.sqrt(2) if steps.size else 0.0
    if sigma <= COMMAND_NOISE_PA:
        return c, 0.0
    from scipy.ndimage import median_filter

    size = max(3, int(0.001 * sampling_rate) | 1)
    return median_filter(c, size=size, mode="nearest"), 1.25 * sigma / np.sqrt(size)


def holding_level(current: np.ndarray, sampling_rate: float, noise: float = 0.0) -> float:
    """Holding current: the most common value in the first and last 2% of the sweep.

    Both ends are used because a test pulse may sit at the start and a ramp may run to
    the end; the mode (of values binned at 0.01 pA, or at the noise level of a recorded
    current) ignores either. For a recorded current the mean of that bin is returned.
    """
    c = current[np.isfinite(current)]
    if c.size == 0:
        return float("nan")
    edge = max(1, int(0.02 * c.size), int(0.001 * sampling_rate))
    ends = np.concatenate([c[:edge], c[-edge:]])
    width = max(0.01, 4 * noise)
    bins = np.round(ends / width)
    values, counts = np.unique(bins, return_counts=True)
    mode = values[np.argmax(counts)]
    if noise == 0.0:
        return float(mode * width)
    return float(np.mean(ends[np.abs(bins - mode) <= 1]))


def _runs(mask: np.ndarray) -> np.ndarray:
    """(start, stop) index pairs of the True runs of a boolean array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.column_stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)])


def _merge_runs(runs: np.ndarray, max_gap: int) -> np.ndarray:
    """Join runs separated by fewer than `max_gap` samples (zero crossings of a chirp)."""
    if len(runs) < 2:
        return runs
    gaps = runs[1:, 0] - runs[:-1, 1]
    breaks = np.flatnonzero(gaps >= max_gap)
    starts = np.concatenate([[0], breaks + 1])
    stops = np.concatenate([breaks, [len(runs) - 1]])
    return np.column_stack([runs[starts, 0], runs[stops, 1]])


def _flat_segments(d: np.ndarray, tol: float) -> np.ndarray:
    """(start, stop) pairs of the constant pieces of `d` (relative indices)."""
    jumps = np.flatnonzero(np.abs(np.diff(d)) > tol) + 1
    bounds = np.concatenate([[0], jumps, [d.size]])
    return np.column_stack([bounds[:-1], bounds[1:]])


def _square_type(duration: float) -> str:
    if duration <= SHORT_SQUARE_MAX_S:
        return SHORT_SQUARE
    if duration >= LONG_SQUARE_MIN_S:
        return LONG_SQUARE
    return OTHER


def _describe_run(d: np.ndarray, i0: int, i1: int, rate: float, tol: float, noisy: bool) -> tuple:
    """Type, amplitude, start, end of the stimulus occupying samples [i0, i1)."""
    seg = d[i0:i1]
    level = float(np.median(seg))
    # One level within noise: a square step (commanded or recorded).
    if np.quantile(np.abs(seg - level), 0.98) <= max(2 * tol, 0.05 * abs(level)):
        return _square_type(seg.size / rate), level, i0 / rate, i1 / rate
    pieces = _flat_segments(seg, tol)
    lengths = pieces[:, 1] - pieces[:, 0]
    spans = np.maximum.reduceat(seg, pieces[:, 0]) - np.minimum.reduceat(seg, pieces[:, 0])
    # Piecewise constant (steps, dual steps, staircases): a few long flat pieces.
    if (
        len(pieces) <= max(3, seg.size // 1000)
        and lengths.min() >= max(2, 0.0005 * rate)
        and spans.max() <= 4 * tol
    ):
        a, b = pieces[0]
        level = float(np.median(seg[a:b]))
        return _square_type((b - a) / rate), level, (i0 + a) / rate, (i0 + b) / rate
    crossings = int(np.count_nonzero(np.diff(np.signbit(seg[np.abs(seg) > tol]))))
    peak = float(np.max(np.abs(seg)))
    # A chirp oscillates smoothly (sample-to-sample steps small next to its peak); noise doesn't.
    smooth = np.median(np.abs(np.diff(seg))) < 0.05 * peak
    if crossings >= CHIRP_MIN_CROSSINGS and smooth:
        return CHIRP, peak, i0 / rate, i1 / rate
    steps = np.diff(seg)
    rising = np.count_nonzero(steps > 0) >= 0.9 * np.count_nonzero(steps)
    falling = np.count_nonzero(steps < 0) >= 0.9 * np.count_nonzero(steps)
    if (rising or falling or noisy) and seg.size >= 3 and np.std(seg) > 0:
        r = np.corrcoef(np.arange(seg.size), seg)[0, 1]
        if abs(r) > 0.98:
            slope, intercept = np.polyfit(np.arange(seg.size), seg, 1)
            # The ramp leaves holding before it clears the tolerance: extrapolate its onset.
            onset = float(np.clip(i0 - intercept / slope, 0, i0))
            return RAMP, float(slope * (seg.size - 1) + intercept), onset / rate, i1 / rate
    extreme = float(seg[np.argmax(np.abs(seg))])
    return OTHER, extreme, i0 / rate, i1 / rate


def classify_stimulus(current: np.ndarray, sampling_rate: float) -> StimulusInfo:
    """Classify one command waveform (pA): long/short square, ramp, chirp, test pulse, other.

    A sweep whose only deviation from holding is one short square near its start is
    itself a short square, not a test pulse; a test pulse needs a stimulus after it.
    """
    c = np.asarray(current, dtype=float)
    c, noise = denoise(c[: finite_length(c)], sampling_rate)
    baseline = holding_level(c, sampling_rate, noise)
    if c.size == 0 or not np.isfinite(baseline):
        return StimulusInfo(OTHER, float("nan"), None, None, float("nan"))
    d = c - baseline
    tol = _tolerance(d, 4 * noise)
    runs = _runs(np.abs(d) > tol)
    if noise > 0:  # blips the median filter let through are not stimuli
        runs = runs[(runs[:, 1] - runs[:, 0]) >= max(2, int(0.0005 * sampling_rate))]
    # Join the pieces of one stimulus split where it passes near holding (chirp zero
    # crossings; with noise, the first ms of a ramp).
    gap = 0.02 if noise > 0 else 0.002
    runs = _merge_runs(runs, max_gap=max(2, int(gap * sampling_rate)))
    if len(runs) == 0:  # holding only: a zero-amplitude sweep of no particular type
        return StimulusInfo(OTHER, 0.0, None, None, baseline)
    test_pulse = _test_pulse(d, runs, sampling_rate, tol)
    if test_pulse is not None:
        runs = runs[1:]
    kind, amplitude, start, end = _describe_run(
        d, runs[0, 0], runs[0, 1], sampling_rate, tol, noise > 0
    )
    return StimulusInfo(kind, amplitude, start, end, baseline, test_pulse)


def _test_pulse(d: np.ndarray, runs: np.ndarray, rate: float, tol: float) -> TestPulse | None:
    if len(runs) < 2:
        return None
    a, b = runs[0]
    if a / rate > TEST_PULSE_MAX_TIME or (b - a) / rate > TEST_PULSE_MAX_S:
        return None
    if np.ptp(d[a:b]) > 4 * tol:  # not a square
        return None
    return TestPulse(a / rate, b / rate, float(np.median(d[a:b])))


def finite_length(x: np.ndarray) -> int:
    """Length of `x` once a NaN tail is cut off."""
    finite = np.flatnonzero(np.isfinite(x))
    return int(finite[-1]) + 1 if finite.size else 0


def classify_protocol(currents: Sequence[np.ndarray], sampling_rate: float) -> list[StimulusInfo]:
    """Classify the sweeps of one protocol together, using what varies between them.

    Step protocols change one epoch's level from sweep to sweep; that epoch is the
    stimulus, even in the sweep where its level equals holding (0 pA) and a fixed
    conditioning pulse is the only deviation. Falls back to sweep-by-sweep results
    when the varying window is not a flat step in every sweep.
    """
    infos = [classify_stimulus(c, sampling_rate) for c in currents]
    if len(currents) < 2:
        return infos
    n = min(finite_length(np.asarray(c, dtype=float)) for c in currents)
    if n == 0:
        return infos
    baselines = np.array([i.baseline for i in infos])
    cleaned = [denoise(np.asarray(c[:n], dtype=float), sampling_rate) for c in currents]
    d = np.stack([c for c, _ in cleaned]) - baselines[:, None]
    tol = _tolerance(d, 4 * max(noise for _, noise in cleaned))
    spread = np.ptp(d, axis=0)
    runs = _runs(spread > tol)
    runs = runs[(runs[:, 1] - runs[:, 0]) >= max(2, int(0.0005 * sampling_rate))]
    pulses = [i.test_pulse for i in infos if i.test_pulse is not None]
    for a, b in runs:
        t0, t1 = a / sampling_rate, b / sampling_rate
        if any(p.start - 1e-3 <= t0 and t1 <= p.end + 1e-3 for p in pulses):
            continue  # a test pulse whose size changes is not the stimulus
        window = d[:, a:b]
        if np.any(np.ptp(window, axis=1) > 4 * tol):  # not a flat step in every sweep
            return infos
        levels = np.median(window, axis=1)
        if np.ptp(levels) > 4 * tol:  # a real difference, not noise
            break
    else:
        return infos
    kind = _square_type((b - a) / sampling_rate)
    return [
        StimulusInfo(
            kind,
            float(level),
            a / sampling_rate,
            b / sampling_rate,
            info.baseline,
            info.test_pulse
            if info.test_pulse and info.test_pulse.end <= a / sampling_rate
            else None,
        )
        for info, level in zip(infos, levels, strict=True)
    ]
