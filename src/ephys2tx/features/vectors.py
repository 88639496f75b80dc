"""IPFX feature vectors from a shared `CellAnalysis` (no second spike detection).

Each family follows IPFX's `run_feature_vector_extraction` (ipfx 2.1.2): same helper functions,
same target amplitudes (-90..-10 pA hyperpolarizing steps, rheobase +0..+100 pA in 20 pA
steps with a 10 pA shift), 3 ms AP windows at 50 kHz. `inst_freq_norm` is inst_freq scaled
per step to its maximum (as drcme does for the Gouwens et al. 2020 sPCA). Where IPFX would
fill a missing piece with zeros we use NaN and record why.
"""

from __future__ import annotations

import warnings

import numpy as np
from ipfx import feature_vectors as fv

from .analysis import MISSING, OK, PARTIAL, CellAnalysis, ProtocolAnalysis
from .families import VECTOR_FAMILIES

HYPERPOL_TARGETS = [-90, -70, -50, -30, -10]  # pA, IPFX step_subthresh
SUPRA_TARGETS = np.arange(0, 120, 20)  # pA above rheobase, IPFX psth / inst_freq / spiking_*
SUPRA_SHIFT = 10  # pA, IPFX
AP_WINDOW = 0.003  # s
TARGET_RATE = 50000  # Hz
EXTEND = 0.2  # s, IPFX extend_duration of subthreshold vectors
STEP_BINS = 50  # inst_freq bins per step (1 s / 20 ms)
SPIKE_FEATURES = ("upstroke_downstroke_ratio", "peak_v", "fast_trough_v", "threshold_v", "width")


class Missing(Exception):
    """A family that the cell's protocol cannot give; the message is the recorded reason."""


def _lsq(pa: ProtocolAnalysis) -> tuple[dict, float, float]:
    if pa.features is None:
        raise Missing(pa.reason or "no long-square analysis")
    return pa.features, float(pa.start), float(pa.end)


def _check_margins(pa: ProtocolAnalysis, start: float, end: float) -> None:
    """Subthreshold vectors take 0.2 s either side of the step (IPFX's extend_duration)."""
    t = pa.sweeps.sweeps[0].t
    if start - EXTEND < t[0] or end + EXTEND > t[-1]:
        raise Missing(
            f"needs {EXTEND} s of recording before and after the step; this one has "
            f"{start - t[0]:.3f} s before and {t[-1] - end:.3f} s after"
        )


def _hyperpol_sweeps(pa: ProtocolAnalysis) -> tuple[dict, list, float, float]:
    """IPFX's hyperpolarizing subthreshold sweeps by amplitude, their deflections, the step."""
    f, start, end = _lsq(pa)
    _check_margins(pa, start, end)
    if "subthreshold_sweeps" not in f:
        raise Missing("no subthreshold long square")
    amp_sweeps, deflect = fv.identify_subthreshold_hyperpol_with_amplitudes(f, pa.sweeps)
    if not amp_sweeps:
        raise Missing("no hyperpolarizing subthreshold long square")
    return amp_sweeps, deflect, start, end


def _step_subthresh(pa: ProtocolAnalysis) -> np.ndarray:
    amp_sweeps, _, start, end = _hyperpol_sweeps(pa)
    return fv.step_subthreshold(amp_sweeps, HYPERPOL_TARGETS, start, end, amp_tolerance=5)


def _subthresh_norm(pa: ProtocolAnalysis) -> np.ndarray:
    amp_sweeps, deflect, start, end = _hyperpol_sweeps(pa)
    return fv.subthresh_norm(amp_sweeps, deflect, start, end)


def _subthresh_depol_norm(pa: ProtocolAnalysis) -> np.ndarray:
    f, start, end = _lsq(pa)
    _check_margins(pa, start, end)
    amp_sweeps, deflect = fv.identify_subthreshold_depol_with_amplitudes(f, pa.sweeps)
    if not amp_sweeps:
        raise Missing("no depolarizing subthreshold long square")
    return fv.subthresh_depol_norm(
        amp_sweeps, deflect, np.round(start, decimals=3), np.round(end, decimals=3)
    )


def _isi_shape(pa: ProtocolAnalysis) -> np.ndarray:
    f, start, end = _lsq(pa)
    if "rheobase_sweep" not in f:
        raise Missing(f.get("suprathreshold_error") or "no spiking long square")
    swp, info = fv.identify_sweep_for_isi_shape(pa.sweeps, f, end - start)
    return fv.isi_shape(swp, info, end)


def _ap_part(sweeps: list, infos: list, skip_clipped: bool, n_points: int) -> np.ndarray | None:
    """Average first AP over sweeps (IPFX); None where IPFX would return zeros."""
    if skip_clipped:
        keep = [k for k, si in enumerate(infos) if not si["clipped"].values[0]]
        sweeps, infos = [sweeps[k] for k in keep], [infos[k] for k in keep]
    if not sweeps:
        return None
    v, _ = fv.first_ap_vectors(
        sweeps, infos, target_sampling_rate=TARGET_RATE, window_length=AP_WINDOW
    )
    if len(v) != n_points:
        rate = 1.0 / (sweeps[0].t[1] - sweeps[0].t[0])
        raise Missing(
            f"first-AP window has {len(v)} points at {rate:.0f} Hz, IPFX needs {n_points}"
        )
    return v


def _protocol_ap(pa: ProtocolAnalysis, sweeps_key: str, n_points: int) -> np.ndarray | None:
    """Average first AP of a protocol's sweeps listed under `sweeps_key` (clipped skipped)."""
    if pa.features is None:
        return None
    idx = list(pa.features[sweeps_key].index)
    sweeps = [pa.sweeps.sweeps[k] for k in idx]
    return _ap_part(sweeps, [pa.features["spikes_set"][k] for k in idx], True, n_points)


def _first_ap(analysis: CellAnalysis) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """first_ap_v / first_ap_dv: [short square | rheobase long square | ramp] pieces."""
    n = int(TARGET_RATE * AP_WINDOW)
    lsq = analysis.long_square
    f, _, _ = _lsq(lsq)
    if "rheobase_sweep" not in f:
        raise Missing(f.get("suprathreshold_error") or "no spiking long square")
    rheo = int(f["rheobase_sweep"].name)
    lsq_v = _ap_part([lsq.sweeps.sweeps[rheo]], [f["spikes_set"][rheo]], False, n)
    parts, gaps = [], []
    ssq, ramp = analysis.short_square, analysis.ramp
    ssq_v = _protocol_ap(ssq, "common_amp_sweeps", n)
    if ssq_v is None:
        gaps.append(f"short square: {ssq.reason or 'only clipped spikes'}")
    ramp_v = _protocol_ap(ramp, "spiking_sweeps", n)
    if ramp_v is None:
        gaps.append(f"ramp: {ramp.reason or 'only clipped spikes'}")
    nan = np.full(n, np.nan)
    for p in (ssq_v, lsq_v, ramp_v):
        parts.append(p if p is not None else nan)
    v = np.hstack(parts)
    dv = np.hstack([np.diff(p) for p in parts])
    return v, dv, gaps


def _supra_info(pa: ProtocolAnalysis) -> tuple[list, float, float]:
    f, start, end = _lsq(pa)
    if "rheobase_sweep" not in f:
        raise Missing(f.get("suprathreshold_error") or "no spiking long square")
    try:
        info = fv.identify_suprathreshold_spike_info(f, SUPRA_TARGETS, shift=SUPRA_SHIFT)
    except Exception as exc:  # IPFX: fewer than two sweeps at rheobase + 0..100 pA
        raise Missing(str(exc)) from exc
    return info, start, end


def inst_freq_norm(inst_freq: np.ndarray, step_bins: int = STEP_BINS) -> np.ndarray:
    """inst_freq with each step's block divided by its maximum (a zero maximum stays 1)."""
    out = np.asarray(inst_freq, float).copy()
    for k in range(len(out) // step_bins):
        block = out[k * step_bins : (k + 1) * step_bins]
        peak = np.nanmax(block) if np.isfinite(block).any() else np.nan
        block /= peak if peak and np.isfinite(peak) else 1.0
    return out


def feature_vectors(
    analysis: CellAnalysis,
) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, str]]:
    """All IPFX vector families: arrays (NaN when missing), status and reason per family."""
    out: dict[str, np.ndarray] = {}
    status: dict[str, str] = {}
    reason: dict[str, str] = {}
    lsq = analysis.long_square

    def run(name: str, fn) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[name] = np.asarray(fn(), dtype=float)
            status[name] = OK
        except Missing as exc:
            reason[name] = str(exc)
        except Exception as exc:  # IPFX failing on odd data: the family is missing, not the cell
            reason[name] = f"{type(exc).__name__}: {exc}"

    run("step_subthresh", lambda: _step_subthresh(lsq))
    run("subthresh_norm", lambda: _subthresh_norm(lsq))
    run("subthresh_depol_norm", lambda: _subthresh_depol_norm(lsq))
    run("isi_shape", lambda: _isi_shape(lsq))

    try:
        v, dv, gaps = _first_ap(analysis)
        out["first_ap_v"], out["first_ap_dv"] = v, dv
        for name in ("first_ap_v", "first_ap_dv"):
            status[name] = PARTIAL if gaps else OK
            if gaps:
                reason[name] = "NaN piece(s): " + "; ".join(gaps)
    except Exception as exc:
        msg = str(exc) if isinstance(exc, Missing) else f"{type(exc).__name__}: {exc}"
        reason["first_ap_v"] = reason["first_ap_dv"] = msg

    try:
        info, start, end = _supra_info(lsq)
        run("psth", lambda: fv.psth_vector(info, start, end))
        run("inst_freq", lambda: fv.inst_freq_vector(info, start, end))
        for feat in SPIKE_FEATURES:
            run(
                f"spiking_{feat}", lambda feat=feat: fv.spike_feature_vector(feat, info, start, end)
            )
        if "inst_freq" in out:
            run("inst_freq_norm", lambda: inst_freq_norm(out["inst_freq"]))
        else:
            reason["inst_freq_norm"] = reason.get("inst_freq", "no inst_freq")
    except Missing as exc:
        for name in ("psth", "inst_freq", "inst_freq_norm") + tuple(
            f"spiking_{f}" for f in SPIKE_FEATURES
        ):
            reason[name] = str(exc)

    for fam in VECTOR_FAMILIES:
        got = out.get(fam.name)
        if got is not None and got.shape != (fam.length,):
            reason[fam.name] = (
                f"IPFX gave {got.size} values, not {fam.length}; lengths are defined for 1 s "
                f"long squares at 50 kHz (this cell: {_protocol_note(lsq)})"
            )
            got = None
        if got is None:
            out[fam.name] = np.full(fam.length, np.nan)
            status[fam.name] = MISSING
            reason.setdefault(fam.name, "not computed")
        elif not np.isfinite(got).any():
            status[fam.name] = MISSING
            reason.setdefault(fam.name, "IPFX returned no finite value")
    return out, status, reason


def _protocol_note(pa: ProtocolAnalysis) -> str:
    if pa.sweeps is None or pa.start is None:
        return "no long squares"
    t = pa.sweeps.sweeps[0].t
    return f"steps of {pa.end - pa.start:.3f} s at {1.0 / (t[1] - t[0]):.0f} Hz"
