"""One-pass IPFX extraction: lengths, agreement with IPFX called directly, NaN + mask, batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ephys2tx.recordings.sweeps import LONG_SQUARE, RAMP, SHORT_SQUARE, Recording, Sweep

RATE = 50_000.0  # Hz, Allen-like
SIM_DT = 1e-4  # s, integration step before upsampling to RATE
T_START, T_END, T_TOTAL = 0.2, 1.2, 1.6  # s: 1 s steps, 0.4 s after


# ------------------------------------------------------------------ a small simulated cell


def _simulate(current, p: dict, rng: np.random.Generator) -> np.ndarray:
    """Leaky integrate-and-fire with sag (h-like) and spike-rate adaptation, plus an AP shape.

    `current(t)` in pA; returns voltage (mV) at RATE. Subthreshold dynamics are integrated at
    10 kHz, upsampled, then a stereotyped AP (cosine rise to the peak, fall to the fast trough)
    is written at each spike.
    """
    n_sim = int(round(T_TOTAL / SIM_DT))
    t_sim = np.arange(n_sim) * SIM_DT
    i_sim = current(t_sim)
    v = np.empty(n_sim)
    vm, q, w = p["v_rest"], 0.0, 0.0
    n_ap = int(round(p["ap_dur"] / SIM_DT))
    spikes, hold = [], 0
    for k in range(n_sim):
        if hold:
            hold -= 1
            vm = p["v_trough"]
        else:
            dq = ((max(p["v_rest"] - vm, 0.0)) - q) / p["tau_h"]
            dv = (p["v_rest"] - vm + p["r"] * (i_sim[k] - w) + p["k_h"] * q) / p["tau"]
            vm += SIM_DT * dv
            q += SIM_DT * dq
            if vm >= p["v_thr"]:
                spikes.append(t_sim[k])
                w += p["b"]
                hold = n_ap
                vm = p["v_trough"]
        w -= SIM_DT * w / p["tau_w"]
        v[k] = vm
    t = np.arange(int(round(T_TOTAL * RATE))) / RATE
    out = np.interp(t, t_sim, v)
    rise, fall = p["ap_rise"], p["ap_dur"] - p["ap_rise"]
    for ts in spikes:
        i0 = int(round(ts * RATE))
        n_r, n_f = int(round(rise * RATE)), int(round(fall * RATE))
        r = np.arange(n_r) / n_r
        f = np.arange(n_f) / n_f
        up = p["v_thr"] + (p["v_peak"] - p["v_thr"]) * (1 - np.cos(np.pi * r)) / 2
        down = p["v_trough"] + (p["v_peak"] - p["v_trough"]) * (1 + np.cos(np.pi * f)) / 2
        seg = np.concatenate([up, down])[: len(out) - i0]
        out[i0 : i0 + len(seg)] = seg
    return out + rng.normal(0, 0.02, len(out))


CELL = dict(
    v_rest=-65.0, r=0.2, tau=0.015, v_thr=-45.0, v_peak=25.0, v_trough=-58.0,
    ap_rise=0.0004, ap_dur=0.0016, b=15.0, tau_w=0.15, k_h=0.35, tau_h=0.08,
)  # fmt: skip


def make_recording(
    cell_id: str = "sim1",
    params: dict | None = None,
    seed: int = 0,
    long_amps: tuple = tuple(range(-110, 271, 20)),
    short_amps: tuple = (400, 500, 600, 700, 700, 700),
    ramp: bool = True,
) -> Recording:
    """Allen-like protocol on the simulated cell: 1 s long squares, 3 ms short squares, ramp."""
    p = {**CELL, **(params or {})}
    rng = np.random.default_rng(seed)
    sweeps, n = [], 0

    def add(kind, fn, amp, start, end):
        nonlocal n
        v = _simulate(fn, p, rng)
        t = np.arange(len(v)) / RATE
        sweeps.append(Sweep(n, v, fn(t), RATE, kind, float(amp), start, end))
        n += 1

    for amp in long_amps:
        add(LONG_SQUARE, lambda t, a=amp: np.where((t >= T_START) & (t < T_END), a, 0.0), amp,
            T_START, T_END)  # fmt: skip
    for amp in short_amps:
        add(SHORT_SQUARE, lambda t, a=amp: np.where((t >= T_START) & (t < T_START + 0.003), a, 0.0),
            amp, T_START, T_START + 0.003)  # fmt: skip
    if ramp:
        slope = 400.0  # pA/s
        add(RAMP, lambda t: np.where((t >= T_START) & (t < T_END), slope * (t - T_START), 0.0),
            slope, T_START, T_END)  # fmt: skip
    return Recording(Path(f"{cell_id}.pkl"), cell_id, sweeps, species="mouse")
