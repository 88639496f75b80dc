"""The SYNTHETIC cell's membrane: a single-compartment Hodgkin-Huxley-type model.

Units: mV, ms, mS/cm2, uA/cm2, uF/cm2. Transient Na, delayed-rectifier K (Kv3-like when fast
and high-threshold), D-type K (slowly inactivating: late spiking), M-type K and a Ca-activated
AHP (adaptation), Ih (sag, rebound), T-type Ca (rebound) and an Ornstein-Uhlenbeck noise
current.

Every sample is simulated at 50 kHz: an exponential-Euler step over voltage-indexed rate
tables, compiled by numba, runs all sweeps of a call in one compiled loop. (A numpy loop over
samples vectorised over ~25 sweeps still pays ~40 numpy calls per sample, about 50x slower.)
"""

from __future__ import annotations

import math
from dataclasses import fields

import numpy as np
from numba import njit

from .params import CellParams

SAMPLING_RATE = 50_000.0  # Hz, as the Allen Patch-seq recordings
DT_MS = 1000.0 / SAMPLING_RATE


def _as_vector(p: CellParams) -> np.ndarray:
    return np.array([getattr(p, f.name) for f in fields(p)], dtype=np.float64)


@njit(cache=True)
def _exprel(x):
    """x / (1 - exp(-x)), finite at 0 (Hodgkin-Huxley alpha rates)."""
    if abs(x) < 1e-6:
        return 1.0 + x / 2.0
    return x / (1.0 - math.exp(-x))


@njit(cache=True)
def _gates_inf_tau(v, p):
    """Steady state and time constants (ms) of h, n, a, b, w, q, hT."""
    phi, k_shift, na_shift = p[5], p[6], p[17]
    tau_d_inact, tau_m_max, tau_h = p[8], p[10], p[12]
    # Na inactivation (Wang-Buzsaki kinetics)
    vh = v - na_shift  # inactivation moves with activation, keeping Na available
    ah = 0.07 * math.exp(-(vh + 58.0) / 20.0)
    bh = 1.0 / (1.0 + math.exp(-(vh + 28.0) / 10.0))
    h_inf, h_tau = ah / (ah + bh), 1.0 / (phi * (ah + bh))
    # delayed-rectifier K; shifted up for Kv3-like
    vk = v - k_shift
    an = 0.1 * _exprel((vk + 34.0) / 10.0)
    bn = 0.125 * math.exp(-(vk + 44.0) / 80.0)
    n_inf, n_tau = an / (an + bn), 1.0 / (phi * (an + bn))
    # D-type K (Golomb et al. 2007 kinetics), slow inactivation sets the delay
    a_inf = 1.0 / (1.0 + math.exp(-(v + 50.0) / 20.0))
    b_inf = 1.0 / (1.0 + math.exp((v + 70.0) / 6.0))
    # M-type K
    w_inf = 1.0 / (1.0 + math.exp(-(v + 35.0) / 10.0))
    w_tau = tau_m_max / (3.3 * math.exp((v + 35.0) / 20.0) + math.exp(-(v + 35.0) / 20.0))
    # Ih, activated by hyperpolarisation
    q_inf = 1.0 / (1.0 + math.exp((v + 82.0) / 8.0))
    # T-type Ca inactivation
    t_inf = 1.0 / (1.0 + math.exp((v + 81.0) / 4.0))
    t_tau = 30.0 + 200.0 / (1.0 + math.exp((v + 60.0) / 5.0))
    return (
        h_inf, h_tau, n_inf, n_tau, a_inf, 0.5, b_inf, tau_d_inact,
        w_inf, w_tau, q_inf, tau_h, t_inf, t_tau,
    )  # fmt: skip


# Rate table: exp() per gate per sample dominated the run time; a fine voltage grid with
# linear interpolation is indistinguishable at 0.01 mV and several times faster.
_V_MIN, _V_MAX, _DV = -160.0, 100.0, 0.01


@njit(cache=True)
def _rate_table(p, dt):
    """Per voltage: m_inf, mT_inf, Ca influx, then (inf, exp(-dt/tau)) of the 7 gates."""
    na_shift = p[17]
    n_rows = int(round((_V_MAX - _V_MIN) / _DV)) + 1
    table = np.empty((n_rows, 17))
    for j in range(n_rows):
        v = _V_MIN + j * _DV
        vm = v - na_shift
        am = _exprel((vm + 35.0) / 10.0)
        bm = 4.0 * math.exp(-(vm + 60.0) / 18.0)
        table[j, 0] = am / (am + bm)
        table[j, 1] = 1.0 / (1.0 + math.exp(-(v + 57.0) / 6.2))
        table[j, 2] = 1.0 / (1.0 + math.exp(-(v + 20.0) / 5.0))
        gi = _gates_inf_tau(v, p)
        for k in range(7):
            table[j, 3 + 2 * k] = gi[2 * k]
            table[j, 4 + 2 * k] = math.exp(-dt / gi[2 * k + 1])
    return table


@njit(cache=True, inline="always")
def _lerp(table, j, f, c):
    return table[j, c] + f * (table[j + 1, c] - table[j, c])


@njit(cache=True, inline="always")
def _relax(table, j, f, c, x):
    """Exponential-Euler step of a gate towards its steady state (columns c, c + 1)."""
    inf = _lerp(table, j, f, c)
    return inf + (x - inf) * _lerp(table, j, f, c + 1)


@njit(cache=True)
def _rest_state(p, table, dt, n_steps):
    """Settle the noiseless cell at zero current; returns [v, h, n, a, b, w, q, hT, ca]."""
    zero = np.zeros((1, n_steps))
    noise = np.zeros((1, n_steps), dtype=np.float32)
    state = np.zeros(9)
    v = p[2]
    g = _gates_inf_tau(v, p)
    state[0] = v
    for k in range(7):
        state[k + 1] = g[2 * k]
    out = np.empty((1, n_steps), dtype=np.float32)
    return _run(zero, noise, p, table, 1.0, dt, state, out)


@njit(cache=True)
def _run(i_pa, noise, p, table, area, dt, state0, out):
    """Integrate each row of i_pa (pA) from state0; writes membrane voltage (mV) to out.

    Gates use exponential Euler; voltage uses the exact update of the linearised membrane
    equation over dt (stable for stiff conductances). Returns the final state of the last row.
    """
    tau_l, e_l, g_na, g_kdr = p[1], p[2], p[3], p[4]
    g_d, g_m, g_h, g_t = p[7], p[9], p[11], p[13]
    noise_pa, noise_tau = p[14], p[15]
    g_ahp, tau_ahp = p[18], p[19]
    g_l = 1.0 / tau_l
    e_na, e_k, e_h, e_ca = 55.0, -90.0, -30.0, 120.0
    to_density = 1e-6 / area  # pA -> uA/cm2
    n_rows = table.shape[0]
    inv_dv = 1.0 / _DV
    ca_decay = math.exp(-dt / tau_ahp)
    ou_decay = math.exp(-dt / noise_tau)
    ou_kick = noise_pa * math.sqrt(1.0 - ou_decay * ou_decay) * to_density
    state = state0.copy()
    for s in range(i_pa.shape[0]):
        v, h, n, a = state0[0], state0[1], state0[2], state0[3]
        b, w, q, ht, ca = state0[4], state0[5], state0[6], state0[7], state0[8]
        ou = 0.0
        for k in range(i_pa.shape[1]):
            ou = ou * ou_decay + ou_kick * noise[s, k]
            # all voltage-dependent rates from the table, linearly interpolated
            x = (v - _V_MIN) * inv_dv
            x = min(max(x, 0.0), n_rows - 2.0)
            j = int(x)
            f = x - j
            m = _lerp(table, j, f, 0)
            mt = _lerp(table, j, f, 1)
            gna = g_na * m * m * m * h
            gk = g_kdr * n * n * n * n
            gd = g_d * a * a * a * b
            gm = g_m * w
            gh = g_h * q
            gt = g_t * mt * mt * ht
            gahp = g_ahp * ca / (ca + 5.0)
            g_tot = g_l + gna + gk + gd + gm + gh + gt + gahp
            i_in = i_pa[s, k] * to_density + ou
            v_inf = (
                g_l * e_l + gna * e_na + (gk + gd + gm + gahp) * e_k + gh * e_h + gt * e_ca + i_in
            ) / g_tot
            v = v_inf + (v - v_inf) * math.exp(-dt * g_tot)  # C = 1 uF/cm2
            x = (v - _V_MIN) * inv_dv
            x = min(max(x, 0.0), n_rows - 2.0)
            j = int(x)
            f = x - j
            h = _relax(table, j, f, 3, h)
            n = _relax(table, j, f, 5, n)
            a = _relax(table, j, f, 7, a)
            b = _relax(table, j, f, 9, b)
            w = _relax(table, j, f, 11, w)
            q = _relax(table, j, f, 13, q)
            ht = _relax(table, j, f, 15, ht)
            # Ca enters only near the spike peak (high-voltage-activated), decays slowly
            ca = ca * ca_decay + _lerp(table, j, f, 2) * dt
            out[s, k] = v
        state[0], state[1], state[2], state[3] = v, h, n, a
        state[4], state[5], state[6], state[7], state[8] = b, w, q, ht, ca
    return state


class Cell:
    """A parameterised cell plus its resting state, to simulate sweeps from rest."""

    def __init__(self, params: CellParams, rng: np.random.Generator):
        self.params = params
        self.rng = rng
        self.vector = _as_vector(params)
        self.table = _rate_table(self.vector, DT_MS)
        self.rest = _rest_state(self.vector, self.table, DT_MS, round(1000.0 / DT_MS))
        self.area = self._calibrated_area()

    def _calibrated_area(self) -> float:
        """Membrane area (cm2) giving the target steady-state input resistance.

        The cell's response depends only on current density, so one small noiseless
        hyperpolarising step at unit area gives the specific resistance (kOhm cm2).
        """
        density = -4.0 / self.params.tau_ms  # uA/cm2, ~ -4 mV passive deflection
        n = round(0.8 * SAMPLING_RATE)
        i = np.full((1, n), density * 1e6)  # pA at 1 cm2
        out = np.empty((1, n), dtype=np.float32)
        _run(i, np.zeros((1, n), np.float32), self.vector, self.table, 1.0, DT_MS, self.rest, out)
        r_specific = (float(out[0, -1]) - self.rest[0]) / density  # kOhm cm2
        return r_specific * 1e3 / (self.params.rin_mohm * 1e6)

    def run(self, currents: list[np.ndarray], noisy: bool = True) -> list[np.ndarray]:
        """Voltage traces (mV) for equal-length current traces (pA), one noise draw each."""
        i = np.stack(currents)
        noise = (
            self.rng.standard_normal(i.shape, dtype=np.float32)
            if noisy
            else np.zeros(i.shape, dtype=np.float32)
        )
        out = np.empty(i.shape, dtype=np.float32)
        _run(i, noise, self.vector, self.table, self.area, DT_MS, self.rest, out)
        if noisy:  # recording noise
            out += self.params.v_noise_mv * self.rng.standard_normal(out.shape, dtype=np.float32)
        v = out.astype(np.float64)
        return list(v)
