"""Trust in calls: coverage with known answers, stored calibration, every flag, partial tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ephys2tx.datasets.cells import usable_features
from ephys2tx.errors import Ephys2txError
from ephys2tx.evaluation.splits import DonorKFold, donor_kfold
from ephys2tx.evaluation.trust import (
    accuracy_by_share_called,
    evaluate_trust,
    expected_calibration_error,
)
from ephys2tx.features.families import SCALAR_FAMILIES
from ephys2tx.models.bundle import ModelCard
from ephys2tx.models.trusted import (
    Trust,
    TrustedModel,
    fit_flat_trust,
    fit_training_summary,
    save_trained,
)
from ephys2tx.trust.assess import TrainingSummary
from ephys2tx.trust.calibrate import OutOfFold, calibrate
from ephys2tx.trust.novelty import NovelFlag, NoveltyBaseline
from ephys2tx.trust.species import (
    FALSE_ALARM,
    FALSE_ALARM_BY_SPECIES,
    MISMATCH_BELOW,
    SpeciesFingerprint,
)
from ephys2tx.trust.temperature import Temperature

FAMILIES = {f.name: f.columns[:3] for f in SCALAR_FAMILIES[:3]}  # 3 families x 3 features
FEATURES = [c for cols in FAMILIES.values() for c in cols]


def logistic():
    return make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression())


def fit_calibration(estimator, X, y, donors, cv):
    """(conformal, temperature) of a flat model's donor-grouped out-of-fold probabilities."""
    calibration = calibrate(OutOfFold.flat(estimator, X, y, donors, cv, "label"))
    return calibration.conformal["label"], calibration.temperature


def trust_of(cells, calibration=None) -> Trust:
    """A training summary (without the combined `novel` flag) and a calibration, as stored."""
    summary = fit_training_summary(cells, FEATURES, "human")
    if calibration is None:
        return Trust(summary)
    return Trust(summary, {"label": calibration[0]}, calibration[1])


def synthetic_cells(n: int = 1200, seed: int = 0, species: str = "human") -> pd.DataFrame:
    """Three classes, Gaussian around known centres, 60 donors; the answer is known."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(["A", "B", "C"], size=n, p=[0.5, 0.3, 0.2])
    centres = {"A": 0.0, "B": 0.4, "C": 0.8}
    X = rng.normal(size=(n, len(FEATURES))) + np.array([centres[v] for v in labels])[:, None]
    cells = pd.DataFrame(X * 10 + 50, columns=FEATURES)
    cells.insert(0, "specimen_id", np.arange(n) + seed * 100_000)
    cells.insert(1, "species", species)
    cells.insert(2, "donor", rng.integers(0, 60, size=n).astype(str))
    cells.insert(3, "label", labels)
    return cells


@pytest.fixture(scope="module")
def trusted(tmp_path_factory):
    """A logistic model on synthetic cells, saved with calibration and training summary, read back."""
    cells = synthetic_cells()
    model = logistic().fit(cells[FEATURES], cells["label"])
    card = ModelCard("logistic", "human", "label", ["A", "B", "C"], FEATURES, FAMILIES)
    out = tmp_path_factory.mktemp("m") / "model"
    calibration = fit_calibration(
        logistic(),
        cells[FEATURES],
        cells["label"],
        cells["donor"],
        donor_kfold(5, 0),
    )
    save_trained(out, model, card, trust_of(cells, calibration))
    return out, calibration, cells


def test_nested_coverage_matches_alpha_on_known_answers():
    cells = synthetic_cells()
    folds = DonorKFold(5, 1, 0).cell_folds(cells, "label")
    ev = evaluate_trust(
        logistic(), cells, "label", folds, "human", FEATURES, alpha=0.1,
        progress=False,
    )  # fmt: skip
    s = ev.summary
    assert 0.87 <= s["coverage"] <= 0.93
    assert all(c >= 0.85 for c in s["coverage_per_class"].values())
    # classes overlap (1.2 sd apart along the diagonal): many sets hold two classes
    assert 1.0 < s["mean_set_size"] < 2.0
    assert s["ece"] < 0.05  # logistic regression on Gaussian classes is well calibrated
    assert 0 < s["share_confident"] <= s["share_singleton"]
    curve = accuracy_by_share_called(ev.cells)
    assert curve["accuracy"].iloc[0] >= curve["accuracy"].iloc[-1]  # surest cells first


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_not():
    conf = np.full(1000, 0.7)
    correct = np.arange(1000) < 700
    assert expected_calibration_error(conf, correct) == pytest.approx(0.0)
    assert expected_calibration_error(np.full(1000, 0.95), correct) == pytest.approx(0.25)


def test_temperature_sharpens_underconfident_probabilities():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, size=2000)
    x = np.eye(3)[y] * 3 + rng.normal(size=(2000, 3))
    sharp = np.exp(3 * x) / np.exp(3 * x).sum(1, keepdims=True)  # the true posterior
    flat = sharp**0.4 / (sharp**0.4).sum(1, keepdims=True)  # underconfident version
    t = Temperature.fit(flat, y.astype(str), ["0", "1", "2"])
    assert t.temperature == pytest.approx(0.4, rel=0.15)
    assert np.array_equal(t.apply(flat).argmax(1), flat.argmax(1))


def test_stored_calibration_round_trip(trusted):
    out, (conformal, temperature), cells = trusted
    model = TrustedModel.load(out)
    assert np.array_equal(model.conformal.scores, conformal.scores)
    assert model.temperature.temperature == pytest.approx(temperature.temperature)
    assert model.summary is not None and model.summary.features == FEATURES
    test = synthetic_cells(300, seed=7)
    table, missing = model.predict_table(test, alpha=0.1)
    assert missing == []
    assert list(table.columns) == [
        "specimen_id", "predicted", "p_A", "p_B", "p_C",
        "prediction_set", "confident", "novelty", "flags",
    ]  # fmt: skip
    sets = model.predict_set(test, alpha=0.1)
    assert table["prediction_set"].tolist() == ["|".join(s) for s in sets]
    assert all(s[0] == p for s, p in zip(sets, table["predicted"], strict=True))
    covered = np.mean([t in s for t, s in zip(test["label"], sets, strict=True)])
    assert 0.85 <= covered <= 0.96
    wider = model.predict_set(test, alpha=0.02)
    assert all(set(a) <= set(b) for a, b in zip(sets, wider, strict=True))
    assert table["novelty"].between(0, 1).all()
    one = table["prediction_set"].str.count("\\|") == 0
    assert table["confident"].any() and not (table["confident"] & ~one).any()
    with pytest.raises(Ephys2txError, match="strictly between 0 and 1"):
        model.predict_set(test, alpha=1.0)


def test_every_flag_is_raised_by_its_cause(trusted):
    out, _, cells = trusted
    model = TrustedModel.load(out)
    base = synthetic_cells(8, seed=3)
    base["label"] = "A"
    base[FEATURES] = cells.loc[cells["label"] == "A", FEATURES].median().to_numpy()
    family = next(iter(FAMILIES))
    base.loc[1, FAMILIES[family]] *= 1000  # a unit error in one family
    base.loc[2, FAMILIES[family]] = np.nan  # a family not measured
    base.loc[3, FEATURES] = np.nan  # nothing measured
    base.loc[4, "species"] = "mouse"  # the table says another species
    base.loc[5, FEATURES] = 50 + 10 * np.array([6, -4, 6, -4, 6, -4, 6, -4, 6])  # far off
    table, _ = model.predict_table(base)
    flags = table["flags"].str.split("; ")
    assert table.loc[0, "flags"] == ""
    assert table.loc[0, "confident"] == ("|" not in table.loc[0, "prediction_set"])
    assert {f"out_of_range:{c}" for c in FAMILIES[family]} <= set(flags[1])
    assert flags[2] == [f"missing_family:{family}"]
    assert "few_features" in flags[3] and np.isnan(table.loc[3, "novelty"])
    assert flags[4] == ["species_mismatch"]
    assert "novel" in flags[5] and table.loc[5, "novelty"] > 0.95
    assert not table.loc[1:5, "confident"].any()  # a flagged cell is never confident


def test_novelty_threshold_flags_five_percent_of_reference_cells():
    cells = synthetic_cells(1000, seed=2)
    ref = NoveltyBaseline.fit(cells[FEATURES], cells["donor"], FEATURES)
    fresh = synthetic_cells(2000, seed=5)
    share = ref.is_novel(ref.novelty(fresh[FEATURES])).mean()
    assert 0.02 <= share <= 0.09
    back = NoveltyBaseline.from_arrays(ref.to_arrays())
    assert np.allclose(back.novelty(fresh[FEATURES]), ref.novelty(fresh[FEATURES]), atol=1e-3)


def test_novel_flag_combines_novelty_and_top_probability():
    rng = np.random.default_rng(0)
    novelty, top = rng.random(2000), rng.uniform(0.4, 1.0, 2000)
    flag = NovelFlag.fit(novelty, top)
    assert flag.is_novel(novelty, top).mean() == pytest.approx(0.05, abs=0.005)
    # an atypical cell the model is sure of is not novel; the same cell called unsure is
    assert flag.is_novel([0.9, 0.9, 0.0], [0.99, 0.41, 0.41]).tolist() == [False, True, False]
    back = NovelFlag.from_arrays(flag.to_arrays())
    assert np.array_equal(back.score(novelty, top), flag.score(novelty, top))


def test_train_stores_the_combined_novel_flag_and_predict_uses_it(tmp_path):
    cells = synthetic_cells()
    model = logistic().fit(cells[FEATURES], cells["label"])
    card = ModelCard("logistic", "human", "label", ["A", "B", "C"], FEATURES)
    trust = fit_flat_trust(
        logistic(), model, cells, "label", "human", FEATURES, cv=donor_kfold(5, 0)
    )
    save_trained(tmp_path, model, card, trust)
    loaded = TrustedModel.load(tmp_path)
    assert loaded.summary.novel_flag is not None
    fresh = synthetic_cells(2000, seed=5)
    table, _ = loaded.predict_table(fresh)
    novel = table["flags"].str.contains("novel").to_numpy()
    top = loaded.predict_proba(fresh).max(axis=1)
    assert np.array_equal(novel, loaded.summary.novel_flag.is_novel(table["novelty"], top))
    assert 0.02 <= novel.mean() <= 0.09  # calibrated on the training cells
    # a model saved without calibration keeps the flag on novelty alone
    save_trained(tmp_path, model, card, trust_of(cells))
    assert TrustedModel.load(tmp_path).summary.novel_flag is None


def test_partial_table_is_nan_and_a_table_without_features_is_an_error(trusted):
    out, _, cells = trusted
    model = TrustedModel.load(out)
    test = synthetic_cells(50, seed=9)
    family = next(iter(FAMILIES))
    partial, missing = model.predict_table(test.drop(columns=FAMILIES[family]))
    assert missing == FAMILIES[family]
    as_nan, _ = model.predict_table(test.assign(**{c: np.nan for c in FAMILIES[family]}))
    pd.testing.assert_frame_equal(partial, as_nan)
    assert (partial["flags"].str.contains(f"missing_family:{family}")).all()
    with pytest.raises(Ephys2txError, match="none of the model's 9 features"):
        model.predict_table(test[["specimen_id", "donor"]])


def test_species_fingerprint_tells_mouse_from_human(mouse_cells, human_cells):
    rng = np.random.default_rng(0)
    m_test = rng.random(len(mouse_cells)) < 0.2
    h_test = rng.random(len(human_cells)) < 0.2
    features = usable_features(human_cells)  # 93, chirp included
    fp = SpeciesFingerprint.fit(
        {"mouse": mouse_cells[~m_test], "human": human_cells[~h_test]}, features
    )
    assert "chirp" not in " ".join(fp.features)  # a feature one table lacks cannot decide
    assert fp.mismatch(human_cells[h_test], "mouse").mean() >= 0.8
    assert fp.mismatch(mouse_cells[m_test], "human").mean() >= 0.95
    assert fp.mismatch(mouse_cells[m_test], "mouse").mean() <= 0.03


def test_species_threshold_is_calibrated_at_its_false_alarm_rate(mouse_cells, human_cells):
    rng = np.random.default_rng(1)
    donors = {s: t["donor"].unique() for s, t in (("mouse", mouse_cells), ("human", human_cells))}
    held = {s: set(rng.choice(d, len(d) // 5, replace=False)) for s, d in donors.items()}
    m_test = mouse_cells["donor"].isin(held["mouse"]).to_numpy()
    h_test = human_cells["donor"].isin(held["human"]).to_numpy()
    features = usable_features(mouse_cells)
    train = {"mouse": mouse_cells[~m_test], "human": human_cells[~h_test]}
    fp = SpeciesFingerprint.fit(train, features, own="mouse")
    assert fp.species == "mouse" and 0 < fp.threshold < 1
    assert fp.limit("mouse") == fp.threshold and fp.limit("human") == MISMATCH_BELOW["human"]
    # held-out donors: own cells flagged near the calibrated rate, the other species mostly
    assert fp.mismatch(mouse_cells[m_test], "mouse").mean() <= 2.5 * FALSE_ALARM
    assert fp.mismatch(human_cells[h_test], "mouse").mean() >= 0.9
    legacy = SpeciesFingerprint(fp.features, fp.estimator)  # saved before thresholds existed
    assert legacy.limit("mouse") == MISMATCH_BELOW["mouse"]
    # a human model's threshold sits at its own (higher) rate, chosen on seed-100 folds
    human = SpeciesFingerprint.fit(train, features, own="human")
    assert human.threshold > 0
    assert (
        human.mismatch(human_cells[h_test], "human").mean() <= 2 * FALSE_ALARM_BY_SPECIES["human"]
    )
    assert human.mismatch(mouse_cells[m_test], "human").mean() >= 0.95


def test_reference_without_fingerprint_still_flags_by_species_column():
    cells = synthetic_cells(300)
    ref = TrainingSummary.fit(
        cells, FEATURES, FAMILIES, "human", cells["donor"].to_numpy(), fingerprint=None
    )
    names = ["human", "Mouse", None, "Homo sapiens", "Mus musculus", "Rattus norvegicus"]
    flags = ref.flags(cells.head(6).assign(species=names))
    assert ["species_mismatch" in f for f in flags] == [False, True, False, False, True, True]


def test_nested_trust_runs_for_a_network_reading_the_whole_table(human_cells):
    from ephys2tx.models.bilstm import BiLSTMClassifier

    small = pd.concat([g.head(40) for _, g in human_cells.groupby("label")], ignore_index=True)
    folds = DonorKFold(3, 1, 0).cell_folds(small, "label")
    tiny = BiLSTMClassifier(width=8, hidden=8, max_epochs=4, patience=2, batch_size=32)
    ev = evaluate_trust(tiny, small, "label", folds, "human", None, inner_folds=3, progress=False)
    assert len(ev.cells) == len(small)
    assert ev.cells["prediction_set"].str.len().gt(0).all()
    assert 0.6 <= ev.summary["coverage"] <= 1.0


def test_train_stores_calibration_for_a_network(human_cells, tmp_path):
    from ephys2tx.models.bilstm import BiLSTMClassifier
    from ephys2tx.models.bundle import card_for

    small = pd.concat([g.head(40) for _, g in human_cells.groupby("label")], ignore_index=True)
    tiny = BiLSTMClassifier(width=8, hidden=8, max_epochs=4, patience=2, batch_size=32)
    fitted = clone(tiny).fit(small, small["label"].to_numpy())
    card = card_for(fitted, "bilstm", "human", "label", len(small))
    trust = fit_flat_trust(tiny, fitted, small, "label", "human", None, cv=donor_kfold(5, 0))
    save_trained(tmp_path, fitted, card, trust)
    model = TrustedModel.load(tmp_path)
    assert len(model.conformal.scores) == len(small)  # every training cell scored once
    assert model.summary.features == fitted.used_features()
    assert model.card.network is not None and model.card.network.family_order
    table, missing = model.predict_table(small.head(20))
    assert missing == [] and table["prediction_set"].str.len().gt(0).all()


def test_retraining_without_calibration_removes_the_old_scores(trusted, tmp_path):
    import shutil

    out, _, cells = trusted
    copy = tmp_path / "model"
    shutil.copytree(out, copy)
    model = TrustedModel.load(copy)
    save_trained(copy, model.estimator, model.card, trust_of(cells))  # --no-calibrate
    assert TrustedModel.load(copy).conformal is None
    assert not (copy / "calibration.json").exists()

    # calibration scores of a model with other classes are refused, not used
    save_trained(copy, model.estimator, model.card, trust_of(cells, fit_calibration(
        logistic(), cells[FEATURES], cells["label"].replace("C", "Z"), cells["donor"],
        donor_kfold(5, 0),
    )))  # fmt: skip
    with pytest.raises(Ephys2txError, match="belongs to another model"):
        TrustedModel.load(copy)
    (copy / "calibration.json").write_text("{not json")
    with pytest.raises(Ephys2txError, match="damaged"):
        TrustedModel.load(copy)
