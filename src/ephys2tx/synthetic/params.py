"""Generating parameters of SYNTHETIC cells: a central set per subclass and species, tuned so
IPFX features land near the medians of the real Patch-seq cells, and cell-to-cell variability.

Subclass parameter sets follow the textbook phenotypes (fast-spiking narrow-spike Pvalb,
adapting Sst with sag and rebound, irregular high-Rin Vip, late-spiking Lamp5, adapting
broad-spike Sncg); human cells have longer membrane time constants and more sag.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from ..errors import Ephys2txError
from ..schema import SUBCLASSES


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
# One row per parameter of `CellParams`, one column per subclass.
_MOUSE_SUBCLASSES = ("Pvalb", "Sst", "Vip", "Lamp5", "Sncg")
_MOUSE_TABLE = {
    #                Pvalb     Sst     Vip   Lamp5    Sncg
    "rin_mohm":    (   110,    220,    260,    140,    270),
    "tau_ms":      (   8.0,   28.0,   14.0,   10.5,   22.0),
    "e_leak":      (   -72,    -67,    -67,    -72,    -66),
    "g_na":        (   200,     60,     50,     60,     55),
    "g_kdr":       (    40,     14,      7,     16,      6),
    "phi":         (  12.0,    3.2,    2.8,    1.8,    2.6),
    "k_shift":     (    22,      0,      0,      2,      0),
    "g_d":         (  0.02,    0.0,    0.0,    1.5,    0.0),
    "tau_d_inact": (   120,    150,    150,    800,    150),
    "g_m":         (   0.0,   0.06,    0.1,   0.15,    0.1),
    "tau_m_max":   (  1000,   1500,    800,   1000,   1200),
    "g_h":         ( 0.001,  0.008,  0.001,  0.003,  0.002),
    "tau_h":       (    60,     70,     80,     80,     90),
    "g_t":         (   0.0,   0.25,    0.0,    0.0,    0.0),
    "noise_pa":    (   1.5,      4,      6,      3,      7),
    "noise_tau":   (     3,      3,      4,      3,      4),
    "v_noise_mv":  (  0.05,   0.05,   0.05,   0.05,   0.05),
    "na_shift":    (    14,      7,      5,      5,      6),
    "g_ahp":       (   0.0,   0.03,   0.08,    0.0,   0.02),
    "tau_ahp":     (   100,    300,    100,    200,    400),
}  # fmt: skip
_MOUSE = {
    subclass: CellParams(**{name: row[i] for name, row in _MOUSE_TABLE.items()})
    for i, subclass in enumerate(_MOUSE_SUBCLASSES)
}

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
