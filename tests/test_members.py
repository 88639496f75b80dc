"""Ensemble members as estimators: soft voting, one seed for all members, and the readable
description that keys the default model's cache."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from ephys2tx import default_model
from ephys2tx.errors import Ephys2txError
from ephys2tx.models.ensemble import describe, seeded, soft_vote
from ephys2tx.models.hierarchy import HierarchicalClassifier
from ephys2tx.models.members import BY_NAME, forest, knn, logistic, named, svc

CHECKSUMS = {"cells.csv": "0" * 64}


def _toy(n: int = 60, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(["a", "b", "c"], n // 3)
    X = pd.DataFrame(rng.normal(size=(n, 4)) + (y == "b")[:, None] * 2.0, columns=list("wxyz"))
    X.iloc[::7, 1] = np.nan  # every member takes NaN
    return X, y


def test_the_cache_key_describes_the_members_and_changes_with_any_parameter():
    human = default_model.DEFAULT_SETTINGS["human"]
    text = json.dumps(human.describe(), sort_keys=True)
    # readable: class names and the parameters set, not a code word
    assert '"LogisticRegression"' in text and '"C": 0.1' in text and '"SVC"' in text
    key = default_model.cache_key("human", CHECKSUMS)
    assert key == default_model.cache_key("human", CHECKSUMS, replace(human))  # stable
    stronger = (*human.subclass[:2], ("logreg", logistic(C=1.0)))
    assert default_model.cache_key("human", CHECKSUMS, replace(human, subclass=stronger)) != key
    fewer_trees = (("rf", forest(299)), *human.t_type[1:])
    assert default_model.cache_key("human", CHECKSUMS, replace(human, t_type=fewer_trees)) != key
    ruled = replace(human, learned_first=False)
    assert default_model.cache_key("human", CHECKSUMS, ruled) != key
    # the seed and thread counts say how a model is fitted, not what it is
    assert describe(seeded(forest(), 7, 4)) == describe(forest())


def test_seeded_sets_every_seed_and_only_the_thread_counts_members_ask_for():
    ensemble = soft_vote([("rf", forest()), ("svc", svc()), ("knn", knn())])
    params = seeded(ensemble, 5, 3).get_params(deep=True)
    seeds = {k: v for k, v in params.items() if k.endswith("random_state")}
    assert seeds and set(seeds.values()) == {5}
    assert params["rf__n_jobs"] == 3
    assert params["n_jobs"] is None  # the voting ensemble starts no process pool
    assert params["knn__kneighborsclassifier__n_jobs"] is None
    assert ensemble.get_params(deep=True)["rf__random_state"] == 0  # the template is untouched


def test_soft_vote_averages_the_members_probabilities():
    X, y = _toy()
    members = [("rf", forest(20)), ("logreg", logistic())]
    averaged = soft_vote(members).fit(X, y).predict_proba(X)
    each = [clone(est).fit(X, y).predict_proba(X) for _, est in members]
    np.testing.assert_allclose(averaged, np.mean(each, axis=0), atol=1e-12)
    lone = forest(20)
    assert soft_vote([("rf", lone)]) is lone


def test_named_members_for_the_benchmarks_and_a_one_line_error():
    assert set(BY_NAME) >= {"rf", "hgb", "hgb-slow", "hgb-t", "logreg", "logreg1", "svc", "knn"}
    ensemble = named("rf+logreg1", seed=3)
    assert [n for n, _ in ensemble.estimators] == ["rf", "logreg1"]
    assert ensemble.get_params()["rf__random_state"] == 3
    assert ensemble.get_params()["logreg1__logisticregression__C"] == 1.0
    with pytest.raises(Ephys2txError, match="unknown member 'forest'; choose from rf, "):
        named("rf+forest")


def test_the_hierarchical_classifier_clones_its_estimators(human_cells):
    from ephys2tx.datasets.cells import usable_features
    from ephys2tx.datasets.taxonomy import build_taxonomy
    from ephys2tx.models.hierarchy import model_inputs

    cells = human_cells.head(300)
    tax = build_taxonomy(cells, "human")
    leaves = tax.leaf_labels(cells["t_type"], cells["label"]).to_numpy(dtype=object)
    X = model_inputs(cells, usable_features(cells))
    template = soft_vote([("rf", forest(10)), ("logreg", logistic())])
    model = HierarchicalClassifier(tax, template, "flat", forest(10), seed=4)
    again = clone(model)
    assert again.get_params()["subclass_estimator"] is not template  # cloned, sklearn-style
    assert describe(again.subclass_estimator) == describe(template)
    model.fit(X, leaves)
    assert model.subclass_estimator_ is not template and not hasattr(template, "estimators_")
    assert model.subclass_estimator_.get_params()["rf__random_state"] == 4
    p = model.predict_proba(X)
    np.testing.assert_allclose(p, again.fit(X, leaves).predict_proba(X))  # same seed, same fit
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
