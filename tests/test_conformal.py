"""Mondrian conformal sets: coverage on synthetic data with known answers, storage, edge cases."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from ephys2tx.errors import Ephys2txError
from ephys2tx.evaluation.splits import donor_kfold
from ephys2tx.trust.calibrate import OutOfFold, calibrate
from ephys2tx.trust.conformal import MondrianConformal, out_of_fold_proba

CLASSES = ["a", "b", "c"]


def _noisy_cells(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Three overlapping classes of unequal size: true probabilities are known to be < 1."""
    y = rng.choice(CLASSES, size=n, p=[0.6, 0.3, 0.1])
    centre = {"a": 0.0, "b": 1.0, "c": 2.0}
    x = np.array([centre[v] for v in y]) + rng.normal(0, 0.8, n)
    return x[:, None], y


def _bayes_proba(x: np.ndarray) -> np.ndarray:
    """The exact posterior of `_noisy_cells` (the model is known, so coverage is testable)."""
    prior = np.array([0.6, 0.3, 0.1])
    like = np.exp(-0.5 * ((x - np.array([0.0, 1.0, 2.0])) / 0.8) ** 2)
    post = like * prior
    return post / post.sum(axis=1, keepdims=True)


def test_class_conditional_coverage_matches_alpha_for_every_class():
    rng = np.random.default_rng(0)
    x_cal, y_cal = _noisy_cells(3000, rng)
    x_test, y_test = _noisy_cells(20000, rng)
    cp = MondrianConformal.fit(_bayes_proba(x_cal), y_cal, CLASSES)
    for alpha in (0.05, 0.1, 0.2):
        mask = cp.set_mask(_bayes_proba(x_test), alpha, keep_top=False)
        covered = mask[np.arange(len(y_test)), [CLASSES.index(v) for v in y_test]]
        for cls in CLASSES:
            cov = covered[y_test == cls].mean()
            # exchangeable cells: coverage 1 - alpha up to sampling error, per class
            assert 1 - alpha - 0.03 < cov < 1 - alpha + 0.03, (alpha, cls, cov)
    # the rare class would be missed far more often than alpha by a plain top-1 call
    top1 = _bayes_proba(x_test).argmax(axis=1)
    assert (top1[y_test == "c"] == 2).mean() < 0.8


def test_sets_are_ordered_never_empty_and_shrink_with_alpha():
    rng = np.random.default_rng(1)
    x_cal, y_cal = _noisy_cells(500, rng)
    cp = MondrianConformal.fit(_bayes_proba(x_cal), y_cal, CLASSES)
    proba = _bayes_proba(np.linspace(-2, 4, 50)[:, None])
    wide, narrow = cp.predict_set(proba, 0.01), cp.predict_set(proba, 0.4)
    for row, s_wide, s_narrow in zip(proba, wide, narrow, strict=True):
        assert s_narrow and set(s_narrow) <= set(s_wide)
        p = [row[CLASSES.index(c)] for c in s_wide]
        assert p == sorted(p, reverse=True)
    assert np.mean([len(s) for s in wide]) > np.mean([len(s) for s in narrow])


def test_storage_round_trip_gives_identical_sets(tmp_path):
    rng = np.random.default_rng(2)
    x, y = _noisy_cells(300, rng)
    cp = MondrianConformal.fit(_bayes_proba(x), y, CLASSES)
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(cp.to_dict()))
    back = MondrianConformal.from_dict(json.loads(path.read_text()))
    proba = _bayes_proba(x[:40])
    assert back.predict_set(proba, 0.1) == cp.predict_set(proba, 0.1)
    np.testing.assert_array_equal(back.p_values(proba), cp.p_values(proba))
    assert back.counts() == cp.counts()
    with pytest.raises(Ephys2txError, match="malformed"):
        MondrianConformal.from_dict({"classes": ["a"]})


def test_bad_alpha_and_shapes_are_clear_errors():
    cp = MondrianConformal.fit(np.eye(3), CLASSES, CLASSES)
    for alpha in (0, 1, -0.1, 1.5):
        with pytest.raises(Ephys2txError, match="alpha"):
            cp.set_mask(np.eye(3), alpha)
    with pytest.raises(Ephys2txError, match="shape"):
        cp.p_values(np.ones((2, 2)))
    with pytest.raises(Ephys2txError, match="not model classes"):
        MondrianConformal.fit(np.eye(3), ["a", "b", "z"], CLASSES)


def test_out_of_fold_scores_are_donor_grouped_and_cover_every_cell():
    rng = np.random.default_rng(3)
    x, y = _noisy_cells(400, rng)
    donors = np.repeat(np.arange(80), 5)
    X = pd.DataFrame({"x": x[:, 0]})
    proba = out_of_fold_proba(LogisticRegression(), X, y, donors, donor_kfold(5, 0))
    assert proba.shape == (400, 3) and not np.isnan(proba).any()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    oof = OutOfFold.flat(LogisticRegression(), X, y, donors, donor_kfold(5, 0), "label")
    cp = calibrate(oof, scaling=False).conformal["label"]
    assert cp.counts() == {c: int((y == c).sum()) for c in CLASSES}
