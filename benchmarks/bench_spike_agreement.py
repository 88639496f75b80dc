"""Spike counts per sweep on the real ABF files: IPFX's detector vs eFEL, on our Sweep objects.

Two independent detectors agreeing (within one spike) on the sweeps our ABF reader produces
checks voltage units, sampling rates, sweep slicing and the inferred stimulus windows.
Spikes are counted inside each sweep's stimulus window (the Allen convention), both
libraries at their default criteria.

    .venv/bin/python benchmarks/bench_spike_agreement.py [FILES...]

Known disagreement: in sweeps driven far past the peak of the f-I curve (>= 1 nA here, or
near depolarization block) spikes shrink and slow down; IPFX drops those whose upstroke is
under its 20 mV/ms cutoff, and eFEL's fixed -20 mV threshold double-counts or misses spikes
whose troughs ride near -20 mV. The figure is therefore also printed for sweeps <= 1 nA.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ABF_DIR = REPO.parent / "shared" / "data" / "recordings" / "abf"
HIGH_CURRENT_PA = 1000.0


def ipfx_spike_count(sweep) -> int:
    """Spikes in the stimulus window by IPFX's SpikeFeatureExtractor (default criteria)."""
    from ipfx.feature_extractor import SpikeFeatureExtractor

    # IPFX's Bessel filter must stay below Nyquist (its 10 kHz default needs > 20 kHz sampling).
    cutoff = min(10.0, 0.4 * sweep.sampling_rate / 1000.0)
    t = sweep.time
    start = sweep.stim_start if sweep.stim_start is not None else float(t[0])
    end = min(sweep.stim_end, float(t[-1])) if sweep.stim_end is not None else float(t[-1])
    extractor = SpikeFeatureExtractor(start=start, end=end, filter=cutoff)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spikes = extractor.process(t, sweep.voltage, sweep.current)
    return len(spikes)


def efel_spike_count(sweep) -> int:
    """Spikes in the stimulus window by eFEL (`Spikecount_stimint`, default -20 mV threshold)."""
    import efel

    efel.reset()
    t = sweep.time
    start = sweep.stim_start if sweep.stim_start is not None else float(t[0])
    end = sweep.stim_end if sweep.stim_end is not None else float(t[-1])
    trace = {"T": t * 1000.0, "V": sweep.voltage, "stim_start": [start * 1000.0],
             "stim_end": [end * 1000.0]}  # fmt: skip
    (result,) = efel.get_feature_values([trace], ["Spikecount_stimint"], raise_warnings=False)
    value = result["Spikecount_stimint"]
    return 0 if value is None else int(value[0])


def spike_count_rows(paths: list[Path]) -> list[tuple[str, int, float, int, int]]:
    """(file, sweep, amplitude pA, ipfx count, efel count) for every sweep of the files."""
    from ephys2tx.recordings.read import read_recording

    rows = []
    for path in paths:
        for sweep in read_recording(path).sweeps:
            rows.append(
                (
                    path.name,
                    sweep.sweep_number,
                    sweep.amplitude,
                    ipfx_spike_count(sweep),
                    efel_spike_count(sweep),
                )
            )
    return rows


def agreement(rows, max_amplitude: float = np.inf) -> tuple[float, int]:
    """Fraction of sweeps (amplitude <= max_amplitude) whose counts differ by at most one."""
    chosen = [r for r in rows if r[2] <= max_amplitude]
    ok = [abs(r[3] - r[4]) <= 1 for r in chosen]
    return float(np.mean(ok)), len(chosen)


def main(argv: list[str]) -> None:
    paths = [Path(p) for p in argv] or sorted(ABF_DIR.glob("*.abf"))
    started = time.perf_counter()
    rows = spike_count_rows(paths)
    for name, number, amplitude, a, b in rows:
        flag = "" if abs(a - b) <= 1 else "  <-- differs"
        print(f"{name:26s} sweep {number:3d} {amplitude:7.0f} pA  ipfx {a:3d}  efel {b:3d}{flag}")
    overall, n = agreement(rows)
    low, n_low = agreement(rows, HIGH_CURRENT_PA)
    print(
        f"agreement (|ipfx - efel| <= 1): {overall:.1%} of {n} sweeps in {len(paths)} files; "
        f"{low:.1%} of the {n_low} sweeps <= {HIGH_CURRENT_PA:.0f} pA; "
        f"spikes ipfx {sum(r[3] for r in rows)}, efel {sum(r[4] for r in rows)}; "
        f"{time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
