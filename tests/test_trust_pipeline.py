"""The one trust pipeline and the one model-directory format: typed card, per-level scores."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from ephys2tx.errors import Ephys2txError
from ephys2tx.evaluation.splits import donor_kfold
from ephys2tx.models.bundle import (
    CARD_FORMAT,
    HierarchyCard,
    ModelCard,
    Provenance,
    card_for,
    read_card,
)
from ephys2tx.models.trusted import fit_flat_trust, load_trust, save_trained
from ephys2tx.trust.calibrate import OutOfFold, calibrate
from ephys2tx.trust.conformal import MondrianConformal, out_of_fold_proba
from ephys2tx.trust.temperature import Temperature

FEATURES = ["tau", "input_resistance", "v_rest"]


@pytest.fixture(scope="module")
def cells() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 300
    labels = rng.choice(["A", "B", "C"], size=n)
    X = rng.normal(size=(n, 3)) + np.array([{"A": 0, "B": 1, "C": 2}[v] for v in labels])[:, None]
    table = pd.DataFrame(X, columns=FEATURES)
    table.insert(0, "specimen_id", np.arange(n))
    table.insert(1, "donor", rng.integers(0, 20, size=n).astype(str))
    table.insert(2, "label", labels)
    return table


def test_calibrate_is_temperature_then_mondrian_on_the_scaled_probabilities(cells):
    cv = donor_kfold(5, 0)
    X, y, donors = cells[FEATURES], cells["label"], cells["donor"].to_numpy()
    got = calibrate(OutOfFold.flat(LogisticRegression(), X, y, donors, cv, "label"))
    oof = out_of_fold_proba(LogisticRegression(), X, y.to_numpy(), donors, cv)
    temperature = Temperature.fit(oof, y, ["A", "B", "C"])
    scaled = temperature.apply(oof)
    expected = MondrianConformal.fit(scaled, y.to_numpy(), ["A", "B", "C"])
    assert got.temperature.temperature == pytest.approx(temperature.temperature)
    assert np.array_equal(got.conformal["label"].scores, expected.scores)
    assert np.allclose(got.top_probability, scaled.max(axis=1))
    unscaled = calibrate(OutOfFold.flat(LogisticRegression(), X, y, donors, cv, "label"), False)
    assert unscaled.temperature.temperature == 1.0


def test_saved_trust_is_per_level_and_refused_for_another_model(cells, tmp_path):
    model = LogisticRegression().fit(cells[FEATURES], cells["label"])
    trust = fit_flat_trust(
        LogisticRegression(), model, cells, "label", "human", FEATURES, cv=donor_kfold(5, 0)
    )
    card = card_for(model, "logreg", "human", "label", len(cells), Provenance(seed=0))
    out = save_trained(tmp_path / "m", model, card, trust)
    stored = json.loads((out / "calibration.json").read_text())
    assert list(stored["levels"]) == ["label"] and stored["temperature_in_estimator"] is False
    back = load_trust(out, {"label": ["A", "B", "C"]})
    assert np.array_equal(back.conformal["label"].scores, trust.conformal["label"].scores)
    assert back.summary.novel_flag is not None
    with pytest.raises(Ephys2txError, match="belongs to another model"):
        load_trust(out, {"label": ["A", "B"]})
    with pytest.raises(Ephys2txError, match="belongs to another model"):
        load_trust(out, {"subclass": ["A", "B", "C"]})


def test_typed_card_round_trips_and_older_formats_are_refused_in_one_line(cells, tmp_path):
    model = LogisticRegression().fit(cells[FEATURES], cells["label"])
    card = card_for(model, "hierarchical", "human", "label", 3, Provenance(seed=1, synthetic=True))
    card.hierarchy = HierarchyCard(taxonomy={"parent": {}}, leaves=["A"], oof_macro_f1=0.5)
    out = save_trained(tmp_path / "m", model, card, None)
    back = read_card(out)
    assert back == card and back.format == CARD_FORMAT
    assert isinstance(back.hierarchy, HierarchyCard) and back.provenance.synthetic
    assert not (out / "calibration.json").exists()
    data = json.loads((out / "model.json").read_text())
    for change in ({"format": 2}, {"extra": {}}, {"hierarchy": {"taxonomy": {}, "bogus": 1}}):
        (out / "model.json").write_text(json.dumps({**data, **change}))
        with pytest.raises(Ephys2txError) as err:
            read_card(out)
        assert "\n" not in str(err.value) and "ephys2tx train" in str(err.value)
    assert ModelCard.from_dict(data) == card
