"""Per-spike features IPFX does not give, added to its spike tables (threshold-relative
heights, width at half the threshold-to-peak height, post-AP slope, AHP delay ratio)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .analysis import ProtocolAnalysis

POSTAP_WINDOW = 0.005  # s after the fast trough used for the post-AP slope (our definition)


def augment_spikes(pa: ProtocolAnalysis) -> None:
    """Add threshold-relative and extended spike features to each IPFX spike table.

    The tables are replaced inside IPFX's own `spikes_set` list (one concat per sweep, cheaper
    than column-by-column inserts), so every later lookup sees the added columns.
    """
    spikes_set = pa.features.get("spikes_set") if pa.features else None
    if not spikes_set:
        return
    for k, (swp, spikes) in enumerate(zip(pa.sweeps.sweeps, spikes_set, strict=True)):
        if spikes is None or len(spikes) == 0:
            continue
        thr = spikes["threshold_v"].to_numpy(float)
        fast = spikes["fast_trough_v"].to_numpy(float)
        trough = spikes["trough_v"].to_numpy(float)
        isi_next = np.append(np.diff(spikes["threshold_t"].to_numpy(float)), np.nan)
        extra = {
            "peak_deltav": spikes["peak_v"].to_numpy(float) - thr,
            "fast_trough_deltav": fast - thr,
            "trough_deltav": trough - thr,
            # how much deeper the whole AHP goes than the fast trough (<= 0)
            "trough_slowdeltav": trough - fast,
            "width_suprathresh": _widths_suprathresh(swp.t, swp.v, spikes),
            "postap_slope": _postap_slopes(swp.t, swp.v, spikes),
            "ahp_delay_ratio": (
                spikes["trough_t"].to_numpy(float) - spikes["peak_t"].to_numpy(float)
            )
            / isi_next,
        }
        spikes_set[k] = pd.concat([spikes, pd.DataFrame(extra, index=spikes.index)], axis=1)


def _widths_suprathresh(t: np.ndarray, v: np.ndarray, spikes: pd.DataFrame) -> np.ndarray:
    """Full width (s) at half the threshold-to-peak height."""
    out = np.full(len(spikes), np.nan)
    for k, (ti, pi, thr, pk) in enumerate(
        zip(
            spikes["threshold_index"],
            spikes["peak_index"],
            spikes["threshold_v"],
            spikes["peak_v"],
            strict=True,
        )
    ):
        if not (np.isfinite(ti) and np.isfinite(pi)):
            continue
        ti, pi = int(ti), int(pi)
        level = (thr + pk) / 2.0
        before = np.flatnonzero(v[ti : pi + 1] <= level)
        after = np.flatnonzero(v[pi:] <= level)
        if before.size and after.size:
            out[k] = t[pi + after[0]] - t[ti + before[-1]]
    return out


def _postap_slopes(t: np.ndarray, v: np.ndarray, spikes: pd.DataFrame) -> np.ndarray:
    """Slope (mV/ms) of a line fit to V over the 5 ms after the fast trough (before next spike)."""
    out = np.full(len(spikes), np.nan)
    dt = t[1] - t[0]
    n_win = max(int(round(POSTAP_WINDOW / dt)), 2)
    nxt = np.append(spikes["threshold_index"].to_numpy(float)[1:], len(v))
    for k, (ft, stop) in enumerate(zip(spikes["fast_trough_index"], nxt, strict=True)):
        if not np.isfinite(ft):
            continue
        a = int(ft)
        b = int(min(a + n_win, stop))
        if b - a >= 2:  # least-squares slope, written out (np.polyfit is slow per spike)
            x = t[a:b] * 1e3
            x = x - x.mean()
            out[k] = float(x @ v[a:b] / (x @ x))
    return out
