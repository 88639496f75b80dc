"""`ephys2tx demo`: SYNTHETIC cohort -> extraction on Dask -> models -> report, offline.

One small end-to-end run (2 cells per subclass, 2 folds, no UMAP section: UMAP's compilation would
double its time) is shared by the tests of this module; the
join of extracted features to the cohort's labels is tested on its own without simulating.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ephys2tx.datasets.cells import ID_COLUMNS
from ephys2tx.errors import Ephys2txError
from ephys2tx.features.families import SCALAR_FEATURES
from ephys2tx.report.results import SCHEMA_VERSION, read_results, to_dict
from ephys2tx.study import run as demo_module
from ephys2tx.study import sources


def test_synthetic_cells_take_labels_and_donors_from_the_cohort_by_file_name():
    cohort = pd.DataFrame(
        {
            "specimen_id": [9000000000, 9000000001, 9000000002],
            "species": "mouse",
            "donor": ["synth-mouse-donor1", "synth-mouse-donor2", "synth-mouse-donor1"],
            "subclass": ["Sncg", "Pvalb", "Sst"],
            "label": ["Vip", "Pvalb", "Sst"],
            "label5": ["Sncg", "Pvalb", "Sst"],
            "file": ["a.nwb", "b.nwb", "c.nwb"],
        }
    )
    # extraction order differs from the cohort's; c.nwb failed and has no row
    extracted = pd.DataFrame(
        {
            "specimen_id": ["synth_b", "synth_a"],
            "species": "mouse",
            "donor": [None, None],
            "subclass": [None, None],
            "status": ["ok", "partial"],
            "file": ["/x/recordings/mouse/b.nwb", "/x/recordings/mouse/a.nwb"],
            **{f: [np.nan, np.nan] for f in SCALAR_FEATURES},
        }
    )
    extracted.loc[0, "tau"] = 12.5
    cells = sources.synthetic_cells(cohort, extracted).set_index("specimen_id")
    assert list(cells.reset_index().columns) == list(ID_COLUMNS) + SCALAR_FEATURES + [
        "extraction_status"
    ]
    assert sorted(cells.index) == [9000000000, 9000000001]
    assert cells.loc[9000000001, "tau"] == 12.5  # features stay with their own file
    assert np.isnan(cells.loc[9000000000, "tau"])  # missing stays NaN, not zero
    assert cells.loc[9000000000, ["label", "label5"]].tolist() == ["Vip", "Sncg"]
    assert cells.loc[9000000000, "donor"] == "synth-mouse-donor1"
    assert cells.loc[9000000001, "extraction_status"] == "ok"


def test_demo_refuses_sizes_too_small_for_grouped_folds(tmp_path):
    with pytest.raises(Ephys2txError, match="--n-per-class 2"):
        demo_module.demo(tmp_path, n_per_class=2)
    with pytest.raises(Ephys2txError, match="--workers"):
        demo_module.demo(tmp_path, workers=0)


# the smallest run with donor-grouped folds: 2 cells per subclass, 2 folds x 2 repeats
SMALL = {
    "n_per_class": 2,
    "seed": 3,
    "workers": min(2, os.cpu_count() or 1),  # the demo refuses more workers than cores
    "progress": False,
    "embedding": False,
    "folds": 2,
}


def test_demo_command_is_registered_and_checks_its_options(tmp_path):
    from typer.testing import CliRunner

    from ephys2tx.cli import app

    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--n-per-class", "2"])
    assert isinstance(result.exception, Ephys2txError)  # main() prints it as one line
    assert "--n-per-class 2 is too small" in str(result.exception)
    assert not (tmp_path / "steps").exists()  # refused before any work


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    start = time.perf_counter()
    results = demo_module.demo(out, **SMALL)
    return out, results, time.perf_counter() - start


@pytest.mark.slow
def test_demo_cohort_goes_through_extraction_into_cell_tables(demo_run):
    out, results, _ = demo_run
    for species, n_classes in (("mouse", 5), ("human", 4)):
        cohort = pd.read_csv(out / "recordings" / species / "cohort.csv")
        assert len(cohort) == 2 * n_classes
        assert cohort["synthetic"].all()
        cells = pd.read_parquet(out / "cells" / f"{species}.parquet")
        data = results.data[species]
        assert data.n_input == len(cohort)
        assert data.n_kept == len(cells) == len(cohort) - sum(data.dropped.values())
        # labels come from the cohort, features from the extracted NWB files
        merged = cells.merge(cohort, on="specimen_id", suffixes=("", "_cohort"))
        assert (merged["subclass"] == merged["subclass_cohort"]).all()
        assert (merged["donor"] == merged["donor_cohort"]).all()
        assert cells["input_resistance"].notna().all()
        assert data.n_features > 40
    features = pd.read_parquet(out / "features" / "cells.parquet")
    assert len(features) + len(pd.read_csv(out / "features" / "errors.csv")) == 18


@pytest.mark.slow
def test_demo_evaluates_and_saves_models(demo_run):
    from ephys2tx.models.bundle import load_model, predict_table

    out, results, _ = demo_run
    assert set(results.forest) == {
        "rf_mouse_label5_raw_grouped",
        "rf_mouse_label_raw_grouped",
        "rf_human_label_raw_grouped",
    }
    for run in results.forest.values():
        assert 0.0 <= run.scores.macro_f1["mean"] <= 1.0
        assert run.scores.n_folds == 2 and run.scores.n_repeats == 2
        assert (out / "figures" / run.figure.file).is_file()
    scores = results.sequence.scores
    assert set(scores) == {"transfer_rf", "transfer_bilstm_human", "transfer_transfer_finetune"}
    assert all(r.scores.macro_f1["n"] == 4 for r in scores.values())  # the same 2 x 2 folds
    assert set(results.sequence.paired) == {
        "rf − bilstm_human @ 100%",
        "transfer_finetune − bilstm_human @ 100%",
    }
    human = pd.read_parquet(out / "cells" / "human.parquet")
    for name in ("rf-human", "bilstm-human", "transfer-finetune-human"):
        model, card = load_model(out / results.models[name])
        assert card.provenance.synthetic is True
        predicted = predict_table(model, card, human)
        assert set(predicted["predicted"]) <= set(card.classes)
        assert np.allclose(predicted.filter(like="p_").sum(axis=1), 1.0, atol=1e-5)
    mouse_model, mouse_card = load_model(out / "models" / "rf-mouse")
    assert mouse_card.label == "label5" and "Sncg" in mouse_card.classes


@pytest.mark.slow
def test_demo_report_says_synthetic_on_every_section(demo_run):
    out, results, _ = demo_run
    page = (out / "report.html").read_text()
    stored = json.loads((out / "results.json").read_text())
    assert stored["synthetic"] is True and stored["schema_version"] == SCHEMA_VERSION
    assert read_results(out / "results.json") == results
    sections = re.findall(r"<h2 id='([a-z]+)'", page)
    assert {"data", "forest", "sequence"} <= set(sections)
    assert "SYNTHETIC" in page.split("<h1")[1].split("<h2")[0]  # the title block
    for heading in re.finditer("</h2>", page):  # a banner right under each section's heading
        assert "SYNTHETIC" in page[heading.end() : heading.end() + 80]
    expected = len(results.forest) + len(results.sequence.figures)
    expected += sum(i.figure is not None for i in results.importance.values())
    assert page.count("data:image/png;base64,") == expected  # every figure inlined


@pytest.mark.slow
def test_results_markdown_lists_every_paired_difference(demo_run):
    from ephys2tx.report.markdown import results_markdown

    _, results, _ = demo_run
    table = results_markdown(results)
    paired = results.sequence.paired
    assert paired, "the demo's transfer study compares variants"
    for name, d in paired.items():
        assert f"| {name} | {d.mean:+.3f} |" in table


@pytest.mark.slow
def test_demo_rerun_reuses_every_step_without_a_cluster(demo_run, monkeypatch):
    out, results, _ = demo_run

    def no_cluster(self):
        raise AssertionError("a cached rerun must not start a Dask cluster")

    monkeypatch.setattr(sources._Cluster, "get", no_cluster)
    start = time.perf_counter()
    again = demo_module.demo(out, **SMALL)
    assert time.perf_counter() - start < 20
    assert [t.reused for t in again.timings] == [True] * len(again.timings)
    again.timings = results.timings  # the only field that says which steps ran
    same = [json.dumps(to_dict(r), sort_keys=True, default=float) for r in (again, results)]
    assert same[0] == same[1]


@pytest.mark.slow
def test_steps_side_by_side_give_the_records_of_steps_one_at_a_time(demo_run, tmp_path):
    """`reproduce` runs its steps two at a time in worker processes; the demo, one at a time
    in-process. Rerun the demo's study steps (its cohort kept) in 2 lanes: same records."""
    out, results, _ = demo_run
    again_dir = tmp_path / "demo"
    shutil.copytree(out, again_dir)
    steps = {t.step for t in results.timings} - {"cohort", "data"}
    for name in steps:
        (again_dir / "steps" / f"{name}.json").unlink()
    again = demo_module.demo(again_dir, **SMALL, lanes=2)
    assert {t.step for t in again.timings if not t.reused} == steps
    again.timings = results.timings
    same = [json.dumps(to_dict(r), sort_keys=True, default=float) for r in (again, results)]
    assert same[0] == same[1]


@pytest.mark.slow
def test_demo_report_in_headless_chromium(demo_run, tmp_path):
    from test_report_browser import check_report, ensure_chromium

    out, _, _ = demo_run
    probe = check_report(ensure_chromium(), out, tmp_path, "demo_report.png")
    assert {"data", "forest", "sequence"} <= {t["section"] for t in probe["tables"]}


def test_sequence_section_keeps_both_protocols_apart():
    from ephys2tx.report.results import NetworkRun, PairedDifference, Scores, TransferStudy

    def step(f1: float, protocol: str) -> TransferStudy:
        scores = Scores(
            "transfer_align", "human", "label", protocol, 10, 5, 1, {"mean": f1}, {}, {}
        )
        diff = PairedDifference("transfer_align", "bilstm_human", 1.0, protocol, 0.01, [0, 0], 5, 3)
        run = NetworkRun("transfer_align", "transfer_align", scores)
        return TransferStudy(protocol, {"transfer_align": run}, [diff], [], [])

    merged = demo_module.sequence_section([], [step(0.8, "grouped"), step(0.7, "seed")], [])
    scores = merged.scores
    assert scores["transfer_transfer_align"].scores.macro_f1["mean"] == 0.8
    assert scores["transfer_seed_transfer_align"].scores.macro_f1["mean"] == 0.7
    assert set(merged.paired) == {
        "transfer_align − bilstm_human @ 100%",
        "transfer_align − bilstm_human @ 100%, seed protocol",
    }


EXPECTED = Path(__file__).parent / "data" / "demo_small_expected.json"
TOLERANCE = 1e-6  # seeded forests and networks on CPU: equal up to float rounding


def _scores(s) -> dict:
    return {
        "macro_f1_mean": s.macro_f1["mean"],
        "macro_f1_sd": s.macro_f1["sd"],
        "accuracy_mean": s.accuracy["mean"],
        "per_class_f1": s.per_class_f1,
    }


@pytest.mark.slow
def test_demo_records_match_the_stored_expected_values(demo_run):
    """A refactor that changes a number of the small demo fails here (regenerate on purpose)."""
    _, results, _ = demo_run
    expected = json.loads(EXPECTED.read_text())
    got = {
        "data": {sp: d.n_kept for sp, d in results.data.items()},
        "forest": {k: _scores(r.scores) for k, r in results.forest.items()},
        "sequence": {k: _scores(r.scores) for k, r in results.sequence.scores.items()},
        "paired": {k: d.mean for k, d in results.sequence.paired.items()},
        "importance": {row["family"]: row["mean"] for row in results.importance["human"].table},
    }
    flat_got, flat_expected = _flatten(got), _flatten({k: expected[k] for k in got})
    assert flat_got.keys() == flat_expected.keys()
    assert flat_got == pytest.approx(flat_expected, abs=TOLERANCE)


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
