"""A lab model with labels may use the lab's own columns (the stack), the nested in-domain
ceiling, and `adapt` reusing the cached reference model (issue 19).

Synthetic cells: five classes; the shared features separate only some of them, a column
that only the lab measures separates the rest, so a model that uses it must do better.
Small forests keep it to seconds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ephys2tx.datasets.crosswalk import OWN_PREFIX, known_crosswalks, to_canonical
from ephys2tx.errors import Ephys2txError
from ephys2tx.evaluation.crosslab import in_domain_ceiling
from ephys2tx.evaluation.splits import donor_kfold
from ephys2tx.models.bundle import Provenance
from ephys2tx.models.hierarchy import HierarchySettings, fit_hierarchy
from ephys2tx.models.lab import LAB_MIXES, LAB_WEIGHTS, STACK, fit_lab_model, own_columns
from ephys2tx.models.mapping import hierarchical_card, predict_mapping
from ephys2tx.models.members import forest
from ephys2tx.models.trusted import Trust, save_trained
from ephys2tx.schema import MOUSE_CLASSES

FEATURES = ["v_baseline", "tau", "width_rheo", "max_rate"]
SETTINGS = HierarchySettings(subclass=(("rf", forest(30)),), t_type=(("rf", forest(30)),))
# class -> centre on the shared features: Sst and Vip share one, so do Lamp5 and Sncg
SHARED = {"Lamp5": [3, 0, 3, 0], "Sncg": [3, 0, 3, 0], "Pvalb": [0, 3, 0, 3],
          "Sst": [0, 0, 0, 0], "Vip": [0, 0, 0, 0]}  # fmt: skip
OWN = {"Lamp5": 0, "Sncg": 4, "Pvalb": 0, "Sst": 0, "Vip": 4}  # only the lab's column tells


@pytest.fixture(autouse=True)
def _small_forests(monkeypatch):
    import ephys2tx.models.lab as lab_module

    monkeypatch.setattr(lab_module, "LAB_FOREST_TREES", 30)


def _cells(n: int, rng, prefix: str, n_donors: int, own: bool) -> pd.DataFrame:
    rows = []
    for cls in MOUSE_CLASSES:
        X = np.asarray(SHARED[cls], float) + rng.normal(size=(n, len(FEATURES))) * 0.5
        for i in range(n):
            row = {"label5": cls, "t_type": f"{cls} {'AB'[i % 2]}"}
            row.update(zip(FEATURES, X[i], strict=True))
            if own:
                row[OWN_PREFIX + "Burstiness"] = OWN[cls] + rng.normal() * 0.5
            rows.append(row)
    cells = pd.DataFrame(rows).sample(frac=1, random_state=0).reset_index(drop=True)
    cells.insert(0, "specimen_id", [f"{prefix}{i}" for i in range(len(cells))])
    cells.insert(1, "species", "mouse")
    cells.insert(2, "donor", [f"{prefix}d{i % n_donors}" for i in range(len(cells))])
    cells["subclass"] = cells["label5"]
    return cells


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(1)
    reference = _cells(50, rng, "r", 10, own=False)
    lab = _cells(40, rng, "l", 20, own=True)
    fit = fit_hierarchy(reference, "mouse", FEATURES, donor_kfold(3, 0), SETTINGS, 0, 1)
    return reference, fit, lab


def _macro_accuracy(model, cells: pd.DataFrame) -> float:
    called = model.predict_proba_levels(cells)["subclass"].idxmax(axis=1).to_numpy()
    return float((called == cells["label5"].to_numpy()).mean())


def test_crosswalk_keeps_the_labs_own_numeric_columns():
    table = pd.DataFrame({
        "cell id": ["a", "b"], "AP threshold (mV)": [-40.0, -42.0], "Burstiness": [0.1, 0.0],
        "Rheobase (pA)": [50.0, 60.0], "note": ["x", "y"],
    })  # fmt: skip
    cells, _ = to_canonical(table, known_crosswalks()["berens"], source="t.csv")
    assert cells[OWN_PREFIX + "Burstiness"].tolist() == [0.1, 0.0]
    assert cells[OWN_PREFIX + "AP threshold (mV)"].tolist() == [-40.0, -42.0]  # mapped ones too
    assert OWN_PREFIX + "note" not in cells and OWN_PREFIX + "cell id" not in cells
    assert own_columns(cells) == [c for c in cells.columns if c.startswith(OWN_PREFIX)]


def test_joint_training_is_a_candidate_only_without_the_labs_own_columns(world):
    reference, fit, lab = world
    labels = lab["label5"].where(lab["donor"].isin([f"ld{i}" for i in range(10)]))
    args = (fit.model, fit.calibration, reference, "label5")
    with_own = fit_lab_model(*args, lab, labels, lab["donor"], seed=0)
    assert list(with_own.details["inner_macro_f1"]) == [STACK]
    canonical = lab.drop(columns=own_columns(lab))  # a table in the reference's names
    without = fit_lab_model(*args, canonical, labels, canonical["donor"], seed=0)
    candidates = without.details["inner_macro_f1"]
    assert len(candidates) == len(LAB_WEIGHTS) * len(LAB_MIXES) + 1 and STACK in candidates


def test_labelled_lab_model_uses_the_labs_own_column(world):
    reference, fit, lab = world
    labelled = lab["donor"].isin([f"ld{i}" for i in range(10)])
    labels = lab["label5"].where(labelled)
    lab_fit = fit_lab_model(
        fit.model, fit.calibration, reference, "label5", lab, labels, lab["donor"], seed=0
    )
    assert lab_fit.details["subclass_model"] == STACK
    assert lab_fit.details["stack_columns"] == 1
    scored = lab[~labelled]
    # Sst/Vip and Lamp5/Sncg differ only in the lab's column: the reference cannot tell them
    assert _macro_accuracy(lab_fit.model, scored) > 0.85
    assert _macro_accuracy(fit.model, scored) < 0.75
    assert OWN_PREFIX + "Burstiness" in list(lab_fit.model.feature_names_in_)
    # as `predict DIR` calls it: the card's features carry the own column to the model
    card = hierarchical_card(lab_fit.model, fit.taxonomy, "mouse", len(reference))
    table = predict_mapping(lab_fit.model, card, scored, 0.1, lab_fit.calibration).table
    assert (table["subclass"].to_numpy() == scored["label5"].to_numpy()).mean() > 0.85
    with pytest.raises(Ephys2txError, match="own columns"):
        lab_fit.model.predict_proba_levels(scored.drop(columns=[OWN_PREFIX + "Burstiness"]))


def test_in_domain_ceiling_is_nested_and_out_of_fold(world):
    _, _, lab = world
    columns = [*FEATURES, OWN_PREFIX + "Burstiness"]
    models = ("logreg", "svc", ("small forest", forest(20)))  # a (name, estimator) pair too
    calls, chosen, each = in_domain_ceiling(lab, columns, "label5", seed=0, models=models)
    names = {"logreg", "svc", "small forest"}
    assert len(calls) == len(lab) and len(chosen) == 5 and set(chosen) <= names
    assert set(each) == names
    assert (calls == lab["label5"].to_numpy()).mean() > 0.85
    shared_only, _, _ = in_domain_ceiling(lab, FEATURES, "label5", seed=0, models=("logreg",))
    assert (shared_only == lab["label5"].to_numpy()).mean() < 0.75  # the data's own ceiling


def test_adapt_reuses_the_cached_default_model_when_it_is_the_same_fit(
    world, tmp_path, monkeypatch
):
    import ephys2tx.default_model as default_model
    from ephys2tx.default_model import fit_from_model_dir

    reference, fit, lab = world
    card = hierarchical_card(
        fit.model, fit.taxonomy, "mouse", len(reference), Provenance(seed=0),
        temperature=fit.temperature,
    )  # fmt: skip
    trust = Trust(None, fit.calibration, fit.temperature, top_probability=fit.top_probability)
    save_trained(tmp_path / "cached", fit.model, card, trust)
    loaded = fit_from_model_dir(tmp_path / "cached", len(reference), seed=0)
    assert loaded is not None and loaded.features == FEATURES
    assert np.allclose(loaded.top_probability, fit.top_probability, atol=1e-6)
    assert np.allclose(loaded.calibration["subclass"].scores, fit.calibration["subclass"].scores)
    X = lab[FEATURES]
    assert np.allclose(loaded.model.predict_proba(X), fit.model.predict_proba(X))
    assert fit_from_model_dir(tmp_path / "cached", len(reference), seed=1) is None
    assert fit_from_model_dir(tmp_path / "cached", len(reference) + 1, seed=0) is None

    monkeypatch.setattr(default_model, "subset_for_table", lambda *a, **k: FEATURES)
    monkeypatch.setattr(default_model, "cached_default_model", lambda *a, **k: tmp_path / "cached")
    fitted = []
    monkeypatch.setattr(
        default_model, "fit_default_model_on", lambda *a, **k: fitted.append(1) or fit
    )
    got = default_model.default_model_for_lab("mouse", lab, FEATURES, reference, seed=0, say=str)
    assert fitted == [] and got.features == FEATURES  # the cache, not a new fit
    default_model.default_model_for_lab("mouse", lab, FEATURES, reference, seed=3, say=str)
    assert fitted == [1]  # another seed: fitted here
    default_model.default_model_for_lab("mouse", lab, FEATURES[:3], reference, seed=0, say=str)
    assert fitted == [1, 1]  # another feature set
