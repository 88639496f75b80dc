"""Feature crosswalks (units, grades, recognition of the Berens extractor from the real M1
header, refusal of implausible units, a lab's own map as CSV and YAML) and the reference
model on the features a table has (its cache key, training once, reuse)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA
from typer.testing import CliRunner

from ephys2tx import default_model
from ephys2tx.cli import app
from ephys2tx.datasets.cells import read_cell_table
from ephys2tx.datasets.crosswalk import (
    GRADES,
    PLAUSIBLE_RANGES,
    Crosswalk,
    check_plausible,
    evaluate_formula,
    known_crosswalks,
    parse_formula,
    plausible_scale,
    recognize,
    to_canonical,
)
from ephys2tx.errors import Ephys2txError
from ephys2tx.features.families import FEATURE_UNITS
from ephys2tx.models.hierarchy import HierarchySettings
from ephys2tx.models.members import forest

M1 = SHARED_DATA / "mouse_scala2021" / "m1_patchseq_ephys_features.csv"
# what x = 1 in their unit is in the canonical unit, for rows that only convert units
FACTORS = {("ms", "s"): 1e-3, ("V/s", "mV/ms"): 1.0}
LIGHT = HierarchySettings(
    subclass=(("rf", forest(25)),), t_type=(("rf", forest(25)),), t_type_model="flat"
)


@pytest.fixture(scope="module")
def m1() -> pd.DataFrame:
    return pd.read_csv(M1)


def test_every_row_is_well_formed_and_converts_to_the_canonical_unit():
    crosswalks = known_crosswalks()
    assert {"berens", "efel"} <= set(crosswalks)
    for cw in crosswalks.values():
        grades = {r.grade for r in cw.rows}
        assert grades <= set(GRADES) and {"approximate", "none"} <= grades
        for row in cw.feature_rows:
            assert row.differs, row  # every row says how the definitions differ
            if not row.used:
                continue
            unit = FEATURE_UNITS[row.canonical]
            if len(row.columns()) > 1 or row.formula.strip() in ("-x", "1 - 1 / x", "x / 0.6"):
                continue  # formulas checked one by one below
            one = float(evaluate_formula(row.formula, np.array([1.0]))[0])
            expected = 1.0 if row.their_unit in (unit, "1") else FACTORS[(row.their_unit, unit)]
            assert one == pytest.approx(expected), row
    berens = {r.canonical: r for r in crosswalks["berens"].feature_rows if r.used}
    # sag = 1 - 1/ratio: IPFX's (peak - steady) / (peak - baseline) from the Berens ratio
    peak, steady, base = -95.0, -88.0, -70.0
    ratio = (peak - base) / (steady - base)
    sag = evaluate_formula(berens["sag"].formula, np.array([ratio]))[0]
    assert sag == pytest.approx((peak - steady) / (peak - base))
    # the most spikes in one 600 ms step, as a rate
    assert evaluate_formula(berens["max_rate"].formula, np.array([30.0]))[0] == pytest.approx(50)
    # grades that carry the definitions: same rule exact, another sweep or window approximate
    assert berens["threshold_v_rheo"].grade == "exact"
    assert berens["upstroke_downstroke_ratio_rheo"].grade == "exact"
    for name in ("sag", "tau", "input_resistance", "width_rheo", "max_rate", "rheobase_i"):
        assert berens[name].grade == "approximate", name
    efel = {r.canonical: r for r in crosswalks["efel"].feature_rows if r.used}
    assert all(r.grade == "approximate" for r in efel.values())  # another extractor throughout
    ratio = evaluate_formula(
        efel["upstroke_downstroke_ratio_rheo"].formula,
        np.array([300.0]),
        {"AP_peak_downstroke": np.array([-100.0])},
    )
    assert ratio[0] == pytest.approx(3.0)


def test_formulas_are_arithmetic_only():
    parse_formula("(x - {other col}) / 1000")
    for bad in ("__import__('os')", "x.real", "y + 1", "x if x else 1", "'a'", "True"):
        with pytest.raises(ValueError):
            parse_formula(bad)
    # a division by zero is not finite, and left missing by to_canonical with a count
    assert not np.isfinite(evaluate_formula("1 - 1 / x", np.array([0.0]))[0])


def test_recognizes_the_berens_extractor_from_the_real_m1_header(m1, capsys):
    assert recognize(m1.columns).pipeline == "berens"
    cells = read_cell_table(M1)
    line = " ".join(capsys.readouterr().err.split())
    assert line.startswith("recognized the Berens lab extractor")
    assert f"of {m1.shape[1]} columns" in line and "left out: AP Fano factor" in line
    features = [c for c in cells.columns if c in FEATURE_UNITS]
    assert len(features) >= 12 and len(cells) == len(m1) == 1328
    assert cells["specimen_id"].tolist() == m1["cell id"].astype(str).tolist()
    assert cells["tau"].to_numpy() == pytest.approx(m1["Membrane time constant (ms)"] / 1000)
    assert cells["width_rheo"].median() == pytest.approx(m1["AP width (ms)"].median() / 1000)
    assert cells["sag"].between(-0.05, 1).all()  # a ratio just under 1: a tiny negative sag
    _, report = to_canonical(m1, source="m1.csv")
    assert set(report.mapped.values()) | set(report.left_out) | {"cell id"} == set(m1.columns)
    assert report.grades["threshold_v_rheo"] == "exact" and report.mapped["tau"] == (
        "Membrane time constant (ms)"
    )
    assert "\n" not in report.summary()


def test_an_ipfx_table_with_a_cell_id_column_and_an_unknown_table(tmp_path, capsys):
    table = tmp_path / "ipfx.csv"
    pd.DataFrame({"Cell ID": ["a", "b"], "tau": [0.01, 0.02]}).to_csv(table, index=False)
    assert read_cell_table(table)["specimen_id"].tolist() == ["a", "b"]
    assert capsys.readouterr().err == ""  # canonical already: no crosswalk, no line
    other = pd.DataFrame({"cell id": ["a"], "foo": [1.0], "bar": [2.0]})
    assert recognize(other.columns) is None
    with pytest.raises(Ephys2txError, match="match no known pipeline.*--feature-map"):
        to_canonical(other)


@pytest.mark.parametrize(
    ("column", "scale", "formula", "likely"),
    [
        ("AP width (ms)", 1.0, "x", "ms"),  # widths in ms where seconds are expected
        ("Membrane time constant (ms)", 1.0, "x", "ms"),
        ("Resting membrane potential (mV)", 1e-3, "x", "V"),  # voltages in V
        ("Input resistance (MOhm)", 1e-3, "x", "GOhm"),
        ("Rheobase (pA)", 1e-3, "x", "nA"),
    ],
)
def test_values_implausible_for_their_unit_are_refused_naming_the_likely_unit(
    m1, tmp_path, column, scale, formula, likely
):
    canonical = next(r.canonical for r in known_crosswalks()["berens"].rows if r.theirs == column)
    table = m1[["cell id", column]].copy()
    table[column] *= scale
    path = tmp_path / "map.csv"
    path.write_text(f"canonical,theirs,formula\n{canonical},{column},{formula}\n")
    with pytest.raises(Ephys2txError) as err:
        to_canonical(table, Crosswalk.read(path), source="lab.csv")
    message = str(err.value)
    assert "\n" not in message and f"it looks like {likely}:" in message
    assert f"`{canonical}` (from `{column}`)" in message
    # the package's own map of the real table is plausible throughout
    to_canonical(m1)


def test_plausible_ranges_cover_every_unit_and_hold_the_allen_tables(mouse_cells, human_cells):
    checked = {plausible_scale(f) for f in FEATURE_UNITS} - {"1", "rad"}
    assert checked <= set(PLAUSIBLE_RANGES)
    assert plausible_scale("width_rheo") == "s (AP)" and plausible_scale("tau") == "s"
    assert plausible_scale("trough_slowdeltav_rheo") == "mV (difference)"
    for cells in (mouse_cells, human_cells):  # real IPFX values are never refused
        check_plausible(cells, "the Allen table")


def test_a_lab_map_as_csv_and_as_yaml(tmp_path, capsys):
    table = pd.DataFrame(
        {
            "Cell": ["c1", "c2", "c3"],
            "Tau [ms]": [10.0, 20.0, 15.0],
            "Vrest": [-70.0, -65.0, np.nan],
            "Peak": [30.0, 25.0, 28.0],
            "Thr": [-40.0, -42.0, -41.0],
            "notes": ["x", "y", "z"],
        }
    )
    csv_map = tmp_path / "lab.csv"
    csv_map.write_text(
        "# my lab's pipeline\n"
        "canonical,theirs,their_unit,formula,grade,differs\n"
        "specimen_id,Cell,,x,exact,\n"
        "tau,Tau [ms],ms,x / 1000,approximate,our own fit\n"
        "v_baseline,Vrest,mV,x,exact,\n"
        "peak_deltav_rheo,Peak,mV,x - {Thr},approximate,peak minus our threshold\n"
    )
    yaml_map = tmp_path / "lab.yaml"
    yaml_map.write_text(
        "pipeline: lab\n"
        "features:\n"
        "  - {canonical: specimen_id, theirs: Cell}\n"
        "  - {canonical: tau, theirs: 'Tau [ms]', formula: x / 1000}\n"
        "  - {canonical: v_baseline, theirs: Vrest, grade: exact}\n"
        "  - {canonical: peak_deltav_rheo, theirs: Peak, formula: 'x - {Thr}'}\n"
    )
    from_csv, report = to_canonical(table, Crosswalk.read(csv_map), source="lab table")
    from_yaml, _ = to_canonical(table, Crosswalk.read(yaml_map), source="lab table")
    pd.testing.assert_frame_equal(from_csv, from_yaml)
    assert from_csv["specimen_id"].tolist() == ["c1", "c2", "c3"]
    assert from_csv["tau"].tolist() == pytest.approx([0.01, 0.02, 0.015])
    assert from_csv["peak_deltav_rheo"].tolist() == pytest.approx([70, 67, 69])
    assert np.isnan(from_csv["v_baseline"].iloc[2])  # missing stays missing
    assert report.left_out == ["notes"] and report.grades["v_baseline"] == "exact"
    assert report.summary().startswith("applied the feature map lab.csv in lab table")
    # read_cell_table applies a given map to any table
    path = tmp_path / "cells.csv"
    table.to_csv(path, index=False)
    cells = read_cell_table(path, feature_map=Crosswalk.read(yaml_map))
    assert "applied the feature map lab.yaml" in capsys.readouterr().err
    assert cells["tau"].tolist() == pytest.approx([0.01, 0.02, 0.015])


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("a.csv", "canonical,theirs\ntaus,Tau\n", "'taus' is not a canonical feature.*'tau'"),
        ("b.csv", "canonical,theirs,grade\ntau,Tau,good\n", "grade 'good' is not one of"),
        ("c.csv", "canonical,theirs,formula\ntau,Tau,open(x)\n", "line 2: formula 'open"),
        ("d.csv", "canonical,theirs\n,Tau\n", "line 2: no canonical"),
        ("e.csv", "canonical,theirs\ntau,A\ntau,B\n", "'tau' is mapped twice"),
        ("f.csv", "canonical,their column\ntau,A\n", "unknown column"),
        ("g.csv", "# only a comment\n", "has no rows"),
        ("h.yaml", "features: [canonical: tau\n", "not valid YAML"),
        ("i.yaml", "pipeline: lab\n", "expected a list of features"),
        ("j.yaml", "- {theirs: A}\n", "feature 1: no canonical"),
        ("k.txt", "canonical,theirs\n", "must be .csv, .yaml or .yml"),
    ],
)
def test_malformed_maps_are_one_line_errors(tmp_path, name, text, problem):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(Ephys2txError, match=problem) as err:
        Crosswalk.read(path)
    assert "\n" not in str(err.value)
    with pytest.raises(Ephys2txError, match="not found"):
        Crosswalk.read(tmp_path / "missing.csv")


def test_efel_tables_are_recognized():
    efel = pd.DataFrame(
        {
            "cell_id": ["a", "b"],
            "voltage_base": [-70.0, -68.0],
            "time_constant": [12.0, 20.0],
            "AP1_begin_voltage": [-40.0, -38.0],
            "AP1_amp": [70.0, 75.0],
            "AP_peak_upstroke": [300.0, 250.0],
            "AP_peak_downstroke": [-100.0, -125.0],
        }
    )
    cells, report = to_canonical(efel)
    assert report.pipeline == "efel" and report.id_column == "cell_id"
    assert cells["tau"].tolist() == pytest.approx([0.012, 0.020])
    assert cells["upstroke_downstroke_ratio_rheo"].tolist() == pytest.approx([3.0, 2.0])


# --- the default model on the features a table has -------------------------------------


def test_subset_cache_key():
    sums = {"a.csv": "0" * 64}
    default = default_model.cache_key("mouse", sums)
    assert default_model.cache_key("mouse", sums, features=None) == default  # default unchanged
    one = default_model.cache_key("mouse", sums, features=["tau", "sag"])
    assert one == default_model.cache_key("mouse", sums, features=["sag", "tau", "tau"])
    assert one != default != default_model.cache_key("mouse", sums, features=["tau"])


def test_measured_inputs_count_a_mostly_empty_column_as_absent():
    table = pd.DataFrame(
        {
            "tau": [0.01] * 10,
            "sag": [0.1] * 4 + [np.nan] * 6,  # 40%, where every reference cell has it
            "peak_freq_chirp": [5.0] * 3 + [np.nan] * 7,  # 30%, where 44% of them have it
            "condition": ["acute"] * 10,
        }
    )
    shares = {"tau": 1.0, "sag": 1.0, "peak_freq_chirp": 0.44, "v_baseline": 1.0}
    shares["condition_culture"] = 1.0
    had = default_model.measured_inputs(table, shares)
    assert had == ["tau", "peak_freq_chirp", "condition_culture"]


@pytest.mark.slow
def test_a_table_with_some_features_gets_its_own_cached_model(m1, monkeypatch, tmp_path):
    """Light settings and a data directory of its own: trains twice in seconds, not minutes."""
    monkeypatch.setitem(default_model.DEFAULT_SETTINGS, "mouse", LIGHT)
    monkeypatch.setenv("EPHYS2TX_DATA_DIR", str(tmp_path / "data"))
    cells, _ = to_canonical(m1)
    inputs = default_model.default_inputs("mouse")
    said: list[str] = []
    first = default_model.default_model_for_table("mouse", cells, say=said.append, n_jobs=1)
    subset = default_model.measured_inputs(cells, inputs)
    assert 3 <= len(subset) < len(inputs)
    assert f"on {len(subset)} features on first use" in said[0]
    assert f"measure {len(subset)} of the mouse default model's {len(inputs)}" in said[-1]
    card = json.loads((first / "model.json").read_text())
    assert sorted(card["features"]) == sorted(subset)
    f1 = card["hierarchy"]["oof_macro_f1"]
    assert 0.2 < f1 < 1 and f"macro-F1 {f1:.3f}" in said[-1]
    stamp = (first / "model.skops").stat().st_mtime_ns
    again = default_model.default_model_for_table("mouse", cells, say=said.append, n_jobs=1)
    assert again == first and "using the cached" in said[-2]
    assert (first / "model.skops").stat().st_mtime_ns == stamp  # reused, not retrained
    # the CLI: the M1 table as published, then a lab's own names for the same columns through
    # --feature-map; both reuse the cached model (same feature set), one row per cell
    runner = CliRunner()
    table = tmp_path / "m1.csv"
    m1.head(60).to_csv(table, index=False)
    out = tmp_path / "p.csv"
    result = runner.invoke(app, ["predict", "--species", "mouse", str(table), "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    text = " ".join(result.output.split())
    assert "recognized the Berens lab extractor" in text and "using the cached" in text
    assert f"measure {len(subset)} of the mouse default model's" in text
    predictions = pd.read_csv(out)
    assert predictions["specimen_id"].tolist() == m1.head(60)["cell id"].tolist()
    berens = [
        r for r in known_crosswalks()["berens"].rows if r.used or r.canonical == "specimen_id"
    ]
    names = {theirs: f"lab {k}" for k, theirs in enumerate(dict.fromkeys(r.theirs for r in berens))}
    m1.head(60).rename(columns=names).to_csv(table, index=False)
    lab_map = tmp_path / "lab.csv"
    rows = "".join(f"{r.canonical},{names[r.theirs]},{r.formula}\n" for r in berens)
    lab_map.write_text("canonical,theirs,formula\n" + rows)
    result = runner.invoke(
        app,
        ["predict", "--species", "mouse", str(table), "--feature-map", str(lab_map),
         "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "applied the feature map lab.csv" in " ".join(result.output.split())
    assert pd.read_csv(out)["predicted"].equals(predictions["predicted"])
    fewer = cells.drop(columns=["tau"])
    other = default_model.default_model_for_table("mouse", fewer, say=said.append, n_jobs=1)
    assert other != first and first.is_dir()  # both feature sets stay cached
    # a table with every input: the default model, no subset
    full = default_model.default_training_cells("mouse")
    assert default_model.subset_for_table("mouse", full) is None
    with pytest.raises(Ephys2txError, match="measure 1 of the mouse default model"):
        default_model.subset_for_table("mouse", cells[["specimen_id", "tau"]])


def test_the_guide_shows_every_row_of_the_package_file():
    """docs/guides/crosswalks.md prints the package file's rows: they stay in step."""
    guide = (Path(__file__).resolve().parents[1] / "docs/guides/crosswalks.md").read_text()
    for cw in known_crosswalks().values():
        for row in cw.rows:
            assert f"| `{row.theirs}` |" in guide, row.theirs
            line = next(
                x
                for x in guide.splitlines()
                if x.startswith(f"| `{row.theirs}` |") and f"| {row.grade} | {row.differs} |" in x
            )
            assert (f"`{row.canonical}`" in line) == bool(row.canonical)


def test_the_m1_files_are_pinned_and_leave_the_reference_keys_alone():
    from ephys2tx.datasets.sources import DATA_FILES

    for name in ("m1_patchseq_ephys_features.csv", "m1_patchseq_meta_data.csv"):
        entry = DATA_FILES[f"mouse_scala2021/{name}"]
        assert entry.repo == "berenslab/mini-atlas" and entry.path == f"data/{name}"
        assert entry.url.endswith(f"/3bf98a524b8e48aa8647e1b9ae8f2351d9c712c9/data/{name}")
    # the default models are trained from their own studies' files only: cached keys stay
    for species in ("mouse", "human"):
        assert not any("scala" in n for n in default_model.data_files(species))
