"""One-pass IPFX feature extraction: a `Recording` -> canonical scalar features + feature vectors.

Spikes are detected ONCE per sweep (IPFX `SpikeFeatureExtractor` + `SpikeTrainFeatureExtractor`,
driven by IPFX's stimulus-protocol analyses); both the scalar features (names and units of the
Lee et al. 2023 table) and IPFX's feature vectors are then computed from those same results.
A family the protocol cannot give is NaN with a recorded reason, never zeros.

Pure computation: no file I/O here (see `batch.py`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from ipfx import data_set_features as dsf
from ipfx import stim_features as stf
from ipfx import stimulus_protocol_analysis as spa
from ipfx.stimulus import StimulusType
from ipfx.sweep import Sweep as IpfxSweep
from ipfx.sweep import SweepSet

from ..recordings.sweeps import CHIRP, LONG_SQUARE, RAMP, SHORT_SQUARE, Recording, Sweep
from . import vectors as vec
from .families import FAMILIES, SCALAR_FAMILIES, SCALAR_FEATURES, VECTOR_FAMILIES

log = logging.getLogger(__name__)

OK, PARTIAL, MISSING = "ok", "partial", "missing"
EXTRA_DUR = 0.2  # s after the step a long-square sweep must last (IPFX's validate_sweeps)
SSQ_SPIKE_WINDOW = 0.05  # s after a short square in which its spike is searched (IPFX)
POSTAP_WINDOW = 0.005  # s after the fast trough used for the post-AP slope (our definition)


@dataclass
class ProtocolAnalysis:
    """IPFX analysis of one stimulus protocol: sweeps, analyzer and its `analyze()` output."""

    sweeps: SweepSet | None = None
    features: dict | None = None
    analyzer: spa.StimulusProtocolAnalysis | None = None
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
        return OK if all(present) else ("failed" if not any(present) else PARTIAL)

    @property
    def reason(self) -> str:
        return "; ".join(
            f"{fam}: {self.family_reason[fam]}"
            for fam, s in self.family_status.items()
            if s != OK and self.family_reason.get(fam)
        )


# ---------------------------------------------------------------- conversion and detection


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


def _filter_khz(sweeps: list[Sweep], default: float = 10.0) -> float:
    """IPFX's 10 kHz Bessel cutoff for dV/dt, lowered below Nyquist for slower recordings."""
    rate = min(s.sampling_rate for s in sweeps)
    return default if rate / 2e3 > default else 0.4 * rate / 1e3


def _cc_sweeps(rec: Recording, stim_type: str) -> list[Sweep]:
    return [s for s in rec.of_type(stim_type) if s.clamp_mode == "current_clamp"]


def _subthresh_min_amp(amps: np.ndarray) -> float:
    """IPFX's rule for the lowest amplitude used for Ri/tau (-100 pA for 20 pA steps...)."""
    try:
        return dsf.select_subthreshold_min_amplitude(amps)[0]
    except Exception:  # unusual step sizes: IPFX's fallback
        return -100.0


def analyze_long_squares(rec: Recording) -> ProtocolAnalysis:
    """IPFX `LongSquareAnalysis` over the cell's long squares (one detection per sweep)."""
    sweeps = _cc_sweeps(rec, LONG_SQUARE)
    if not sweeps:
        return ProtocolAnalysis(reason="no long-square sweeps")
    ipfx_sweeps = [to_ipfx_sweep(s) for s in sweeps]
    window = _stim_window(sweeps, ipfx_sweeps)
    if window is None:
        return ProtocolAnalysis(reason="no step found in the long-square current")
    start, end = window
    # IPFX keeps sweeps that last at least 0.2 s past the step and did not end early
    good = [s for s in ipfx_sweeps if s.t[-1] >= end + EXTRA_DUR and np.isfinite(s.v).all()]
    if not good:
        return ProtocolAnalysis(reason="long-square sweeps end before step end + 0.2 s")
    sweep_set = SweepSet(good)
    spx, sptx = dsf.extractors_for_sweeps(
        sweep_set,
        start=start,
        end=end,
        filter_frequency=_filter_khz(sweeps),
        **dsf.detection_parameters(StimulusType.LONG_SQUARE),
    )
    # IPFX's 100 ms baseline window, shortened when the recording has less before the step
    sptx.baseline_interval = min(sptx.baseline_interval, 0.9 * start)
    amps = np.array([stf._step_stim_amp(s.t, s.i, start) for s in good])
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
        if analyzer._sweep_features is None:  # detection itself failed
            raise
        # detection results are kept; suprathreshold families will be missing
        features = {"spikes_set": analyzer._spikes_set, "sweeps": analyzer._sweep_features}
        features.update(analyzer.analyze_subthreshold(sweep_set))
        features["v_baseline"] = np.nanmean(analyzer._sweep_features["v_baseline"].values)
        features["suprathreshold_error"] = str(exc)
    return ProtocolAnalysis(sweep_set, features, analyzer, start, end)


def analyze_short_squares(rec: Recording) -> ProtocolAnalysis:
    """IPFX `ShortSquareAnalysis` (detection parameters of IPFX's feature-vector script)."""
    sweeps = _cc_sweeps(rec, SHORT_SQUARE)
    if not sweeps:
        return ProtocolAnalysis(reason="no short-square sweeps")
    ipfx_sweeps = [to_ipfx_sweep(s) for s in sweeps]
    window = _stim_window(sweeps, ipfx_sweeps)
    if window is None:
        return ProtocolAnalysis(reason="no pulse found in the short-square current")
    start, end = window
    good = [s for s in ipfx_sweeps if s.t[-1] >= end + EXTRA_DUR]
    if not good:
        return ProtocolAnalysis(reason="short-square sweeps end too early")
    sweep_set = SweepSet(good)
    spx, sptx = dsf.extractors_for_sweeps(
        sweep_set,
        est_window=[start, start + 0.001],
        start=start,
        end=end + SSQ_SPIKE_WINDOW,
        reject_at_stim_start_interval=0.0002,
        filter_frequency=_filter_khz(sweeps),
        **dsf.detection_parameters(StimulusType.SHORT_SQUARE),
    )
    analyzer = spa.ShortSquareAnalysis(spx, sptx)
    try:
        features = analyzer.analyze(sweep_set)
    except Exception as exc:  # IPFX raises FeatureError when no short square spiked
        return ProtocolAnalysis(sweep_set, None, analyzer, start, end, reason=str(exc))
    return ProtocolAnalysis(sweep_set, features, analyzer, start, end)


def analyze_ramps(rec: Recording) -> ProtocolAnalysis:
    """IPFX `RampAnalysis` over the cell's ramps."""
    sweeps = _cc_sweeps(rec, RAMP)
    if not sweeps:
        return ProtocolAnalysis(reason="no ramp sweeps")
    ipfx_sweeps = [to_ipfx_sweep(s) for s in sweeps]
    window = _stim_window(sweeps, ipfx_sweeps)
    if window is None:
        return ProtocolAnalysis(reason="no ramp found in the current")
    start, end = window
    sweep_set = SweepSet(ipfx_sweeps)
    spx, sptx = dsf.extractors_for_sweeps(
        sweep_set,
        start=start,
        filter_frequency=_filter_khz(sweeps),
        **dsf.detection_parameters(StimulusType.RAMP),
    )
    analyzer = spa.RampAnalysis(spx, sptx)
    features = analyzer.analyze(sweep_set)
    if len(features["spiking_sweeps"]) == 0:
        return ProtocolAnalysis(sweep_set, None, analyzer, start, end, reason="no spike on ramps")
    return ProtocolAnalysis(sweep_set, features, analyzer, start, end)


def analyze_chirps(rec: Recording) -> ProtocolAnalysis:
    """Chirp sweeps need no spike detection; keep them with their stimulus window."""
    sweeps = _cc_sweeps(rec, CHIRP)
    if not sweeps:
        return ProtocolAnalysis(reason="no chirp sweeps")
    ipfx_sweeps = [to_ipfx_sweep(s) for s in sweeps]
    window = _stim_window(sweeps, ipfx_sweeps)
    if window is None:
        return ProtocolAnalysis(reason="no chirp stimulus window")
    return ProtocolAnalysis(SweepSet(ipfx_sweeps), {}, None, *window)


def _guard(fn: Callable[[Recording], ProtocolAnalysis], rec: Recording) -> ProtocolAnalysis:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fn(rec)
    except Exception as exc:  # one protocol failing must not lose the others
        return ProtocolAnalysis(reason=f"{type(exc).__name__}: {exc}")
    if result.analyzer is not None and result.features is not None:
        _augment_spikes(result)
    return result


def analyze_recording(rec: Recording) -> CellAnalysis:
    """Detect spikes once per sweep for every protocol of the cell."""
    return CellAnalysis(
        cell_id=rec.cell_id,
        long_square=_guard(analyze_long_squares, rec),
        short_square=_guard(analyze_short_squares, rec),
        ramp=_guard(analyze_ramps, rec),
        chirp=_guard(analyze_chirps, rec),
    )


# ---------------------------------------------------------------- per-spike derived features


def _augment_spikes(pa: ProtocolAnalysis) -> None:
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


# ---------------------------------------------------------------- scalar features

AP_FEATURES = (
    "upstroke_downstroke_ratio",
    "threshold_v",
    "trough_deltav",
    "fast_trough_deltav",
    "peak_deltav",
    "trough_slowdeltav",
    "width",
    "width_suprathresh",
    "upstroke",
    "downstroke",
    "postap_slope",
)


def _first_spike(spikes: pd.DataFrame, names: tuple[str, ...], suffix: str) -> dict[str, float]:
    row = spikes.iloc[0]
    return {f"{n}_{suffix}": float(row[n]) for n in names if n in spikes.columns}


def _mean_first_spike(pa: ProtocolAnalysis, names: tuple[str, ...], suffix: str) -> dict:
    """Mean over sweeps of the first spike's features (IPFX `mean_features_first_spike`)."""
    present = [n for n in names if any(n in s.columns for s in pa.features["spikes_set"] if len(s))]
    means = pa.analyzer.mean_features_first_spike(pa.features["spikes_set"], present)
    return {f"{n}_{suffix}": float(v) for n, v in means.items()}


def _sweep_row(features: dict, row: pd.Series) -> tuple[int, pd.DataFrame]:
    idx = int(row.name)
    return idx, features["spikes_set"][idx]


def _isis(spikes: pd.DataFrame) -> np.ndarray:
    return np.diff(spikes["threshold_t"].to_numpy(float))


def _train_features(row: pd.Series, spikes: pd.DataFrame, suffix: str) -> dict[str, float]:
    from ipfx import spike_train_features as strf

    first_isi = row.get("first_isi", np.nan)
    isis = _isis(spikes)
    return {
        f"avg_rate_{suffix}": float(row["avg_rate"]),
        f"latency_{suffix}": float(row.get("latency", np.nan)),
        f"mean_isi_{suffix}": float(row.get("mean_isi", np.nan)),
        f"median_isi_{suffix}": float(row.get("median_isi", np.nan)),
        f"first_isi_inv_{suffix}": 1.0 / first_isi if np.isfinite(first_isi) else np.nan,
        f"adapt_{suffix}": float(row.get("adapt", np.nan)),
        f"isi_cv_{suffix}": float(row.get("isi_cv", np.nan)),
        f"isi_norm_sq_var_{suffix}": float(strf.norm_sq_diff(isis)) if len(isis) > 1 else np.nan,
    }


def _sag_details(
    t: np.ndarray, v: np.ndarray, start: float, end: float, baseline: float, kind: str
) -> dict[str, float]:
    """Sag timing, area and recovery time constant around the peak deflection (our definitions).

    kind "min" (hyperpolarizing) or "max" (depolarizing). Area in mV*s between V and steady state
    on the peak side; tau from an exponential fit of the recovery from peak to step end.
    """
    from scipy.optimize import curve_fit

    i0, i1 = np.searchsorted(t, start), np.searchsorted(t, end)
    seg_t, seg_v = t[i0:i1], v[i0:i1]
    n_ss = max(int(round(0.1 / (t[1] - t[0]))), 1)
    v_ss = float(np.mean(seg_v[-n_ss:]))
    sign = -1.0 if kind == "min" else 1.0
    k_peak = int(np.argmin(seg_v) if kind == "min" else np.argmax(seg_v))
    v_peak = float(seg_v[k_peak])
    excess = np.clip(sign * (seg_v - v_ss), 0.0, None)
    out = {
        "sag_peak_t": float(seg_t[k_peak] - start),
        "sag_area": float(np.sum(excess) * (t[1] - t[0])),
        "sag": (v_peak - v_ss) / (v_peak - baseline) if v_peak != baseline else np.nan,
        "sag_tau": np.nan,
    }
    rec_t, rec_v = seg_t[k_peak:] - seg_t[k_peak], seg_v[k_peak:]
    if len(rec_t) > 10 and abs(v_peak - v_ss) > 0.5:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p, _ = curve_fit(
                    lambda x, a, tau, c: a * np.exp(-x / tau) + c,
                    rec_t[:: max(len(rec_t) // 2000, 1)],
                    rec_v[:: max(len(rec_t) // 2000, 1)],
                    p0=(v_peak - v_ss, 0.05, v_ss),
                    maxfev=2000,
                )
            if 0 < p[1] < (end - start):
                out["sag_tau"] = float(p[1])
        except Exception:
            pass
    return out


def _adapt_ratios(spikes: pd.DataFrame) -> dict[str, float]:
    """Late/early spike ratios in a sweep with >= 5 spikes: 5th spike / 1st (ISI: 4th / 1st)."""
    out = {}
    isis = _isis(spikes)
    out["isi_adapt_ratio"] = isis[3] / isis[0] if len(isis) >= 4 and isis[0] > 0 else np.nan
    for n in ("width", "upstroke", "downstroke", "peak_v", "threshold_v", "fast_trough_v"):
        a, b = spikes[n].iloc[0], spikes[n].iloc[4]
        out[f"{n}_adapt_ratio"] = float(b / a) if a and np.isfinite(a) else np.nan
    out["ahp_delay_ratio_5spike"] = float(np.nanmean(spikes["ahp_delay_ratio"].iloc[:4]))
    return out


# the scalar families measured on long-square sweeps
LONG_SQUARE_FAMILIES = (
    "subthreshold",
    "rheobase_fi",
    "ap_rheo",
    "firing_hero",
    "ap_hero",
    "adaptation",
)


def long_square_scalars(pa: ProtocolAnalysis) -> tuple[dict[str, float], dict[str, str]]:
    """Subthreshold, rheobase/f-I, rheobase AP, hero and adaptation features; reasons by family."""
    out: dict[str, float] = {}
    why: dict[str, str] = {}
    if pa.features is None:
        for fam in LONG_SQUARE_FAMILIES:
            why[fam] = pa.reason or "no long-square analysis"
        return out, why
    f = pa.features
    out["v_baseline"] = float(f.get("v_baseline", np.nan))
    # subthreshold / passive
    if "subthreshold_sweeps" in f:
        for k in ("input_resistance", "tau", "sag", "vm_for_sag"):
            out[k] = float(f.get(k, np.nan))
        sub = f["subthreshold_sweeps"]
        hyper = sub[sub["stim_amp"] < 0]
        if len(hyper):
            levels = np.array([d[0] for d in hyper["peak_deflect"]])
            k_sag = hyper.index[int(np.argmin(np.abs(levels - spa.LongSquareAnalysis.SAG_TARGET)))]
            swp = pa.sweeps.sweeps[k_sag]
            base = float(sub.loc[k_sag, "v_baseline"])
            d = _sag_details(swp.t, swp.v, pa.start, pa.end, base, "min")
            out.update(sag_peak_t=d["sag_peak_t"], sag_area=d["sag_area"], sag_tau=d["sag_tau"])
        else:
            why["subthreshold"] = "no hyperpolarizing subthreshold long square"
        depol = sub[sub["stim_amp"] > 0]
        if len(depol):
            k_dep = depol["stim_amp"].idxmax()
            swp = pa.sweeps.sweeps[k_dep]
            d = _sag_details(
                swp.t, swp.v, pa.start, pa.end, float(sub.loc[k_dep, "v_baseline"]), "max"
            )
            out.update(
                sag_depol=d["sag"], sag_peak_t_depol=d["sag_peak_t"], sag_area_depol=d["sag_area"]
            )
    else:
        why["subthreshold"] = "no subthreshold long square"
    # suprathreshold
    if "rheobase_sweep" not in f:
        reason = f.get("suprathreshold_error") or "no spiking long square"
        for fam in ("rheobase_fi", "ap_rheo", "firing_hero", "ap_hero", "adaptation"):
            why[fam] = reason
        return out, why
    sweeps_tbl = f["sweeps"]
    out["rheobase_i"] = float(f["rheobase_i"])
    out["fi_fit_slope"] = float(f["fi_fit_slope"]) if "fi_fit_slope" in f else np.nan
    out["max_rate"] = float(np.nanmax(sweeps_tbl["avg_rate"].to_numpy(float)))
    _, rheo_spikes = _sweep_row(f, f["rheobase_sweep"])
    rheo_train = _train_features(f["rheobase_sweep"], rheo_spikes, "rheo")
    for k in ("avg_rate_rheo", "latency_rheo", "mean_isi_rheo", "first_isi_inv_rheo"):
        out[k] = rheo_train[k]
    out.update(_first_spike(rheo_spikes, AP_FEATURES, "rheo"))
    out["fast_trough_v_last_rheo"] = float(rheo_spikes["fast_trough_v"].iloc[-1])
    out["adp_v_last_rheo"] = (
        float(rheo_spikes["adp_v"].iloc[-1]) if "adp_v" in rheo_spikes else np.nan
    )
    hero = f.get("hero_sweep")
    if hero is not None and len(hero):
        _, hero_spikes = _sweep_row(f, hero)
        out["stim_amp_hero"] = float(hero["stim_amp"])
        hero_train = _train_features(hero, hero_spikes, "hero")
        for k in hero_train:
            if k in SCALAR_FEATURES:
                out[k] = hero_train[k]
        out.update(_first_spike(hero_spikes, AP_FEATURES, "hero"))
        out["ahp_delay_ratio_hero"] = float(np.nanmean(hero_spikes["ahp_delay_ratio"]))
    else:
        why["firing_hero"] = why["ap_hero"] = "no hero sweep"
    # adaptation across depolarizing spiking sweeps
    spiking = f["spiking_sweeps"]
    spiking = spiking[spiking["stim_amp"] > 0]
    per_sweep = [
        _train_features(row, f["spikes_set"][int(idx)], "x") for idx, row in spiking.iterrows()
    ]
    for n in ("adapt", "isi_cv", "isi_norm_sq_var"):
        vals = np.array([p[f"{n}_x"] for p in per_sweep], float)
        ok = np.isfinite(vals)
        out[f"{n}_mean"] = float(vals[ok].mean()) if ok.any() else np.nan
        out[f"{n}_max"] = float(vals[ok].max()) if ok.any() else np.nan
    n_spk = np.array([len(f["spikes_set"][int(i)]) for i in spiking.index])
    if (n_spk >= 5).any():
        cand = spiking[n_spk >= 5]
        k5 = int(cand["stim_amp"].idxmin())
        out.update(_adapt_ratios(f["spikes_set"][k5]))
    return out, why


def short_square_scalars(pa: ProtocolAnalysis) -> tuple[dict[str, float], dict[str, str]]:
    """First-AP features of short squares (mean over spiking sweeps, as IPFX's cell record)."""
    if pa.features is None:
        return {}, {"ap_short_square": pa.reason or "no short-square analysis"}
    names = tuple(n for n in AP_FEATURES if n not in ("trough_deltav", "trough_slowdeltav"))
    out = _mean_first_spike(pa, names, "short_square")
    out["threshold_i_short_square"] = float(pa.features["stimulus_amplitude"])
    return out, {}


def ramp_scalars(pa: ProtocolAnalysis) -> tuple[dict[str, float], dict[str, str]]:
    """First-AP features on ramps (mean over spiking ramps), threshold current included."""
    if pa.features is None:
        return {}, {"ap_ramp": pa.reason or "no ramp analysis"}
    names = tuple(n for n in AP_FEATURES if n != "trough_slowdeltav") + ("threshold_i",)
    out = _mean_first_spike(pa, names, "ramp")
    return out, {}


def chirp_scalars(pa: ProtocolAnalysis) -> tuple[dict[str, float], dict[str, str]]:
    """Impedance-profile features from IPFX's chirp amplitude/phase (GOhm = mV/pA)."""
    if pa.features is None:
        return {}, {"chirp": pa.reason or "no chirp sweeps"}
    from ipfx.chirp import chirp_amp_phase

    amp, phase, freq = chirp_amp_phase(pa.sweeps, start=pa.start, end=pa.end)
    if amp is None or len(amp) < 3:
        return {}, {"chirp": "chirp response too short or truncated"}
    k_peak = int(np.argmax(amp))
    low = float(amp[0])
    above = np.flatnonzero(amp >= amp[k_peak] / np.sqrt(2))
    crossing = np.flatnonzero(np.diff(np.sign(phase)) < 0)
    df = float(freq[1] - freq[0])
    return {
        "peak_ratio_chirp": float(amp[k_peak] / low),
        "peak_freq_chirp": float(freq[k_peak]),
        "3db_freq_chirp": float(freq[above[-1]]),
        "sync_freq_chirp": float(freq[crossing[0]]) if crossing.size else np.nan,
        "peak_impedance_chirp": float(amp[k_peak]),
        "low_freq_impedance_chirp": low,
        "phase_peak_chirp": float(phase[k_peak]),
        "phase_low_chirp": float(phase[0]),
        "total_inductive_phase_chirp": float(np.sum(np.clip(phase, 0, None)) * df),
    }, {}


def scalar_features(analysis: CellAnalysis) -> tuple[dict[str, float], dict[str, str]]:
    """All canonical scalar features (NaN where absent) and a reason per missing family."""
    values: dict[str, float] = {}
    reasons: dict[str, str] = {}
    for fn, pa in (
        (long_square_scalars, analysis.long_square),
        (short_square_scalars, analysis.short_square),
        (ramp_scalars, analysis.ramp),
        (chirp_scalars, analysis.chirp),
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                v, r = fn(pa)
        except Exception as exc:  # one protocol's failure must not lose the others
            v, r = {}, {fam: f"{type(exc).__name__}: {exc}" for fam in _families_of(fn)}
        values.update(v)
        for fam, reason in r.items():
            reasons.setdefault(fam, reason)
    scalars = {name: _as_float(values.get(name)) for name in SCALAR_FEATURES}
    return scalars, reasons


def _families_of(fn: Callable) -> tuple[str, ...]:
    return {
        long_square_scalars: LONG_SQUARE_FAMILIES,
        short_square_scalars: ("ap_short_square",),
        ramp_scalars: ("ap_ramp",),
        chirp_scalars: ("chirp",),
    }[fn]


def _as_float(x: object) -> float:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return float("nan")
    return x if np.isfinite(x) else float("nan")


# ---------------------------------------------------------------- the one pass


def extract_features(rec: Recording) -> CellFeatures:
    """One pass over a cell: detect spikes once per sweep, then scalar features and vectors."""
    analysis = analyze_recording(rec)
    return features_from_analysis(analysis)


def features_from_analysis(analysis: CellAnalysis) -> CellFeatures:
    """Scalar features + feature vectors + per-family status from one shared analysis."""
    scalars, s_reasons = scalar_features(analysis)
    vectors, v_status, v_reasons = vec.feature_vectors(analysis)
    return _assemble(analysis.cell_id, scalars, s_reasons, vectors, v_status, v_reasons)


def extract_features_separately(rec: Recording) -> CellFeatures:
    """Reference two-pass path: the scalar features and the feature vectors each run their own
    IPFX analysis (spikes detected twice, as running IPFX's two pipelines does). Same results
    as `extract_features`; kept for the benchmark and the equivalence test."""
    scalars, s_reasons = scalar_features(analyze_recording(rec))
    vectors, v_status, v_reasons = vec.feature_vectors(analyze_recording(rec))
    return _assemble(rec.cell_id, scalars, s_reasons, vectors, v_status, v_reasons)


def _assemble(
    cell_id: str,
    scalars: dict[str, float],
    s_reasons: dict[str, str],
    vectors: dict[str, np.ndarray],
    v_status: dict[str, str],
    v_reasons: dict[str, str],
) -> CellFeatures:
    status: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for fam in SCALAR_FAMILIES:
        present = any(np.isfinite(scalars[c]) for c in fam.columns)
        status[fam.name] = OK if present else MISSING
        if not present:
            reasons[fam.name] = s_reasons.get(
                fam.name, "no feature of this family could be computed"
            )
    for fam in VECTOR_FAMILIES:
        status[fam.name] = v_status[fam.name]
        if fam.name in v_reasons:
            reasons[fam.name] = v_reasons[fam.name]
    assert set(status) == set(FAMILIES)
    return CellFeatures(cell_id, scalars, vectors, status, reasons)
