"""Canonical scalar features (names and units of the Lee et al. 2023 table) from a cell's
shared IPFX analysis; a family that cannot be measured is NaN with a reason."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
from ipfx import stimulus_protocol_analysis as spa

from .analysis import CellAnalysis, ProtocolAnalysis
from .families import SCALAR_FEATURES

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
    if "subthreshold_sweeps" in f:
        out.update(_subthreshold(pa, why))
    else:
        why["subthreshold"] = "no subthreshold long square"
    if "rheobase_sweep" not in f:
        reason = f.get("suprathreshold_error") or "no spiking long square"
        for fam in ("rheobase_fi", "ap_rheo", "firing_hero", "ap_hero", "adaptation"):
            why[fam] = reason
        return out, why
    out.update(_rheobase(f))
    hero = f.get("hero_sweep")
    if hero is not None and len(hero):
        out.update(_hero(f, hero))
    else:
        why["firing_hero"] = why["ap_hero"] = "no hero sweep"
    out.update(_adaptation(f))
    return out, why


def _subthreshold(pa: ProtocolAnalysis, why: dict[str, str]) -> dict[str, float]:
    """Passive features, sag details of the hyperpolarizing sweep nearest IPFX's sag target
    and of the largest depolarizing subthreshold sweep (a missing one noted in `why`)."""
    f = pa.features
    out = {k: float(f.get(k, np.nan)) for k in ("input_resistance", "tau", "sag", "vm_for_sag")}
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
        base = float(sub.loc[k_dep, "v_baseline"])
        d = _sag_details(swp.t, swp.v, pa.start, pa.end, base, "max")
        out.update(
            sag_depol=d["sag"], sag_peak_t_depol=d["sag_peak_t"], sag_area_depol=d["sag_area"]
        )
    return out


def _rheobase(f: dict) -> dict[str, float]:
    """Rheobase, f-I slope, maximum rate and the rheobase sweep's train and first AP."""
    out = {"rheobase_i": float(f["rheobase_i"])}
    out["fi_fit_slope"] = float(f["fi_fit_slope"]) if "fi_fit_slope" in f else np.nan
    out["max_rate"] = float(np.nanmax(f["sweeps"]["avg_rate"].to_numpy(float)))
    _, rheo_spikes = _sweep_row(f, f["rheobase_sweep"])
    rheo_train = _train_features(f["rheobase_sweep"], rheo_spikes, "rheo")
    for k in ("avg_rate_rheo", "latency_rheo", "mean_isi_rheo", "first_isi_inv_rheo"):
        out[k] = rheo_train[k]
    out.update(_first_spike(rheo_spikes, AP_FEATURES, "rheo"))
    out["fast_trough_v_last_rheo"] = float(rheo_spikes["fast_trough_v"].iloc[-1])
    out["adp_v_last_rheo"] = (
        float(rheo_spikes["adp_v"].iloc[-1]) if "adp_v" in rheo_spikes else np.nan
    )
    return out


def _hero(f: dict, hero) -> dict[str, float]:
    """The hero sweep's amplitude, train and first AP."""
    _, hero_spikes = _sweep_row(f, hero)
    out = {"stim_amp_hero": float(hero["stim_amp"])}
    hero_train = _train_features(hero, hero_spikes, "hero")
    out.update({k: v for k, v in hero_train.items() if k in SCALAR_FEATURES})
    out.update(_first_spike(hero_spikes, AP_FEATURES, "hero"))
    out["ahp_delay_ratio_hero"] = float(np.nanmean(hero_spikes["ahp_delay_ratio"]))
    return out


def _adaptation(f: dict) -> dict[str, float]:
    """Adaptation across the depolarizing spiking sweeps (mean and max of each train
    measure) and the spike ratios of the weakest sweep with at least 5 spikes."""
    out: dict[str, float] = {}
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
    return out


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
