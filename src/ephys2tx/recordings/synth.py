"""SYNTHETIC interneurons: conductance-based cells recorded with the Allen Patch-seq protocol.

No Allen Patch-seq NWB file is available offline, so tests and the offline demo use these
simulated cells instead. Each cell is a single-compartment Hodgkin-Huxley-type model (units:
mV, ms, mS/cm2, uA/cm2, uF/cm2) with transient Na, delayed-rectifier K (Kv3-like when fast and
high-threshold), D-type K (slowly inactivating: late spiking), M-type K and a Ca-activated AHP
(adaptation), Ih (sag, rebound), T-type Ca (rebound) and an Ornstein-Uhlenbeck noise current.
Subclass parameter sets follow the textbook phenotypes (fast-spiking narrow-spike Pvalb,
adapting Sst with sag and rebound, irregular high-Rin Vip, late-spiking Lamp5, adapting
broad-spike Sncg) and were tuned so that IPFX features land near the medians of the real
Patch-seq cells; human cells have longer membrane time constants and more sag.

Every sample is simulated at 50 kHz: an exponential-Euler step over voltage-indexed rate
tables, compiled by numba, runs all sweeps of a call in one compiled loop. (A numpy loop over
samples vectorised over ~25 sweeps still pays ~40 numpy calls per sample, about 50x slower.)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from ..errors import Ephys2txError
from .sweeps import LONG_SQUARE, RAMP, SHORT_SQUARE, Recording, Sweep

if TYPE_CHECKING:
    import pandas as pd

SAMPLING_RATE = 50_000.0  # Hz, as the Allen Patch-seq recordings
DT_MS = 1000.0 / SAMPLING_RATE

# Allen protocol (codes from IPFX's default stimulus ontology).
LONG_SQUARE_CODE = "C1LSCOARSE150216"
SHORT_SQUARE_CODE = "C1SSCOARSE150112"
SHORT_SQUARE_FINE_CODE = "C1SSFINEST150112"
RAMP_CODE = "C1RP25PR1S141203"
TEST_PULSE_START, TEST_PULSE_DURATION, TEST_PULSE_AMP = 0.010, 0.010, -20.0  # s, s, pA
STIM_START = 1.02  # s, after the test pulse and a quiet baseline, as in Allen sweeps
LONG_SQUARE_DURATION = 1.0  # s
LONG_SQUARE_SWEEP = 3.0  # s total
LONG_SQUARE_FIRST, LONG_SQUARE_STEP, ABOVE_RHEOBASE = -110.0, 20.0, 160.0  # pA
SHORT_SQUARE_DURATION = 0.003  # s
SHORT_SQUARE_SWEEP = 2.0  # s total
RAMP_SLOPE = 25.0  # pA/s
RAMP_POST = 1.0  # s after the ramp ends
MAX_CURRENT = 3000.0  # pA; a cell that does not fire below this is rejected

SUBCLASSES = {
    "mouse": ("Lamp5", "Pvalb", "Sncg", "Sst", "Vip"),
    "human": ("Lamp5", "Pvalb", "Sst", "Vip"),
}
ALIGNED_LABEL = {"Lamp5": "Lamp5", "Pvalb": "Pvalb", "Sst": "Sst", "Vip": "Vip", "Sncg": "Vip"}


@dataclass(frozen=True)
class CellParams:
    """Generating parameters of one synthetic cell (written to cohort.csv)."""

    rin_mohm: float  # target input resistance (sets membrane area)
    tau_ms: float  # leak time constant C/gL
    e_leak: float  # mV
    g_na: float
    g_kdr: float
    phi: float  # speed factor of Na inactivation and K activation (AP width)
    k_shift: float  # mV, positive = higher-threshold (Kv3-like) delayed rectifier
    g_d: float  # D-type K (Kv1): ramp delay, late spiking
    tau_d_inact: float  # ms, slow inactivation of D-type K
    g_m: float  # M-type K: spike-frequency adaptation
    tau_m_max: float  # ms
    g_h: float  # Ih: sag and rebound
    tau_h: float  # ms
    g_t: float  # T-type Ca: rebound burst
    noise_pa: float  # OU current noise SD, pA (irregular firing)
    noise_tau: float  # ms
    v_noise_mv: float  # recording noise SD, mV
    na_shift: float  # mV, depolarising shift of Na activation (sets rheobase/threshold)
    g_ahp: float  # Ca-activated K (spike-triggered AHP): spike-frequency adaptation
    tau_ahp: float  # ms, decay of the spike-borne Ca signal


# Central mouse phenotypes, tuned so IPFX features land near the medians of the real mouse
# Patch-seq cells (input resistance, tau, sag, rheobase, AP width, latency, f-I slope).
_MOUSE = {
    "Pvalb": CellParams(
        rin_mohm=110, tau_ms=8.0, e_leak=-72, g_na=200, g_kdr=40, phi=12.0, k_shift=22,
        g_d=0.02, tau_d_inact=120, g_m=0.0, tau_m_max=1000, g_h=0.001, tau_h=60, g_t=0.0,
        noise_pa=1.5, noise_tau=3, v_noise_mv=0.05, na_shift=14, g_ahp=0.0, tau_ahp=100,
    ),
    "Sst": CellParams(
        rin_mohm=220, tau_ms=28.0, e_leak=-67, g_na=60, g_kdr=14, phi=3.2, k_shift=0,
        g_d=0.0, tau_d_inact=150, g_m=0.06, tau_m_max=1500, g_h=0.008, tau_h=70, g_t=0.25,
        noise_pa=4, noise_tau=3, v_noise_mv=0.05, na_shift=7, g_ahp=0.03, tau_ahp=300,
    ),
    "Vip": CellParams(
        rin_mohm=260, tau_ms=14.0, e_leak=-67, g_na=50, g_kdr=7, phi=2.8, k_shift=0,
        g_d=0.0, tau_d_inact=150, g_m=0.1, tau_m_max=800, g_h=0.001, tau_h=80, g_t=0.0,
        noise_pa=6, noise_tau=4, v_noise_mv=0.05, na_shift=5, g_ahp=0.08, tau_ahp=100,
    ),
    "Lamp5": CellParams(
        rin_mohm=140, tau_ms=10.5, e_leak=-72, g_na=60, g_kdr=16, phi=1.8, k_shift=2,
        g_d=1.5, tau_d_inact=800, g_m=0.15, tau_m_max=1000, g_h=0.003, tau_h=80, g_t=0.0,
        noise_pa=3, noise_tau=3, v_noise_mv=0.05, na_shift=5, g_ahp=0.0, tau_ahp=200,
    ),
    "Sncg": CellParams(
        rin_mohm=270, tau_ms=22.0, e_leak=-66, g_na=55, g_kdr=6, phi=2.6, k_shift=0,
        g_d=0.0, tau_d_inact=150, g_m=0.1, tau_m_max=1200, g_h=0.002, tau_h=90, g_t=0.0,
        noise_pa=7, noise_tau=4, v_noise_mv=0.05, na_shift=6, g_ahp=0.02, tau_ahp=400,
    ),
}  # fmt: skip

# Human changes, from the medians of the real human Patch-seq cells: slower membranes (longer
# tau), much more sag (Ih), more depolarised rest, lower rheobase, and in these data a higher,
# not lower, input resistance than mouse; human Lamp5 cells are not late-spiking.
_HUMAN = {
    "Pvalb": dict(rin_mohm=150, tau_ms=14.0, e_leak=-64, g_h=0.04, phi=6.0, na_shift=15),
    "Sst": dict(rin_mohm=250, tau_ms=40.0, e_leak=-64, g_h=0.03, na_shift=7),
    "Vip": dict(rin_mohm=300, tau_ms=30.0, e_leak=-61, g_h=0.012, na_shift=6),
    "Lamp5": dict(rin_mohm=235, tau_ms=18.0, e_leak=-64, g_h=0.006, g_d=0.4, phi=2.4, na_shift=5),
}


def typical_params(subclass: str, species: str) -> CellParams:
    """The central parameter set of a subclass in a species."""
    if species not in SUBCLASSES or subclass not in SUBCLASSES[species]:
        raise Ephys2txError(
            f"no synthetic model for {species} {subclass}; "
            f"choose one of {', '.join(SUBCLASSES.get(species, SUBCLASSES['mouse']))}"
        )
    p = _MOUSE[subclass]
    if species == "human":
        p = replace(p, **_HUMAN[subclass])
    return p


_VARIED = ("rin_mohm", "tau_ms", "g_na", "g_kdr", "phi", "g_d", "tau_d_inact", "g_m", "g_h")
_VARIED += ("g_t", "noise_pa", "g_ahp")


def sample_params(
    subclass: str, species: str, rng: np.random.Generator, donor_effect: float = 1.0
) -> CellParams:
    """Cell-to-cell variability: log-normal (CV ~15%) around the subclass centre."""
    p = typical_params(subclass, species)
    values = asdict(p)
    for name in _VARIED:
        values[name] *= float(np.exp(rng.normal(0.0, 0.15)))
    values["e_leak"] += float(rng.normal(0.0, 2.0))
    values["k_shift"] += float(rng.normal(0.0, 1.0))
    values["na_shift"] += float(rng.normal(0.0, 1.0))  # spreads rheobase and threshold
    values["rin_mohm"] *= donor_effect
    return CellParams(**values)


def _as_vector(p: CellParams) -> np.ndarray:
    return np.array([getattr(p, f.name) for f in fields(p)], dtype=np.float64)


# ------------------------------------------------------------------ the compiled integrator
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


# ------------------------------------------------------------------ protocol
def _with_test_pulse(n_samples: int) -> np.ndarray:
    i = np.zeros(n_samples)
    start = round(TEST_PULSE_START * SAMPLING_RATE)
    i[start : start + round(TEST_PULSE_DURATION * SAMPLING_RATE)] = TEST_PULSE_AMP
    return i


def long_square_current(amplitude: float) -> np.ndarray:
    """Allen long square: test pulse, then a 1 s step at 1.02 s; pA at 50 kHz."""
    i = _with_test_pulse(round(LONG_SQUARE_SWEEP * SAMPLING_RATE))
    start = round(STIM_START * SAMPLING_RATE)
    i[start : start + round(LONG_SQUARE_DURATION * SAMPLING_RATE)] = amplitude
    return i


def short_square_current(amplitude: float) -> np.ndarray:
    """Allen short square: test pulse, then a 3 ms step at 1.02 s."""
    i = _with_test_pulse(round(SHORT_SQUARE_SWEEP * SAMPLING_RATE))
    start = round(STIM_START * SAMPLING_RATE)
    i[start : start + round(SHORT_SQUARE_DURATION * SAMPLING_RATE)] = amplitude
    return i


def ramp_current(end_amplitude: float) -> np.ndarray:
    """Allen ramp: test pulse, then 25 pA/s from 1.02 s up to `end_amplitude`, then off."""
    duration = end_amplitude / RAMP_SLOPE
    n_ramp = round(duration * SAMPLING_RATE)
    start = round(STIM_START * SAMPLING_RATE)
    i = _with_test_pulse(start + n_ramp + round(RAMP_POST * SAMPLING_RATE))
    i[start : start + n_ramp] = RAMP_SLOPE * (np.arange(1, n_ramp + 1) / SAMPLING_RATE)
    return i


class _Cell:
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


def _n_spikes(v: np.ndarray, start: float, end: float) -> int:
    """Upward 0 mV crossings in [start, end) s: only to steer the protocol, not a feature."""
    seg = v[round(start * SAMPLING_RATE) : round(end * SAMPLING_RATE)]
    return int(np.count_nonzero((seg[1:] >= 0.0) & (seg[:-1] < 0.0)))


def _short_square_threshold(cell: _Cell, step: float, start: float) -> float:
    """Smallest amplitude on a `step` grid from `start` that fires on a short square."""
    window = round(0.06 * SAMPLING_RATE)  # 10 ms before, 50 ms after the pulse, no noise
    onset = round(0.01 * SAMPLING_RATE)
    amp = start
    while amp <= 4 * MAX_CURRENT:
        amps = [amp + k * step for k in range(8)]
        traces = []
        for a in amps:
            i = np.zeros(window)
            i[onset : onset + round(SHORT_SQUARE_DURATION * SAMPLING_RATE)] = a
            traces.append(i)
        for a, v in zip(amps, cell.run(traces, noisy=False), strict=True):
            if _n_spikes(v, 0.0, 0.06) > 0:
                return a
        amp = amps[-1] + step
    raise Ephys2txError("synthetic cell never fires on a short square; parameters out of range")


def simulate_cell(
    subclass: str,
    species: str,
    rng: np.random.Generator,
    params: CellParams | None = None,
    cell_id: str = "synthetic",
    long_squares: bool = True,
    short_squares: bool = True,
    ramp: bool = True,
) -> Recording:
    """Record one SYNTHETIC cell with the Allen protocol; returns a `Recording`.

    Long squares go from -110 pA in 20 pA steps to rheobase + 160 pA; short squares (3 ms)
    bracket threshold on a coarse 100 pA then fine 20 pA grid, repeated at threshold; the ramp
    rises at 25 pA/s until well past the first spike. Deterministic for a given `rng` state.
    """
    params = params or sample_params(subclass, species, rng)
    cell = _Cell(params, rng)
    sweeps: list[Sweep] = []
    meta: dict = {"synthetic": True, "subclass": subclass, **asdict(params)}

    def add(current: np.ndarray, voltage: np.ndarray, kind: str, code: str, amp: float) -> None:
        end = (
            STIM_START
            + {
                LONG_SQUARE: LONG_SQUARE_DURATION,
                SHORT_SQUARE: SHORT_SQUARE_DURATION,
                RAMP: amp / RAMP_SLOPE,
            }[kind]
        )
        sweeps.append(
            Sweep(
                sweep_number=len(sweeps),
                voltage=voltage,
                current=current,
                sampling_rate=SAMPLING_RATE,
                stimulus_type=kind,
                amplitude=amp,
                stim_start=STIM_START,
                stim_end=end,
                stimulus_code=code,
            )
        )

    # Long squares, four sweeps per compiled call, until rheobase + 160 pA.
    rheobase = math.nan
    amp = LONG_SQUARE_FIRST
    stim_end = STIM_START + LONG_SQUARE_DURATION
    while long_squares or ramp:
        amps = [amp + k * LONG_SQUARE_STEP for k in range(4)]
        currents = [long_square_current(a) for a in amps]
        for a, i, v in zip(amps, currents, cell.run(currents), strict=True):
            if math.isnan(rheobase) and _n_spikes(v, STIM_START, stim_end) > 0:
                rheobase = a
            if long_squares and (math.isnan(rheobase) or a <= rheobase + ABOVE_RHEOBASE):
                add(i, v, LONG_SQUARE, LONG_SQUARE_CODE, a)
        amp = amps[-1] + LONG_SQUARE_STEP
        if not math.isnan(rheobase) and amp > rheobase + ABOVE_RHEOBASE:
            break
        if amp > MAX_CURRENT:
            raise Ephys2txError(
                f"synthetic {species} {subclass} cell never fired up to {MAX_CURRENT:.0f} pA; "
                "parameters out of range"
            )
    meta["rheobase_pa"] = rheobase

    if short_squares:
        coarse = _short_square_threshold(cell, 100.0, 100.0)
        fine = _short_square_threshold(cell, 20.0, max(coarse - 80.0, 20.0))
        plan = [(a, SHORT_SQUARE_CODE) for a in (coarse - 200.0, coarse - 100.0, coarse) if a > 0]
        plan += [(a, SHORT_SQUARE_FINE_CODE) for a in (fine - 40.0, fine - 20.0) if a > 0]
        plan += [(fine, SHORT_SQUARE_FINE_CODE)] * 3  # repeats at threshold, as Allen does
        currents = [short_square_current(a) for a, _ in plan]
        for (a, code), i, v in zip(plan, currents, cell.run(currents), strict=True):
            add(i, v, SHORT_SQUARE, code, a)
        meta["short_square_threshold_pa"] = fine

    if ramp:
        # Ramp to well past rheobase; extend if the noise draw left it silent.
        end = math.ceil((1.25 * rheobase + 60.0) / 10.0) * 10.0
        for _ in range(3):
            i = ramp_current(end)
            (v,) = cell.run([i])
            if _n_spikes(v, STIM_START, STIM_START + end / RAMP_SLOPE) > 0:
                break
            end *= 1.5
        add(i, v, RAMP, RAMP_CODE, end)

    return Recording(
        source=Path(f"{cell_id}.nwb"),
        cell_id=cell_id,
        sweeps=sweeps,
        species=species,
        metadata=meta,
    )


# ------------------------------------------------------------------ cohort
SYNTHETIC_NOTICE = (
    "SYNTHETIC cells: simulated conductance-based models recorded with the Allen protocol; "
    "not real recordings."
)
_SPECIES_CODE = {"mouse": 0, "human": 1}
_ID_BASE = 9_000_000_000  # far above real Allen specimen ids, so never confused with them


def _n_donors(n_cells: int) -> int:
    return max(1, min(6, n_cells))


def _simulate_valid(
    subclass: str, species: str, seed_key: list[int], donor_effect: float, cell_id: str
) -> tuple[CellParams, Recording]:
    """Draw parameters until the cell fires within the protocol (rarely needs a retry)."""
    for attempt in range(5):
        rng = np.random.default_rng([*seed_key, attempt])
        params = sample_params(subclass, species, rng, donor_effect=donor_effect)
        try:
            return params, simulate_cell(subclass, species, rng, params=params, cell_id=cell_id)
        except Ephys2txError:
            continue
    raise Ephys2txError(
        f"could not draw a firing synthetic {species} {subclass} cell; try another --seed"
    )


def _write_cell(job: tuple) -> dict:
    """Simulate one cohort cell and write its NWB file; returns its cohort.csv row."""
    from .allen_nwb import write_allen_nwb

    species, subclass, seed, index, donor_id, donor_effect, out = job
    code = _SPECIES_CODE[species]
    specimen_id = _ID_BASE + code * 1_000_000 + index
    params, recording = _simulate_valid(
        subclass, species, [seed, code, index], donor_effect, str(specimen_id)
    )
    file = f"synth_{species}_{specimen_id}.nwb"
    write_allen_nwb(
        Path(out) / file,
        recording,
        session_description=(
            f"{SYNTHETIC_NOTICE} ephys2tx synth, species={species}, subclass={subclass}, "
            f"seed={seed}, cell={index}"
        ),
        donor=donor_id,
    )
    return {
        "specimen_id": specimen_id,
        "species": species,
        "donor": donor_id,
        "subclass": subclass,
        "label": ALIGNED_LABEL[subclass],
        "label5": subclass,
        "file": file,
        "synthetic": True,
        "seed": seed,
        "rheobase_pa": recording.metadata["rheobase_pa"],
        "short_square_threshold_pa": recording.metadata.get("short_square_threshold_pa"),
        "n_sweeps": len(recording.sweeps),
        **asdict(params),
    }


def write_cohort(
    species: str,
    n_per_class: int,
    out_dir: str | Path,
    seed: int = 0,
    progress: bool = True,
    jobs: int = 1,
) -> pd.DataFrame:
    """Simulate `n_per_class` SYNTHETIC cells per subclass, one Allen-style NWB file each.

    Cells are spread over a handful of synthetic donors (each donor adds a small shared offset
    to input resistance) so donor-grouped folds work. Writes and returns `out_dir/cohort.csv`.
    Deterministic for a given seed whatever `jobs` (worker processes): each cell draws from
    its own seeded generator.
    """
    import pandas as pd
    from rich.progress import Progress

    if species not in SUBCLASSES:
        raise Ephys2txError(f"unknown species {species!r}; use mouse or human")
    if n_per_class < 1:
        raise Ephys2txError(f"--n-per-class must be at least 1, got {n_per_class}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    code = _SPECIES_CODE[species]
    classes = SUBCLASSES[species]
    n_donors = _n_donors(len(classes) * n_per_class)
    donor_effects = [
        float(np.exp(np.random.default_rng([seed, code, 1_000_000 + d]).normal(0.0, 0.08)))
        for d in range(n_donors)
    ]
    plan = []
    for c, subclass in enumerate(classes):
        for k in range(n_per_class):
            donor = (k + c) % n_donors  # every donor gets several subclasses
            donor_id = f"synth-{species}-donor{donor + 1}"
            plan.append((species, subclass, seed, len(plan), donor_id, donor_effects[donor], out))
    rows: list[dict] = []
    with Progress(disable=not progress) as bar:
        task = bar.add_task(f"simulating {len(plan)} {species} cells", total=len(plan))
        if jobs <= 1:
            for job in plan:
                rows.append(_write_cell(job))
                bar.advance(task)
        else:
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(max_workers=min(jobs, len(plan))) as pool:
                for future in as_completed([pool.submit(_write_cell, job) for job in plan]):
                    rows.append(future.result())
                    bar.advance(task)
    table = pd.DataFrame(rows).sort_values("specimen_id", ignore_index=True)
    table.to_csv(out / "cohort.csv", index=False)
    return table
