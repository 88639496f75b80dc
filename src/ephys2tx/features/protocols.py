"""IPFX's stimulus-protocol analyses of a cell: spikes detected once per sweep, per protocol.

Every protocol opens the same way (its current-clamp sweeps, converted to IPFX sweeps, and
the stimulus window), as IPFX's protocol analyses share `StimulusProtocolAnalysis`; here that
opening is `ProtocolAnalyzer.run`, and each protocol only says what it does with the window.
A protocol that cannot be analysed gives a `ProtocolAnalysis` with the reason, never zeros.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from ipfx import data_set_features as dsf
from ipfx import stim_features as stf
from ipfx import stimulus_protocol_analysis as spa
from ipfx import time_series_utils as tsu
from ipfx.stimulus import StimulusType
from ipfx.sweep import Sweep as IpfxSweep
from ipfx.sweep import SweepSet

from ..recordings.sweeps import CHIRP, LONG_SQUARE, RAMP, SHORT_SQUARE, Recording, Sweep
from .analysis import CellAnalysis, ProtocolAnalysis
from .spikes import augment_spikes

EXTRA_DUR = 0.2  # s after the step a long-square sweep must last (IPFX's validate_sweeps)
SSQ_SPIKE_WINDOW = 0.05  # s after a short square in which its spike is searched (IPFX)


def to_ipfx_sweep(sweep: Sweep) -> IpfxSweep:
    """Our sweep model -> IPFX's (t s, v mV, i pA, current clamp)."""
    v = np.asarray(sweep.voltage, dtype=float)
    i = np.asarray(sweep.current, dtype=float)
    return IpfxSweep(
        t=np.arange(len(v)) / sweep.sampling_rate,
        v=v,
        i=i,
        clamp_mode="CurrentClamp",
        sampling_rate=sweep.sampling_rate,
        sweep_number=sweep.sweep_number,
    )


def _stim_window(sweeps: list[Sweep], ipfx_sweeps: list[IpfxSweep]) -> tuple[float, float] | None:
    """Stimulus start/end (s): the reader's metadata, else IPFX's detection on the current."""
    for s in sweeps:
        if s.stim_start is not None and s.stim_end is not None and s.stim_end > s.stim_start:
            return float(s.stim_start), float(s.stim_end)
    for s in ipfx_sweeps:
        start, dur, _, _, _ = stf.get_stim_characteristics(s.i, s.t)
        if start is not None and dur:
            return float(start), float(start + dur)
    return None


def _subthresh_min_amp(amps: np.ndarray) -> float:
    """IPFX's rule for the lowest amplitude used for Ri/tau (-100 pA for 20 pA steps...)."""
    try:
        return dsf.select_subthreshold_min_amplitude(amps)[0]
    except Exception:  # unusual step sizes: IPFX's fallback
        return -100.0


def _step_amplitude(sweep: IpfxSweep, start: float) -> float:
    """The step's current just after its onset (what IPFX's long-square analysis uses)."""
    return sweep.i[tsu.find_time_index(sweep.t, start) + 1]


@dataclass(frozen=True)
class Stimulus:
    """What the shared opening found: a protocol's sweeps (ours and IPFX's) and its window."""

    sweeps: list[Sweep]
    ipfx_sweeps: list[IpfxSweep]
    start: float
    end: float

    @property
    def filter_khz(self) -> float:
        """IPFX's 10 kHz Bessel cutoff for dV/dt, lowered below Nyquist for slower recordings."""
        rate = min(s.sampling_rate for s in self.sweeps)
        return 10.0 if rate / 2e3 > 10.0 else 0.4 * rate / 1e3


class ProtocolAnalyzer(ABC):
    """One stimulus protocol: the shared opening (`run`), then the protocol's `analyze`."""

    stimulus_type: ClassVar[str]
    name: ClassVar[str]  # as reasons name it: "no {name} sweeps"
    no_window: ClassVar[str]  # the reason when no stimulus window is found

    def run(self, rec: Recording) -> ProtocolAnalysis:
        """Analyse the recording's current-clamp sweeps of this protocol."""
        sweeps = [s for s in rec.of_type(self.stimulus_type) if s.clamp_mode == "current_clamp"]
        if not sweeps:
            return ProtocolAnalysis(reason=f"no {self.name} sweeps")
        ipfx_sweeps = [to_ipfx_sweep(s) for s in sweeps]
        window = _stim_window(sweeps, ipfx_sweeps)
        if window is None:
            return ProtocolAnalysis(reason=self.no_window)
        return self.analyze(Stimulus(sweeps, ipfx_sweeps, *window))

    @abstractmethod
    def analyze(self, stim: Stimulus) -> ProtocolAnalysis:
        """The protocol's IPFX analysis of sweeps whose stimulus window is known."""


class LongSquares(ProtocolAnalyzer):
    """IPFX `LongSquareAnalysis` over the cell's long squares (one detection per sweep)."""

    stimulus_type, name = LONG_SQUARE, "long-square"
    no_window = "no step found in the long-square current"

    def analyze(self, stim: Stimulus) -> ProtocolAnalysis:
        start, end = stim.start, stim.end
        # IPFX keeps sweeps that last at least 0.2 s past the step and did not end early
        good = [
            s for s in stim.ipfx_sweeps if s.t[-1] >= end + EXTRA_DUR and np.isfinite(s.v).all()
        ]
        if not good:
            return ProtocolAnalysis(reason="long-square sweeps end before step end + 0.2 s")
        sweep_set = SweepSet(good)
        spx, sptx = dsf.extractors_for_sweeps(
            sweep_set,
            start=start,
            end=end,
            filter_frequency=stim.filter_khz,
            **dsf.detection_parameters(StimulusType.LONG_SQUARE),
        )
        # IPFX's 100 ms baseline window, shortened when the recording has less before the step
        sptx.baseline_interval = min(sptx.baseline_interval, 0.9 * start)
        amps = np.array([_step_amplitude(s, start) for s in good])
        analyzer = spa.LongSquareAnalysis(
            spx,
            sptx,
            subthresh_min_amp=_subthresh_min_amp(amps),
            require_subthreshold=False,
            require_suprathreshold=False,
        )
        try:
            features = analyzer.analyze(sweep_set)
        except ValueError as exc:  # e.g. only rebound spikes at negative amplitudes
            features = _subthreshold_only(analyzer, sweep_set, exc)
        return ProtocolAnalysis(sweep_set, features, analyzer, start, end)


def _subthreshold_only(
    analyzer: spa.LongSquareAnalysis, sweep_set: SweepSet, exc: ValueError
) -> dict:
    """Keep the detection results when IPFX's suprathreshold step failed; those families will
    be missing (with `exc` as their reason).

    The one use of IPFX internals: `analyze()` raised after detecting the spikes, and IPFX has
    no public accessor for the per-sweep spike tables it then holds (`_spikes_set`).
    """
    sweep_features = analyzer.all_sweep_features()
    if sweep_features is None:  # detection itself failed
        raise exc
    features = {"spikes_set": analyzer._spikes_set, "sweeps": sweep_features}
    features.update(analyzer.analyze_subthreshold(sweep_set))
    features["v_baseline"] = np.nanmean(sweep_features["v_baseline"].values)
    features["suprathreshold_error"] = str(exc)
    return features


class ShortSquares(ProtocolAnalyzer):
    """IPFX `ShortSquareAnalysis` (detection parameters of IPFX's feature-vector script)."""

    stimulus_type, name = SHORT_SQUARE, "short-square"
    no_window = "no pulse found in the short-square current"

    def analyze(self, stim: Stimulus) -> ProtocolAnalysis:
        start, end = stim.start, stim.end
        good = [s for s in stim.ipfx_sweeps if s.t[-1] >= end + EXTRA_DUR]
        if not good:
            return ProtocolAnalysis(reason="short-square sweeps end too early")
        sweep_set = SweepSet(good)
        spx, sptx = dsf.extractors_for_sweeps(
            sweep_set,
            est_window=[start, start + 0.001],
            start=start,
            end=end + SSQ_SPIKE_WINDOW,
            reject_at_stim_start_interval=0.0002,
            filter_frequency=stim.filter_khz,
            **dsf.detection_parameters(StimulusType.SHORT_SQUARE),
        )
        analyzer = spa.ShortSquareAnalysis(spx, sptx)
        try:
            features = analyzer.analyze(sweep_set)
        except Exception as exc:  # IPFX raises FeatureError when no short square spiked
            return ProtocolAnalysis(sweep_set, None, analyzer, start, end, reason=str(exc))
        return ProtocolAnalysis(sweep_set, features, analyzer, start, end)


class Ramps(ProtocolAnalyzer):
    """IPFX `RampAnalysis` over the cell's ramps."""

    stimulus_type, name = RAMP, "ramp"
    no_window = "no ramp found in the current"

    def analyze(self, stim: Stimulus) -> ProtocolAnalysis:
        sweep_set = SweepSet(stim.ipfx_sweeps)
        spx, sptx = dsf.extractors_for_sweeps(
            sweep_set,
            start=stim.start,
            filter_frequency=stim.filter_khz,
            **dsf.detection_parameters(StimulusType.RAMP),
        )
        analyzer = spa.RampAnalysis(spx, sptx)
        features = analyzer.analyze(sweep_set)
        if len(features["spiking_sweeps"]) == 0:
            return ProtocolAnalysis(
                sweep_set, None, analyzer, stim.start, stim.end, reason="no spike on ramps"
            )
        return ProtocolAnalysis(sweep_set, features, analyzer, stim.start, stim.end)


class Chirps(ProtocolAnalyzer):
    """Chirp sweeps need no spike detection; keep them with their stimulus window."""

    stimulus_type, name = CHIRP, "chirp"
    no_window = "no chirp stimulus window"

    def analyze(self, stim: Stimulus) -> ProtocolAnalysis:
        return ProtocolAnalysis(SweepSet(stim.ipfx_sweeps), {}, None, stim.start, stim.end)


def analyze_long_squares(rec: Recording) -> ProtocolAnalysis:
    """IPFX `LongSquareAnalysis` over the cell's long squares (also picks the key sweeps)."""
    return LongSquares().run(rec)


def _guard(analyzer: ProtocolAnalyzer, rec: Recording) -> ProtocolAnalysis:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = analyzer.run(rec)
    except Exception as exc:  # one protocol failing must not lose the others
        return ProtocolAnalysis(reason=f"{type(exc).__name__}: {exc}")
    if result.analyzer is not None and result.features is not None:
        augment_spikes(result)
    return result


def analyze_recording(rec: Recording) -> CellAnalysis:
    """Detect spikes once per sweep for every protocol of the cell."""
    return CellAnalysis(
        cell_id=rec.cell_id,
        long_square=_guard(LongSquares(), rec),
        short_square=_guard(ShortSquares(), rec),
        ramp=_guard(Ramps(), rec),
        chirp=_guard(Chirps(), rec),
    )
