"""results.json is written and read as typed records, in one schema version."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ephys2tx.errors import Ephys2txError
from ephys2tx.report import results as r
from ephys2tx.study.settings import StudySettings


def _scores(f1: float) -> r.Scores:
    return r.Scores("rf-raw", "human", "label", "grouped", 702, 5, 3, {"mean": f1}, {}, {})


def test_records_round_trip_through_results_json(tmp_path):
    run = r.ForestRun("human", "label", "raw", "grouped", _scores(0.78), r.Figure("c.png", "c"))
    paired = r.PairedDifference(
        "transfer_align", "bilstm_human", 0.25, "seed", 0.01, [0, 0.02], 5, 3
    )
    results = r.StudyResults(
        ephys2tx_version="x",
        forest=r.keyed([run]),
        sequence=r.SequenceSection({}, r.keyed([paired]), [r.Figure("a.png", "a")], [], []),
        timings=[r.StepTiming("data", 0.5, True)],
    )
    path = r.write_results(results, tmp_path / "results.json")
    stored = json.loads(path.read_text())
    assert list(stored["forest"]) == ["rf_human_label_raw_grouped"]  # the key comes from the record
    assert list(stored["sequence"]["paired"]) == [
        "transfer_align − bilstm_human @ 25%, seed protocol"
    ]
    again = r.read_results(path)
    assert again == results
    assert isinstance(again.forest["rf_human_label_raw_grouped"].figure, r.Figure)
    assert again.timings[0].reused is True


def test_results_of_another_schema_are_refused(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"forest": {}}))  # written before records had a version
    with pytest.raises(Ephys2txError, match="results schema None"):
        r.read_results(path)


def test_presets_are_one_settings_class():
    quick = StudySettings.preset_named("quick", seed=4)
    demo = StudySettings.preset_named("demo", folds=2)
    assert quick.seed == 4 and quick.forest_trees == 100 and len(quick.forest_runs) == 5
    assert demo.folds == 2 and demo.save_networks and not demo.default_models
    # each protocol knows its repeats: 1 x 3 grouped folds and 2 seeds in the quick run
    assert quick.forest_splitter("grouped", "human").get_n_splits() == 3
    assert quick.forest_splitter("seed", "mouse").get_n_splits() == 2
    assert quick.transfer_splitter("grouped").get_n_splits() == 3
    with pytest.raises(Ephys2txError, match="unknown preset"):
        StudySettings.preset_named("tiny")


def test_full_preset_sections_run_the_first_repeat_of_the_benchmarks_folds():
    """The trust, reference and transfer sections run 5 x 1 folds: exactly the first repeat of
    the 5 x 3 the forests (and benchmarks/) use, so each of their folds scores as there."""
    full = StudySettings.preset_named("full")
    rng = np.random.default_rng(0)
    y = rng.choice(list("abcd"), 300)
    donors = rng.integers(0, 40, 300).astype(str)
    forest = full.forest_splitter("grouped", "human").folds(y, donors)
    assert len(forest) == 15
    for sections in (full.nested_splitter(), full.transfer_splitter("grouped")):
        folds = sections.folds(y, donors)
        assert len(folds) == 5
        for a, b in zip(folds, forest[:5], strict=True):
            assert (a.repeat, a.fold) == (b.repeat, b.fold)
            assert np.array_equal(a.train, b.train) and np.array_equal(a.test, b.test)
    # the study's protocol: one seed, the first of the benchmark's, 5 folds
    seed_folds = full.transfer_splitter("seed").folds(y)
    assert len(seed_folds) == 5 and {f.repeat for f in seed_folds} == {0}
