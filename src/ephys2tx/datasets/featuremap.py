"""How each public table's columns become canonical features (human Lee et al. 2023 naming).

The mapping is written down once here, as a table with source units. Only features whose
meaning really is the same are mapped. A known trap: `rheo_upstroke_downstroke_ratio`
of ephys_features_gouwens_w_QC.csv is ~0.41x `upstroke_downstroke_ratio_long_square` of
efeature.csv (medians 0.96 vs 2.25; human `upstroke_downstroke_ratio_rheo` 1.87), so it
is a different quantity and is not mapped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from ..features.families import FEATURE_UNITS

GOUWENS = "ephys_features_gouwens_w_QC.csv"  # newer IPFX names; tau, widths, ISIs in s
EFEATURE = "efeature.csv"  # older IPFX cell-record names; tau and avg_isi in ms


@dataclass(frozen=True)
class MappedFeature:
    """One canonical feature computed from columns of one mouse source table."""

    canonical: str
    source: str
    columns: tuple[str, ...]
    source_unit: str
    compute: Callable[..., pd.Series]
    note: str = ""


def _same(a: pd.Series) -> pd.Series:
    return a


def _minus(a: pd.Series, b: pd.Series) -> pd.Series:
    return a - b  # AP voltages relative to threshold, as the human `*_deltav_*`


def _inverse(a: pd.Series) -> pd.Series:
    return 1.0 / a.where(a > 0)


def _m(canonical, source, columns, unit, compute=_same, note=""):
    cols = (columns,) if isinstance(columns, str) else tuple(columns)
    return MappedFeature(canonical, source, cols, unit, compute, note)


def _deltav(canonical, source, v_column, threshold_column):
    return _m(canonical, source, (v_column, threshold_column), "mV", _minus, "minus threshold")


MOUSE_FEATURE_MAP: tuple[MappedFeature, ...] = (
    # subthreshold / passive
    _m("v_baseline", GOUWENS, "v_baseline", "mV"),
    _m("vm_for_sag", GOUWENS, "vm_for_sag", "mV"),
    _m("input_resistance", GOUWENS, "input_resistance", "MOhm"),
    _m("tau", GOUWENS, "tau", "s"),
    _m("sag", GOUWENS, "sag", "1"),
    # rheobase and f-I
    _m("rheobase_i", GOUWENS, "rheobase_i", "pA"),
    _m("stim_amp_hero", GOUWENS, "hero_stim_amp", "pA", note="mouse only"),
    _m("fi_fit_slope", GOUWENS, "fi_fit_slope", "Hz/pA"),
    _m("max_rate", GOUWENS, "maximal_firing_rate", "Hz", note="mouse only"),
    # first AP, long-square rheobase sweep
    _m("threshold_v_rheo", GOUWENS, "rheo_threshold_v", "mV"),
    _deltav("trough_deltav_rheo", GOUWENS, "rheo_trough_v", "rheo_threshold_v"),
    _deltav("fast_trough_deltav_rheo", GOUWENS, "rheo_fast_trough_v", "rheo_threshold_v"),
    _deltav("peak_deltav_rheo", GOUWENS, "rheo_peak_v", "rheo_threshold_v"),
    _m("width_rheo", GOUWENS, "rheo_width", "s"),
    _m(
        "upstroke_downstroke_ratio_rheo",
        EFEATURE,
        "upstroke_downstroke_ratio_long_square",
        "1",
        note="not rheo_upstroke_downstroke_ratio of the Gouwens table (a different quantity)",
    ),
    # firing at the hero sweep
    _m("avg_rate_hero", GOUWENS, "hero_avg_rate", "Hz"),
    _m("first_isi_inv_hero", GOUWENS, "hero_first_isi", "s", _inverse, "1 / first ISI"),
    _m("latency_hero", GOUWENS, "hero_latency", "s"),
    _m("mean_isi_hero", GOUWENS, "hero_mean_isi", "s"),
    _m("median_isi_hero", GOUWENS, "hero_median_isi", "s"),
    _m("adapt_hero", GOUWENS, "hero_adapt", "1"),
    _m("isi_cv_hero", GOUWENS, "hero_isi_cv", "1"),
    # first AP, short square
    _m("threshold_i_short_square", EFEATURE, "threshold_i_short_square", "pA", note="mouse only"),
    _m("threshold_v_short_square", EFEATURE, "threshold_v_short_square", "mV"),
    _m(
        "upstroke_downstroke_ratio_short_square",
        EFEATURE,
        "upstroke_downstroke_ratio_short_square",
        "1",
    ),
    _deltav(
        "fast_trough_deltav_short_square",
        EFEATURE,
        "fast_trough_v_short_square",
        "threshold_v_short_square",
    ),
    _deltav(
        "peak_deltav_short_square", EFEATURE, "peak_v_short_square", "threshold_v_short_square"
    ),
    # first AP, ramp
    _m("threshold_i_ramp", EFEATURE, "threshold_i_ramp", "pA"),
    _m("threshold_v_ramp", EFEATURE, "threshold_v_ramp", "mV"),
    _m("upstroke_downstroke_ratio_ramp", EFEATURE, "upstroke_downstroke_ratio_ramp", "1"),
    _deltav("trough_deltav_ramp", EFEATURE, "trough_v_ramp", "threshold_v_ramp"),
    _deltav("fast_trough_deltav_ramp", EFEATURE, "fast_trough_v_ramp", "threshold_v_ramp"),
    _deltav("peak_deltav_ramp", EFEATURE, "peak_v_ramp", "threshold_v_ramp"),
)


def map_mouse_features(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Canonical mouse features from the two source tables (already row-aligned)."""
    out = {}
    for entry in MOUSE_FEATURE_MAP:
        source = tables[entry.source]
        out[entry.canonical] = entry.compute(*(source[c].astype(float) for c in entry.columns))
    return pd.DataFrame(out)


def check_map_units() -> None:
    """Every mapped feature lands on a canonical unit that agrees with its source unit."""
    for entry in MOUSE_FEATURE_MAP:
        unit = FEATURE_UNITS[entry.canonical]
        expected = "Hz" if entry.compute is _inverse else entry.source_unit
        if unit != expected:
            raise ValueError(f"{entry.canonical}: source unit {expected} but canonical unit {unit}")
