"""The hierarchical default model: level consistency, nested sets, the out-of-the-box
cache (reuse and invalidation) and both `predict` forms, on real human cells."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from conftest import LIGHT_DEFAULT_SETTINGS
from typer.testing import CliRunner

from ephys2tx import default_model
from ephys2tx.cli import app
from ephys2tx.datasets.cells import usable_features
from ephys2tx.datasets.fetch import sha256_of
from ephys2tx.datasets.sources import DATA_FILES
from ephys2tx.datasets.taxonomy import build_taxonomy
from ephys2tx.models.bundle import load_model
from ephys2tx.models.ensemble import soft_vote
from ephys2tx.models.hierarchy import (
    CONDITION_FEATURE,
    HierarchicalClassifier,
    assign_levels,
    model_inputs,
    sum_to_subclass,
)
from ephys2tx.models.mapping import map_cells
from ephys2tx.models.members import boosting, forest
from ephys2tx.models.trusted import load_training_summary

LIGHT = LIGHT_DEFAULT_SETTINGS  # trains in seconds; the defaults are measured in benchmarks/
RF = forest(25)
RF_HGB = soft_vote([("rf", RF), ("hgb", boosting())])


@pytest.mark.parametrize(
    "settings",
    [
        {"subclass_estimator": RF, "t_type_model": "per-subclass", "t_type_estimator": RF},
        {"subclass_estimator": RF_HGB, "t_type_model": "flat", "t_type_estimator": RF},
        {"subclass_estimator": None, "t_type_model": "flat", "t_type_estimator": RF},
        {
            "subclass_estimator": RF,
            "t_type_model": "per-subclass",
            "t_type_estimator": RF,
            "subclass_temperature": 0.5,
        },
    ],
)
def test_t_type_distribution_sums_to_the_subclass_distribution(human_cells, settings):
    tax = build_taxonomy(human_cells, "human")
    leaves = tax.leaf_labels(human_cells["t_type"], human_cells["label"])
    features = usable_features(human_cells) + [CONDITION_FEATURE]
    X = model_inputs(human_cells, features)
    train = human_cells.index % 4 != 0
    model = HierarchicalClassifier(tax, **settings)
    model.fit(X[train], leaves[train])
    levels = model.predict_proba_levels(X[~train])
    sub, leaf = levels["subclass"].to_numpy(), levels["t_type"].to_numpy()
    assert np.allclose(sub.sum(axis=1), 1) and np.allclose(leaf.sum(axis=1), 1)
    summed = sum_to_subclass(leaf, list(levels["t_type"].columns), tax.parent, list(tax.subclasses))
    assert np.allclose(summed, sub)
    assert list(levels["t_type"].columns) == tax.leaves
    # the model learned something: subclass accuracy well above the 0.25 of chance
    truth = human_cells.loc[~train, "label"].to_numpy()
    assert (levels["subclass"].idxmax(axis=1).to_numpy() == truth).mean() > 0.6
    if "subclass_temperature" in settings:  # sharper, same top class, same t-type split
        plain = model.set_params(subclass_temperature=1.0).predict_proba_levels(X[~train])
        p_sub, p_leaf = plain["subclass"].to_numpy(), plain["t_type"].to_numpy()
        assert (sub.max(axis=1) >= p_sub.max(axis=1) - 1e-9).all()
        assert (sub.max(axis=1) > p_sub.max(axis=1) + 0.01).mean() > 0.5
        assert (sub.argmax(axis=1) == p_sub.argmax(axis=1)).all()
        owner = [list(tax.subclasses).index(tax.parent[c]) for c in levels["t_type"].columns]
        kept = p_sub[:, owner] > 1e-9
        held, plain_held = sub[:, owner], p_sub[:, owner]
        assert np.allclose(leaf[kept] / held[kept], p_leaf[kept] / plain_held[kept])


def toy_taxonomy(n_sst_a: int):
    """Sst A (n_sst_a cells), Sst B and Vip C (10 each), and one rare t-type per subclass."""
    t_types = ["Sst A"] * n_sst_a + ["Sst B"] * 10 + ["Vip C"] * 10 + ["Sst r", "Vip r"]
    labels = ["Sst"] * (n_sst_a + 10) + ["Vip"] * 10 + ["Sst", "Vip"]
    return build_taxonomy(pd.DataFrame({"t_type": t_types, "label": labels}), "human")


def test_t_type_set_lies_inside_the_subclass_set():
    tax = toy_taxonomy(n_sst_a=10)
    leaves = tax.leaves
    assert leaves == ["Sst", "Sst A", "Sst B", "Vip", "Vip C"]  # rare `r` types: subclass level
    sub = pd.DataFrame([[0.7, 0.3], [0.6, 0.4]], columns=["Sst", "Vip"])
    leaf = pd.DataFrame([[0.0, 0.5, 0.2, 0.0, 0.3], [0.0, 0.3, 0.3, 0.0, 0.4]], columns=leaves)
    sets = {
        "subclass": np.array([[True, False], [True, False]]),
        "t_type": np.array([[False, True, False, False, True], [False, False, False, False, True]]),
    }
    mapping = map_cells([1, 2], {"subclass": sub, "t_type": leaf}, tax, sets, alpha=0.1)
    table = mapping.table
    assert table.loc[0, "t_type_set"] == "Sst A"  # Vip C dropped: Vip not in the subclass set
    assert table.loc[0, "most_specific"] == "Sst A"
    assert table.loc[1, "t_type_set"] == ""  # emptied: the cell stays at subclass level
    assert table.loc[1, "most_specific"] == "Sst"
    assert table.loc[1, "most_specific_level"] == "subclass"
    assert "stays at subclass level" in mapping.json["results"][1]["t_type"]["note"]
    assert table.loc[0, "predicted"] == "Sst" and table.loc[0, "p_Sst"] == 0.7


def test_prior_corrected_t_type_rule_stays_inside_the_chosen_subclass():
    tax = toy_taxonomy(n_sst_a=40)
    leaves = tax.leaves  # Sst, Sst A, Sst B, Vip, Vip C
    prior = np.array([1, 40, 10, 1, 10]) / 62
    leaf_p = np.array(
        [
            [0.02, 0.30, 0.20, 0.03, 0.45],  # Vip C alone beats Sst A, but Sst wins as subclass
            [0.00, 0.40, 0.30, 0.05, 0.25],  # Sst B is rarer than Sst A: a positive beta picks it
            [0.40, 0.10, 0.05, 0.05, 0.40],  # the subclass-level leaf is likeliest
        ]
    )
    base_sub, base = assign_levels(leaf_p, leaves, tax)
    assert list(base) == ["Sst A", "Sst A", "Sst"]
    rng = np.random.default_rng(0)
    random_p = rng.dirichlet(np.ones(5), size=200)
    for beta in (-1.0, -0.25, 0.0, 0.5, 1.0):
        for learned in (False, True):
            sub, leaf = assign_levels(leaf_p, leaves, tax, prior, beta, learned)
            assert list(sub) == list(base_sub) == ["Sst", "Sst", "Sst"]  # beta never moves it
            r_sub, r_leaf = assign_levels(random_p, leaves, tax, prior, beta, learned)
            assert all(tax.parent[t] == s for t, s in zip(r_leaf, r_sub, strict=True))
            if learned:
                assert all(tax.is_resolved(t) for t in r_leaf)
    assert list(assign_levels(leaf_p, leaves, tax, prior, 0.0)[1]) == list(base)
    assert assign_levels(leaf_p, leaves, tax, prior, 1.0)[1][1] == "Sst B"
    assert assign_levels(leaf_p, leaves, tax, prior, 0.0, learned_first=True)[1][2] == "Sst A"
    # the fitted model applies its own rule with its training shares, in predict and assign
    cells = pd.DataFrame(
        {
            "a": np.r_[np.zeros(40), np.ones(10), np.full(10, 2.0), 0.0, 2.0],
            "b": rng.normal(size=62),
        }
    )
    y = tax.leaf_labels(
        pd.Series(["Sst A"] * 40 + ["Sst B"] * 10 + ["Vip C"] * 10 + ["Sst r", "Vip r"]),
        pd.Series(["Sst"] * 50 + ["Vip"] * 10 + ["Sst", "Vip"]),
    )
    model = HierarchicalClassifier(
        tax, forest(10), "per-subclass", forest(10), t_type_beta=0.5
    ).fit(cells, y)
    assert np.allclose(model.leaf_prior_, prior)
    p = model.predict_proba(cells)
    assert list(model.predict(cells)) == list(assign_levels(p, leaves, tax, prior, 0.5)[1])


@pytest.fixture
def light_default(monkeypatch, tmp_path):
    """A data directory of its own and light settings, so the first use trains in seconds."""
    monkeypatch.setitem(default_model.DEFAULT_SETTINGS, "human", LIGHT)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("EPHYS2TX_DATA_DIR", str(data_dir))
    return data_dir


@pytest.mark.slow
def test_cache_is_reused_and_invalidated(light_default_models, light_default, monkeypatch):
    trained = light_default_models.model_dir("human")  # the session's, trained on first use
    first_use = light_default_models.messages["human"]
    assert "on first use" in first_use[-1] and str(trained) in first_use[-1]
    # this test damages the cache: it works on a copy of that data directory
    shutil.copytree(light_default_models.data_dir, light_default)
    first = light_default / trained.relative_to(light_default_models.data_dir)
    said: list[str] = []
    card = json.loads((first / "model.json").read_text())
    calibration = json.loads((first / "calibration.json").read_text())
    assert card["kind"] == "hierarchical" and set(calibration["levels"]) == {"subclass", "t_type"}
    assert card["hierarchy"]["taxonomy"]["min_cells"] == 10
    # the subclass temperature, fitted on the out-of-fold probabilities, is what predict applies
    temperature = card["hierarchy"]["subclass_temperature"]
    assert calibration["temperature"] == temperature and calibration["temperature_in_estimator"]
    model, _ = load_model(first)
    assert model.subclass_temperature == temperature and abs(temperature - 1) > 0.01
    # `novel` is the combined flag (novelty with the out-of-fold top probability), as for
    # every saved model, calibrated on every training cell's out-of-fold top probability
    flag = load_training_summary(first).novel_flag
    assert flag is not None and len(flag.uncertainty) == card["n_train_cells"]
    assert 0 < flag.threshold < 1
    stamp = (first / "model.skops").stat().st_mtime_ns
    again = default_model.cached_default_model("human", say=said.append, n_jobs=1)
    assert again == first and "using the cached" in said[-1]
    assert (first / "model.skops").stat().st_mtime_ns == stamp  # not retrained

    # a damaged cached model (the cache is derived data): trained again, not an error
    (first / "model.skops").write_bytes(b"truncated")
    repaired = default_model.cached_default_model("human", say=said.append, n_jobs=1)
    assert repaired == first and "again: the cached one is unreadable" in said[-1]
    assert load_training_summary(repaired).novel_flag is not None

    # a changed data file (a new pinned release: file and pin change together): a new key,
    # a retrained model, the stale one removed
    name = "human_lee2023/LeeDalley_manuscript_metadata_v2.csv"
    with open(light_default / name, "a") as handle:
        handle.write("\n")
    new_pin = sha256_of(light_default / name)
    monkeypatch.setitem(DATA_FILES, name, replace(DATA_FILES[name], sha256=new_pin))
    changed = default_model.cached_default_model("human", say=said.append, n_jobs=1)
    assert changed != first and "on first use" in said[-1]
    assert not first.exists()

    # a new package version: retrained too
    monkeypatch.setattr(default_model, "__version__", "999.0")
    bumped = default_model.cached_default_model("human", say=said.append, n_jobs=1)
    assert bumped != changed and "on first use" in said[-1]


@pytest.mark.slow
def test_both_predict_forms(use_light_default_models, human_forest, human_cells, tmp_path):
    cells = tmp_path / "cells.csv"
    human_cells.head(40).to_csv(cells, index=False)
    runner = CliRunner()
    out = tmp_path / "pred.csv"
    result = runner.invoke(
        app,
        [
            "predict",
            "--species",
            "human",
            str(cells),
            "--out",
            str(out),
            "--json",
            str(out) + ".json",
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    table = pd.read_csv(out)
    for column in (
        "predicted", "p_Pvalb", "subclass", "subclass_probability", "subclass_runner_up",
        "subclass_set", "t_type", "t_type_probability", "t_type_runner_up", "t_type_set",
        "most_specific", "prediction_set", "confident", "novelty", "flags",
    ):  # fmt: skip
        assert column in table.columns
    assert len(table) == 40
    # the trust columns of the default model: the subclass set is the prediction set
    assert table["prediction_set"].equals(table["subclass_set"])
    single = table["subclass_set"].str.count(r"\|") == 0
    assert (table["confident"] <= single).all() and table["novelty"].between(0, 1).all()
    assert (table["predicted"] == human_cells.head(40)["label"].to_numpy()).mean() > 0.6
    payload = json.loads((tmp_path / "pred.csv.json").read_text())
    record = payload["results"][0]
    assert set(record) >= {"cell_id", "subclass", "t_type", "most_specific"}
    assert abs(sum(record["t_type"]["distribution"].values()) - 1) < 1e-6
    assert payload["metadata"]["species"] == "human"

    # the existing form, MODEL_DIR CELLS, on the cached default model and on a forest
    model_dir = use_light_default_models.model_dir("human")
    out2 = tmp_path / "pred2.csv"
    result = runner.invoke(app, ["predict", str(model_dir), str(cells), "--out", str(out2)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert pd.read_csv(out2)["t_type"].equals(table["t_type"])
    rf_dir = human_forest.model_dir  # `ephys2tx train rf`, once per session
    result = runner.invoke(app, ["predict", str(rf_dir), str(cells), "--out", str(out2)])
    assert result.exit_code == 0 and "t_type" not in pd.read_csv(out2).columns

    # a partial table with one family in the wrong unit: missing columns are NaN with one
    # warning line, the scaled cells are flagged and never confident
    broken = human_cells.head(10).drop(columns=["tau", "input_resistance"])
    broken["upstroke_downstroke_ratio_hero"] *= 1000
    broken.to_csv(tmp_path / "broken.csv", index=False)
    result = runner.invoke(app, ["predict", str(model_dir), str(tmp_path / "broken.csv"),
                                 "--out", str(out2)])  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "lacks 2 model column(s)" in " ".join(result.output.split())
    flagged = pd.read_csv(out2, keep_default_na=False)
    scaled = broken["upstroke_downstroke_ratio_hero"].notna().to_numpy()  # NaN x 1000 is NaN
    assert scaled.sum() >= 5
    hit = flagged["flags"].str.contains("out_of_range:upstroke_downstroke_ratio_hero")
    assert hit[scaled].all()
    assert not flagged["confident"].any()

    # the per-cell report of the default model: 5 nearest training cells per card
    report = tmp_path / "cells.html"
    result = runner.invoke(
        app, ["predict", str(model_dir), str(cells), "--out", str(out2), "--report", str(report)]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    page = report.read_text(encoding="utf-8")
    assert page.count("<details class='card'") == 40
    assert page.count("<table class='neighbours'>") == 40

    # both a model directory and --species: a clear error
    result = runner.invoke(app, ["predict", "--species", "human", str(rf_dir), str(cells)])
    assert result.exit_code != 0 and "not both" in str(result.exception)


@pytest.mark.slow
def test_evaluate_reference_scores_both_levels_and_reports(light_default, tmp_path):
    from ephys2tx.report.html import render_report
    from ephys2tx.report.results import StudyResults
    from ephys2tx.study.settings import StudySettings
    from ephys2tx.study.sources import PublicCells
    from ephys2tx.study.steps import Study

    study = Study(tmp_path / "study", StudySettings.preset_named("quick"), PublicCells())
    brief = study.default_model("human")
    levels = brief.levels
    assert brief.n_t_types == 18 and brief.n_repeats == 1
    # honest scores: subclass far above chance (0.25), t-types above chance (1/22)
    assert levels["subclass"]["macro_f1"]["mean"] > 0.6
    assert 0.1 < levels["t_type"]["accuracy"]["mean"] < levels["subclass"]["accuracy"]["mean"]
    # nested t-type sets at alpha 0.1 (t-type level at alpha/2): coverage near 0.9
    assert levels["t_type"]["coverage"]["mean"] > 0.8
    assert levels["subclass"]["mean_set_size"]["mean"] <= levels["t_type"]["mean_set_size"]["mean"]
    for figure in brief.figures:
        assert (study.figures / figure.file).stat().st_size > 10_000
    metrics = json.loads(
        (tmp_path / "study" / "default-model" / "human" / "metrics.json").read_text()
    )
    # the subclass temperature, nested in each outer training fold, lowers the ECE
    assert 0 <= metrics["subclass"]["ece"] < metrics["subclass"]["ece_unscaled"]
    assert metrics["subclass"]["temperature_median"] != 1.0
    assert {t["t_type"] for t in metrics["per_t_type"]} == set(
        build_taxonomy(study.cells("human"), "human").t_types
    )
    page = render_report(StudyResults(default_model={"human": brief}), study.figures)
    assert "default_model.human.levels.t_type.coverage.mean" in page and "data:image/png" in page


def test_train_reference_refuses_an_existing_model_before_training(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "model.json").write_text("{}")
    result = CliRunner().invoke(
        app, ["train", "reference", "--species", "human", "--out", str(model_dir)]
    )
    assert result.exit_code != 0 and "--overwrite" in str(result.exception)
