"""Spike counts per sweep on the real ABF files: IPFX's detector vs eFEL, on our Sweep objects.

Two independent detectors agreeing (within one spike) on the sweeps our ABF reader produces
checks voltage units, sampling rates, sweep slicing and the inferred stimulus windows.
Spikes are counted inside each sweep's stimulus window (the Allen convention), both
libraries at their default criteria.

    .venv/bin/python benchmarks/bench_spike_agreement.py [FILES...] [--plot PNG]

Known disagreement (the --plot figure shows every differing sweep with both detectors' peaks):
- 171116sh_0019 at 1000-1400 pA: the AHP troughs ride near -20 mV, so eFEL's fixed -20 mV
  threshold counts AHP bumps as spikes (1000-1200 pA) or merges real spikes (1300-1400 pA);
- 17o05028 at 90-100 pA: late spikes in the train rise slower than 20 mV/ms and IPFX's
  Allen criterion (dv_cutoff 20 mV/ms) does not count them, by definition.
eFEL at a 0 mV threshold does not help (new disagreements in depolarization block at
1500-1900 pA), so both libraries stay at their defaults. The figure is also printed for
sweeps <= 1 nA.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ABF_DIR = REPO.parent / "shared" / "data" / "recordings" / "abf"
HIGH_CURRENT_PA = 1000.0


def _window(sweep) -> tuple[float, float]:
    t = sweep.time
    start = sweep.stim_start if sweep.stim_start is not None else float(t[0])
    end = min(sweep.stim_end, float(t[-1])) if sweep.stim_end is not None else float(t[-1])
    return start, end


def ipfx_peak_times(sweep) -> np.ndarray:
    """Spike peak times (s) in the stimulus window by IPFX's SpikeFeatureExtractor (defaults)."""
    from ipfx.feature_extractor import SpikeFeatureExtractor

    # IPFX's Bessel filter must stay below Nyquist (its 10 kHz default needs > 20 kHz sampling).
    cutoff = min(10.0, 0.4 * sweep.sampling_rate / 1000.0)
    start, end = _window(sweep)
    extractor = SpikeFeatureExtractor(start=start, end=end, filter=cutoff)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spikes = extractor.process(sweep.time, sweep.voltage, sweep.current)
    return spikes["peak_t"].to_numpy() if len(spikes) else np.zeros(0)


def efel_peak_times(sweep) -> np.ndarray:
    """Spike peak times (s) in the stimulus window by eFEL (default -20 mV threshold).

    Their number is eFEL's `Spikecount_stimint`: peaks from stim_start to stim_end.
    """
    import efel

    efel.reset()
    start, end = _window(sweep)
    trace = {"T": sweep.time * 1000.0, "V": sweep.voltage, "stim_start": [start * 1000.0],
             "stim_end": [end * 1000.0]}  # fmt: skip
    (result,) = efel.get_feature_values([trace], ["peak_time"], raise_warnings=False)
    peaks = np.asarray(result["peak_time"] if result["peak_time"] is not None else []) / 1000.0
    return peaks[(peaks >= start) & (peaks <= end)]


def spike_count_rows(paths: list[Path]) -> tuple[list[tuple], dict]:
    """Rows (file, sweep, amplitude pA, ipfx count, efel count) for every sweep of the files,
    and {(file, sweep): (Sweep, ipfx peaks, efel peaks)} for the sweeps that differ."""
    from ephys2tx.recordings.read import read_recording

    rows, differing = [], {}
    for path in paths:
        for sweep in read_recording(path).sweeps:
            a, b = ipfx_peak_times(sweep), efel_peak_times(sweep)
            rows.append((path.name, sweep.sweep_number, sweep.amplitude, len(a), len(b)))
            if abs(len(a) - len(b)) > 1:
                differing[(path.name, sweep.sweep_number)] = (sweep, a, b)
    return rows, differing


def plot_differing(differing: dict, path: Path) -> Path:
    """The sweeps the detectors disagree on, with each detector's spike peaks marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(differing)
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.2 * n), squeeze=False)
    for ax, ((name, number), (sweep, a, b)) in zip(axes[:, 0], differing.items(), strict=True):
        start, end = _window(sweep)
        keep = (sweep.time >= start - 0.02) & (sweep.time <= end + 0.05)
        ax.plot(sweep.time[keep], sweep.voltage[keep], lw=0.6, color="0.3")
        ax.plot(a, np.interp(a, sweep.time, sweep.voltage) + 4, "v", color="tab:red",
                ms=5, label=f"IPFX {len(a)}")  # fmt: skip
        ax.plot(b, np.interp(b, sweep.time, sweep.voltage) + 10, "^", color="tab:green",
                ms=5, label=f"eFEL {len(b)}")  # fmt: skip
        ax.axhline(-20, color="tab:green", lw=0.6, ls=":")
        ax.set_title(f"{name} sweep {number}, {sweep.amplitude:.0f} pA", fontsize=9)
        ax.set_ylabel("mV")
        ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def agreement(rows, max_amplitude: float = np.inf) -> tuple[float, int]:
    """Fraction of sweeps (amplitude <= max_amplitude) whose counts differ by at most one."""
    chosen = [r for r in rows if r[2] <= max_amplitude]
    ok = [abs(r[3] - r[4]) <= 1 for r in chosen]
    return float(np.mean(ok)), len(chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="ABF/NWB files (default: real ABF)")
    parser.add_argument("--plot", type=Path, default=Path("spike_agreement.png"),
                        help="figure of the sweeps the detectors disagree on")  # fmt: skip
    args = parser.parse_args()
    paths = args.files or sorted(ABF_DIR.glob("*.abf"))
    started = time.perf_counter()
    rows, differing = spike_count_rows(paths)
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
    if differing:
        print(f"the {len(differing)} differing sweeps: {plot_differing(differing, args.plot)}")


if __name__ == "__main__":
    main()
