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


def _column(source: str, measure: str, sweep: str) -> str:
    """A source's column of a measure on a kind of sweep: Gouwens' names put the sweep
    first (`rheo_width`), efeature's last, as the canonical names do (`width_ramp`)."""
    return f"{sweep}_{measure}" if source == GOUWENS else f"{measure}_{sweep}"


def _on(source: str, sweep: str, unit: str, *measures: str, note: str = ""):
    """The canonical `<measure>_<sweep>` of each measure, from the source's own column."""
    return tuple(
        _m(f"{m}_{sweep}", source, _column(source, m, sweep), unit, note=note) for m in measures
    )


def _deltavs(source: str, sweep: str, *measures: str):
    """The canonical `<measure>_deltav_<sweep>`: the source's `<measure>_v` on that sweep
    minus its threshold there."""
    threshold = _column(source, "threshold_v", sweep)
    return tuple(
        _m(f"{m}_deltav_{sweep}", source, (_column(source, f"{m}_v", sweep), threshold), "mV",
           _minus, "minus threshold")
        for m in measures
    )  # fmt: skip


MOUSE_FEATURE_MAP: tuple[MappedFeature, ...] = (
    # subthreshold / passive: the canonical names
    *(_m(name, GOUWENS, name, unit) for name, unit in (
        ("v_baseline", "mV"), ("vm_for_sag", "mV"), ("input_resistance", "MOhm"), ("tau", "s"),
        ("sag", "1"),
    )),
    # rheobase and f-I
    _m("rheobase_i", GOUWENS, "rheobase_i", "pA"),
    _m("stim_amp_hero", GOUWENS, "hero_stim_amp", "pA", note="mouse only"),
    _m("fi_fit_slope", GOUWENS, "fi_fit_slope", "Hz/pA"),
    _m("max_rate", GOUWENS, "maximal_firing_rate", "Hz", note="mouse only"),
    # first AP, long-square rheobase sweep
    *_on(GOUWENS, "rheo", "mV", "threshold_v"),
    *_deltavs(GOUWENS, "rheo", "trough", "fast_trough", "peak"),
    *_on(GOUWENS, "rheo", "s", "width"),
    _m("upstroke_downstroke_ratio_rheo", EFEATURE, "upstroke_downstroke_ratio_long_square", "1",
       note="not rheo_upstroke_downstroke_ratio of the Gouwens table (a different quantity)"),
    # firing at the hero sweep
    *_on(GOUWENS, "hero", "Hz", "avg_rate"),
    _m("first_isi_inv_hero", GOUWENS, "hero_first_isi", "s", _inverse, "1 / first ISI"),
    *_on(GOUWENS, "hero", "s", "latency", "mean_isi", "median_isi"),
    *_on(GOUWENS, "hero", "1", "adapt", "isi_cv"),
    # first AP, short square
    *_on(EFEATURE, "short_square", "pA", "threshold_i", note="mouse only"),
    *_on(EFEATURE, "short_square", "mV", "threshold_v"),
    *_on(EFEATURE, "short_square", "1", "upstroke_downstroke_ratio"),
    *_deltavs(EFEATURE, "short_square", "fast_trough", "peak"),
    # first AP, ramp
    *_on(EFEATURE, "ramp", "pA", "threshold_i"),
    *_on(EFEATURE, "ramp", "mV", "threshold_v"),
    *_on(EFEATURE, "ramp", "1", "upstroke_downstroke_ratio"),
    *_deltavs(EFEATURE, "ramp", "trough", "fast_trough", "peak"),
)  # fmt: skip


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
