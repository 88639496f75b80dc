"""Turn raw traces from any reader into a `Recording`: unit-checked, NaN tails cut, classified.

Readers only pull arrays out of files; the shared rules (what to do with NaN tails,
which sweeps to keep, how stimuli are classified) live here so every format obeys them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import Ephys2txError
from .stimulus import classify_protocol, finite_length
from .sweeps import Recording, Sweep

# A sweep shorter than this after its NaN tail is cut cannot hold a stimulus and baseline.
MIN_SWEEP_S = 0.05


@dataclass
class RawTrace:
    """One current-clamp sweep as read: voltage in mV, current in pA (NaN if unrecorded)."""

    sweep_number: int
    voltage: np.ndarray
    current: np.ndarray
    sampling_rate: float
    protocol: str = ""  # sweeps of one protocol are classified together
    stimulus_code: str | None = None


def _usable(trace: RawTrace) -> tuple[int, str | None]:
    """Samples to keep and, when the sweep is unusable, why."""
    n = finite_length(trace.voltage)
    if n == 0:
        return 0, "voltage is all NaN"
    if not np.all(np.isfinite(trace.voltage[:n])):
        return 0, "NaN values inside the voltage trace (not only at its end)"
    if n / trace.sampling_rate < MIN_SWEEP_S:
        return 0, f"only {n / trace.sampling_rate:.3f} s of data before the NaN tail"
    return n, None


def assemble(
    source: Path,
    traces: list[RawTrace],
    *,
    cell_id: str | None = None,
    species: str | None = None,
    metadata: dict | None = None,
) -> Recording:
    """Classify stimuli per protocol, cut NaN tails, drop unusable sweeps (kept in metadata).

    Raises Ephys2txError when no sweep survives, naming the file and the reasons.
    """
    metadata = dict(metadata or {})
    dropped: list[tuple[int, str]] = []
    groups: dict[tuple, list[RawTrace]] = defaultdict(list)
    for trace in traces:
        groups[(trace.protocol, len(trace.current), trace.sampling_rate)].append(trace)
    kept: list[Sweep] = []
    for (_, _, rate), members in groups.items():
        infos = classify_protocol([t.current for t in members], rate)
        for trace, info in zip(members, infos, strict=True):
            n, reason = _usable(trace)
            if reason is None and info.end is not None and info.end > n / rate + 1e-9:
                reason = (
                    f"recording stops at {n / rate:.3f} s (NaN tail), before the stimulus "
                    f"ends at {info.end:.3f} s"
                )
            if reason is not None:
                dropped.append((trace.sweep_number, reason))
                continue
            # Commands stored as float32 nA carry 3e-5 pA of rounding where 0 was meant, which
            # IPFX would read as a (tiny) stimulus; no amplifier resolves 0.001 pA.
            current = np.round(trace.current[:n].astype(float), 3)
            kept.append(
                Sweep(
                    sweep_number=int(trace.sweep_number),
                    voltage=trace.voltage[:n].astype(float),
                    current=current,
                    sampling_rate=float(rate),
                    stimulus_type=info.stimulus_type,
                    # float32 commands give -1799.99999 for -1800; pA to 0.001 is plenty
                    amplitude=round(info.amplitude, 3),
                    stim_start=info.start,
                    stim_end=info.end,
                    stimulus_code=trace.stimulus_code,
                )
            )
            if n < len(trace.voltage):
                metadata.setdefault("nan_tail_trimmed", []).append(int(trace.sweep_number))
            if info.test_pulse is not None:
                metadata.setdefault("test_pulses", {})[int(trace.sweep_number)] = (
                    info.test_pulse.start,
                    info.test_pulse.end,
                    info.test_pulse.amplitude,
                )
    metadata["dropped_sweeps"] = dropped
    if not kept:
        why = "; ".join(f"sweep {n}: {r}" for n, r in dropped[:3]) or "no sweeps"
        raise Ephys2txError(
            f"{source}: no usable current-clamp sweeps ({why}); "
            "record or export complete current-clamp sweeps"
        )
    kept.sort(key=lambda s: s.sweep_number)
    return Recording(
        source=Path(source),
        cell_id=cell_id or Path(source).stem,
        sweeps=kept,
        species=species,
        metadata=metadata,
    )
