"""The family BiLSTM: masking, scikit-learn API, determinism, save/load, on real human cells."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from ephys2tx.errors import Ephys2txError
from ephys2tx.features.families import VECTOR_FAMILIES, vector_columns
from ephys2tx.models.bilstm import BiLSTMClassifier
from ephys2tx.models.bundle import card_for, load_model, predict_table, save_model
from ephys2tx.models.family_tensors import FamilyLayout, Standardizer

TINY = dict(width=8, hidden=8, max_epochs=4, patience=2, batch_size=32)


@pytest.fixture(scope="module")
def small(human_cells):
    """~160 human cells, all four classes, cells with and without chirp features."""
    parts = [g.head(40) for _, g in human_cells.groupby("label")]
    return pd.concat(parts).reset_index(drop=True)


@pytest.fixture(scope="module")
def fitted(small):
    return BiLSTMClassifier(**TINY).fit(small, small["label"].to_numpy())


def test_quantile_scaling_is_monotone_and_masks_unknown_features():
    rng = np.random.default_rng(0)
    train = np.column_stack([rng.lognormal(size=200), np.full(200, np.nan)])
    std = Standardizer("quantile").fit(train)
    assert std.known_.tolist() == [True, False]
    x = np.array([[0.1, 5.0], [1.0, 5.0], [50.0, np.nan]])
    z, observed = std.transform(x)
    assert z[0, 0] < z[1, 0] < z[2, 0] <= 3.1  # monotone, outlier clipped
    assert observed[:, 1].tolist() == [0, 0, 0]  # never seen in training: ignored
    assert (z[:, 1] == 0).all()


def test_missing_family_gets_no_attention_and_its_values_are_ignored(fitted, small):
    no_chirp = small[small["peak_freq_chirp"].isna()].head(20)
    assert len(no_chirp) > 0
    attention = fitted.attention(no_chirp)
    assert np.allclose(attention["chirp"], 0.0)
    assert np.allclose(attention.sum(axis=1), 1.0, atol=1e-5)
    data = fitted._tensors(no_chirp)
    a, b = fitted.layout_.slices[fitted.layout_.names.index("chirp")]
    before = fitted._forward(data)[0]
    data.values[:, a:b] = np.random.default_rng(1).normal(size=(len(data), b - a)) * 10
    data.observed[:, a:b] = 1.0  # even a corrupted mask cannot leak an absent family
    after = fitted._forward(data)[0]
    np.testing.assert_array_equal(before, after)
    # a present family does change the prediction when its values change (the test can fail)
    with_chirp = small[small["peak_freq_chirp"].notna()].head(20).copy()
    base = fitted.predict_proba(with_chirp)
    with_chirp["peak_freq_chirp"] = with_chirp["peak_freq_chirp"] * 5 + 10
    assert not np.allclose(base, fitted.predict_proba(with_chirp))


def test_sklearn_api(fitted, small):
    model = BiLSTMClassifier(**TINY, n_members=2)
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    copy.set_params(hidden=4)
    assert copy.hidden == 4 and model.hidden == 8
    assert list(fitted.classes_) == sorted(small["label"].unique())
    proba = fitted.predict_proba(small)
    assert proba.shape == (len(small), 4)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert set(fitted.predict(small)) <= set(fitted.classes_)
    assert "input_resistance" in fitted.used_features()


def test_same_seed_same_probabilities(small):
    y = small["label"].to_numpy()
    p1 = BiLSTMClassifier(**TINY, random_state=3).fit(small, y).predict_proba(small)
    p2 = BiLSTMClassifier(**TINY, random_state=3).fit(small, y).predict_proba(small)
    p3 = BiLSTMClassifier(**TINY, random_state=4).fit(small, y).predict_proba(small)
    np.testing.assert_array_equal(p1, p2)
    assert not np.allclose(p1, p3)


def test_save_load_identical_predictions(fitted, small, tmp_path):
    card = card_for(fitted, "bilstm", "human", "label", len(small))
    save_model(tmp_path / "m", fitted, card)
    loaded, card2 = load_model(tmp_path / "m")
    before = predict_table(fitted, card, small)
    after = predict_table(loaded, card2, small)
    pd.testing.assert_frame_equal(before, after)
    # a column the table lacks is unmeasured, as if it were NaN
    partial = predict_table(loaded, card2, small.drop(columns=["input_resistance"]))
    pd.testing.assert_frame_equal(
        partial, predict_table(loaded, card2, small.assign(input_resistance=np.nan))
    )
    with pytest.raises(Ephys2txError, match="none of the model's"):
        predict_table(loaded, card2, small[["specimen_id"]])


def test_vector_family_is_a_token(small):
    family = next(f for f in VECTOR_FAMILIES if f.name == "isi_shape")
    rng = np.random.default_rng(0)
    vectors = pd.DataFrame(
        rng.normal(size=(len(small), family.length)), columns=vector_columns(family)
    )
    vectors.iloc[:10] = np.nan  # these cells lack the vector family
    table = pd.concat([small, vectors], axis=1)
    layout = FamilyLayout.from_table(table)
    assert "isi_shape" in layout.names
    model = BiLSTMClassifier(**TINY).fit(table, table["label"].to_numpy())
    attention = model.attention(table)
    assert np.allclose(attention["isi_shape"].iloc[:10], 0.0)
    assert (attention["isi_shape"].iloc[10:] > 0).all()


def test_bad_input_is_a_clear_error(small):
    y = small["label"].to_numpy().copy()
    y[0] = None
    with pytest.raises(Ephys2txError, match="missing"):
        BiLSTMClassifier(**TINY).fit(small, y)
    with pytest.raises(Ephys2txError, match="DataFrame"):
        BiLSTMClassifier(**TINY).fit(small[["tau"]].to_numpy(), small["label"].to_numpy())
    with pytest.raises(Ephys2txError, match="not fitted"):
        BiLSTMClassifier().predict(small)
