"""The feature families, declared once: every model, the sPCA and every figure read this.

Scalar families group canonical IPFX features (the names and units of the human
Lee et al. 2023 table, `LeeDalley_ephys_fx.csv`) by the physiology a person would name.
Vector families are IPFX's feature vectors, each at its own length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Feature:
    """A canonical scalar feature and its unit."""

    name: str
    unit: str


@dataclass(frozen=True)
class Family:
    """A physiological family of features: a token for the sequence model."""

    name: str
    title: str
    features: tuple[Feature, ...] = ()
    length: int = 0  # vector families only: IPFX's length for 1 s steps

    @property
    def is_vector(self) -> bool:
        return self.length > 0

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.features]


def _f(unit: str, *names: str) -> tuple[Feature, ...]:
    return tuple(Feature(n, unit) for n in names)


# The AP's voltages, in mV (the deltas relative to its threshold).
AP_VOLTAGES = ("threshold_v", "trough_deltav", "fast_trough_deltav", "peak_deltav")


def _first_ap(
    sweep: str,
    ratios: tuple[str, ...] = ("upstroke_downstroke_ratio",),
    voltages: tuple[str, ...] = AP_VOLTAGES,
) -> tuple[Feature, ...]:
    """The shape of the first AP of one kind of sweep, each measure named
    `<measure>_<sweep>`: its ratios, voltages (mV), widths (s) and slopes (mV/ms)."""

    def on_sweep(*measures: str) -> list[str]:
        return [f"{m}_{sweep}" for m in measures]

    return (
        _f("1", *on_sweep(*ratios))
        + _f("mV", *on_sweep(*voltages))
        + _f("s", *on_sweep("width", "width_suprathresh"))
        + _f("mV/ms", *on_sweep("upstroke", "downstroke", "postap_slope"))
    )


SCALAR_FAMILIES: tuple[Family, ...] = (
    Family(
        "subthreshold",
        "Subthreshold / passive",
        _f("mV", "v_baseline", "vm_for_sag")
        + _f("MOhm", "input_resistance")
        + _f("s", "tau", "sag_peak_t", "sag_tau", "sag_peak_t_depol")
        + _f("1", "sag", "sag_depol")
        + _f("mV*s", "sag_area", "sag_area_depol"),
    ),
    Family(
        "rheobase_fi",
        "Rheobase and f-I",
        _f("pA", "rheobase_i", "stim_amp_hero")
        + _f("Hz/pA", "fi_fit_slope")
        + _f("Hz", "avg_rate_rheo", "first_isi_inv_rheo", "max_rate")
        + _f("s", "latency_rheo", "mean_isi_rheo"),
    ),
    Family(
        "ap_short_square",
        "First AP, short square",
        _f("pA", "threshold_i_short_square")
        + _first_ap("short_square", voltages=("threshold_v", "fast_trough_deltav", "peak_deltav")),
    ),
    Family("ap_ramp", "First AP, ramp", _f("pA", "threshold_i_ramp") + _first_ap("ramp")),
    Family(
        "ap_rheo",
        "First AP, long-square rheobase sweep",
        _first_ap(
            "rheo", voltages=AP_VOLTAGES + ("trough_slowdeltav", "fast_trough_v_last", "adp_v_last")
        ),
    ),
    Family(
        "firing_hero",
        "Firing pattern at the hero sweep",
        _f("Hz", "avg_rate_hero", "first_isi_inv_hero")
        + _f("s", "latency_hero", "mean_isi_hero", "median_isi_hero")
        + _f("1", "adapt_hero", "isi_cv_hero", "isi_norm_sq_var_hero"),
    ),
    Family(
        "ap_hero",
        "AP shape at the hero sweep",
        _first_ap(
            "hero",
            ratios=("upstroke_downstroke_ratio", "ahp_delay_ratio"),
            voltages=AP_VOLTAGES + ("trough_slowdeltav",),
        ),
    ),
    Family(
        "adaptation",
        "Adaptation across sweeps",
        _f(
            "1",
            "adapt_mean",
            "adapt_max",
            "isi_cv_mean",
            "isi_cv_max",
            "isi_norm_sq_var_mean",
            "isi_norm_sq_var_max",
            "isi_adapt_ratio",
            "width_adapt_ratio",
            "upstroke_adapt_ratio",
            "downstroke_adapt_ratio",
            "peak_v_adapt_ratio",
            "threshold_v_adapt_ratio",
            "fast_trough_v_adapt_ratio",
            "ahp_delay_ratio_5spike",
        ),
    ),
    Family(
        "chirp",
        "Chirp (impedance profile)",
        _f("1", "peak_ratio_chirp")
        + _f("Hz", "peak_freq_chirp", "3db_freq_chirp", "sync_freq_chirp")
        + _f("GOhm", "peak_impedance_chirp", "low_freq_impedance_chirp")
        + _f("rad", "phase_peak_chirp", "phase_low_chirp", "total_inductive_phase_chirp"),
    ),
)

# IPFX feature vectors (Gouwens et al. 2019/2020) and their lengths for 1 s long squares.
VECTOR_FAMILIES: tuple[Family, ...] = tuple(
    Family(name, title, length=length)
    for name, title, length in (
        ("step_subthresh", "Subthreshold step responses", 700),
        ("subthresh_norm", "Normalized hyperpolarizing responses", 140),
        ("subthresh_depol_norm", "Normalized depolarizing responses", 140),
        ("isi_shape", "Average ISI shape", 100),
        ("first_ap_v", "First AP waveform", 450),
        ("first_ap_dv", "First AP dV/dt", 447),
        ("psth", "Spike-rate histogram (PSTH)", 120),
        ("inst_freq", "Instantaneous frequency", 300),
        ("spiking_upstroke_downstroke_ratio", "Upstroke/downstroke ratio over spikes", 300),
        ("spiking_peak_v", "Spike peak over spikes", 300),
        ("spiking_fast_trough_v", "Fast trough over spikes", 300),
        ("spiking_threshold_v", "Threshold over spikes", 300),
        ("spiking_width", "Spike width over spikes", 300),
        ("inst_freq_norm", "Normalized instantaneous frequency", 300),
    )
)

FAMILIES: dict[str, Family] = {f.name: f for f in SCALAR_FAMILIES + VECTOR_FAMILIES}
SCALAR_FEATURES: list[str] = [c for fam in SCALAR_FAMILIES for c in fam.columns]
FEATURE_UNITS: dict[str, str] = {f.name: f.unit for fam in SCALAR_FAMILIES for f in fam.features}
FAMILY_OF_FEATURE: dict[str, str] = {c: fam.name for fam in SCALAR_FAMILIES for c in fam.columns}


def family_mask(
    cells: pd.DataFrame, families: tuple[Family, ...] = SCALAR_FAMILIES
) -> pd.DataFrame:
    """True where a cell has at least one feature of the family; False means the family is missing."""
    present = {}
    for fam in families:
        cols = [c for c in fam.columns if c in cells.columns]
        present[fam.name] = (
            cells[cols].notna().any(axis=1).to_numpy() if cols else np.zeros(len(cells), bool)
        )
    return pd.DataFrame(present, index=cells.index)


def vector_columns(family: Family) -> list[str]:
    """Column names of a vector family when it is stored in a flat cell table."""
    return [f"{family.name}__{i}" for i in range(family.length)]
