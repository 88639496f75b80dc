"""`adapt` (issue 19): lab models with and without labels on synthetic cells whose answers
are known, the `not_interneuron` and `lab_shift` flags, and the M1 metadata labels.

The synthetic reference has five well-separated classes; the "lab" copy draws new cells of
the same classes with another class mix, then applies a known per-feature shift and scale,
and adds "excitatory" cells far from every class. Small forests keep it to seconds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ephys2tx.datasets.scala2021 import first_t_type, labels_table
from ephys2tx.evaluation.splits import donor_kfold
from ephys2tx.models.hierarchy import HierarchySettings, fit_hierarchy
from ephys2tx.models.lab import FeatureShift, class_anchored_shift, fit_lab_model
from ephys2tx.models.members import forest
from ephys2tx.models.trusted import trust_table
from ephys2tx.schema import FLAG_SEPARATOR, MOUSE_CLASSES, split_joined
from ephys2tx.trust.interneuron import NOT_INTERNEURON, BatchShift, InterneuronDetector

FEATURES = ["v_baseline", "tau", "width_rheo", "max_rate", "sag", "input_resistance"]
CENTRES = {  # per class, in units of the feature spread
    "Lamp5": [0, 3, 2, 0, 0, 3],
    "Pvalb": [3, 0, 0, 4, 0, 0],
    "Sncg": [0, 0, 4, 0, 3, 0],
    "Sst": [0, 2, 0, 2, 3, 3],
    "Vip": [3, 3, 3, 0, 0, 0],
}
SPREAD = np.array([3.0, 0.004, 0.0001, 10.0, 0.03, 50.0])
ORIGIN = np.array([-70.0, 0.012, 0.0005, 30.0, 0.05, 200.0])
LAB_OFFSET = np.array([8.0, -0.005, 0.0002, 25.0, 0.05, 90.0])  # x_lab = x_ref * scale + offset
LAB_SCALE = np.array([1.0, 0.8, 1.4, 1.5, 1.0, 1.2])
SETTINGS = HierarchySettings(subclass=(("rf", forest(40)),), t_type=(("rf", forest(40)),))


@pytest.fixture(autouse=True)
def _small_forests(monkeypatch):
    """Small lab forests: the tests check behaviour, not the benchmark's figures."""
    import ephys2tx.models.lab as lab_module

    monkeypatch.setattr(lab_module, "LAB_FOREST_TREES", 30)


def _cells(counts: dict[str, int], rng, prefix: str, n_donors: int) -> pd.DataFrame:
    rows = []
    for cls, n in counts.items():
        centre = ORIGIN + np.asarray(CENTRES[cls], float) * SPREAD
        X = centre + rng.normal(size=(n, len(FEATURES))) * SPREAD * 0.6
        half = np.arange(n) % 2
        for i in range(n):
            rows.append({"label5": cls, "t_type": f"{cls} {'AB'[half[i]]}",
                         **dict(zip(FEATURES, X[i], strict=True))})  # fmt: skip
    cells = pd.DataFrame(rows).sample(frac=1, random_state=int(rng.integers(1e6)))
    cells = cells.reset_index(drop=True)
    cells.insert(0, "specimen_id", [f"{prefix}{i}" for i in range(len(cells))])
    cells.insert(1, "species", "mouse")
    cells.insert(2, "donor", [f"{prefix}d{i % n_donors}" for i in range(len(cells))])
    cells["subclass"] = cells["label5"]
    return cells


def _to_lab(cells: pd.DataFrame) -> pd.DataFrame:
    out = cells.copy()
    out[FEATURES] = cells[FEATURES].to_numpy() * LAB_SCALE + LAB_OFFSET
    return out


@pytest.fixture(scope="module")
def world():
    """Training cells, their fitted reference, and a shifted lab batch with excitatory cells."""
    rng = np.random.default_rng(0)
    reference = _cells({c: 60 for c in MOUSE_CLASSES}, rng, "r", 20)
    lab_gaba = _to_lab(
        _cells({"Pvalb": 80, "Sst": 40, "Vip": 20, "Lamp5": 20, "Sncg": 10}, rng, "l", 12)
    )
    far = ORIGIN + np.array([-4, -2, 8, -3, -3, -4]) * SPREAD
    exc = pd.DataFrame(far + rng.normal(size=(30, len(FEATURES))) * SPREAD * 0.5, columns=FEATURES)
    exc = _to_lab(exc.assign(label5=np.nan))
    exc.insert(0, "specimen_id", [f"e{i}" for i in range(30)])
    exc.insert(1, "donor", [f"ld{i % 12}" for i in range(30)])
    lab = pd.concat([lab_gaba, exc], ignore_index=True)
    lab["cell_class"] = np.where(lab["label5"].notna(), "gabaergic", "excitatory")
    fit = fit_hierarchy(reference, "mouse", FEATURES, donor_kfold(3, 0), SETTINGS, 0, 1)
    return reference, fit, lab


def _accuracy(model, lab: pd.DataFrame) -> float:
    gaba = lab[lab["label5"].notna()]
    called = model.predict_proba_levels(gaba[FEATURES])["subclass"].idxmax(axis=1)
    return float((called.to_numpy() == gaba["label5"].to_numpy()).mean())


def test_anchored_shift_recovers_a_known_map_under_another_class_mix(world):
    reference, _, lab = world
    gaba = lab[lab["label5"].notna()]
    shift = class_anchored_shift(
        gaba[FEATURES], gaba["label5"].to_numpy(), reference, reference["label5"].to_numpy(),
        FEATURES,
    )  # fmt: skip
    # lab -> reference is the inverse map: scale 1/LAB_SCALE, offset -LAB_OFFSET/LAB_SCALE
    np.testing.assert_allclose(shift.scale, 1 / LAB_SCALE, rtol=0.2)
    back = shift.to_reference(gaba[FEATURES])
    original = (gaba[FEATURES] - LAB_OFFSET) / LAB_SCALE
    err = ((back - original).abs().median() / SPREAD).to_numpy()
    assert (err < 0.25).all(), err
    # matching the batch's own median instead is fooled by the class mix
    naive = gaba[FEATURES].median() - reference[FEATURES].median()
    assert not np.allclose(naive.to_numpy(), LAB_OFFSET, rtol=0.3)
    # the inverse round-trips
    pd.testing.assert_frame_equal(shift.to_lab(back), gaba[FEATURES], rtol=1e-9)


def test_unlabelled_adaptation_beats_the_reference_as_it_is(world):
    reference, fit, lab = world
    excitatory = lab["cell_class"].eq("excitatory").to_numpy()
    as_is = _accuracy(fit.model, lab)
    lab_fit = fit_lab_model(
        fit.model, fit.calibration, reference, "label5", lab[["specimen_id", *FEATURES]],
        eligible=~excitatory,
    )  # fmt: skip
    adapted = _accuracy(lab_fit.model, lab)
    assert as_is < 0.8  # the shift hurts the reference as it is
    assert adapted > 0.9 and adapted > as_is + 0.1
    assert lab_fit.details["method"].startswith("unlabelled")
    assert lab_fit.calibration["subclass"] is fit.calibration["subclass"]  # reference's sets


def test_labelled_adaptation_joins_training_and_recalibrates_on_lab_cells(world):
    reference, fit, lab = world
    gaba = lab["label5"].notna()
    taken = lab["donor"].isin([f"ld{i}" for i in range(6)]) & gaba
    labels = lab["label5"].where(taken)
    lab_fit = fit_lab_model(
        fit.model, fit.calibration, reference, "label5", lab, labels, lab["donor"],
    )  # fmt: skip
    cal = lab_fit.calibration["subclass"]
    own = lab_fit.details["calibrated_on_lab_cells"]
    counts = lab.loc[taken, "label5"].value_counts()
    assert own == [c for c in fit.taxonomy.subclasses if counts.get(c, 0) >= 19]
    for c in fit.taxonomy.subclasses:  # a class's scores: the lab's if it has enough cells
        source = counts.get(c, 0) if c in own else (fit.calibration["subclass"].labels == c).sum()
        assert (cal.labels == c).sum() == source
    assert lab_fit.details["labelled_cells"] == int(taken.sum())
    assert lab_fit.details["grouped_by_donor"] and lab_fit.details["calibration_folds"] == 5
    assert lab_fit.details["lab_weight"] in (1.0, 4.0, 16.0)
    rest = lab[~lab["donor"].isin([f"ld{i}" for i in range(6)])]
    assert _accuracy(lab_fit.model, rest) > 0.9
    # the t-type level stays consistent with the new subclass level
    levels = lab_fit.model.predict_proba_levels(rest[FEATURES])
    parent = fit.taxonomy.parent
    for s in levels["subclass"].columns:
        leaves = [t for t in levels["t_type"].columns if parent[t] == s]
        np.testing.assert_allclose(
            levels["t_type"][leaves].sum(axis=1), levels["subclass"][s], atol=1e-9
        )


def test_unknown_lab_labels_are_refused(world):
    from ephys2tx.errors import Ephys2txError

    reference, fit, lab = world
    labels = pd.Series(["L5 IT"] * len(lab))
    with pytest.raises(Ephys2txError, match="not classes of the reference"):
        fit_lab_model(fit.model, fit.calibration, reference, "label5", lab, labels)


def test_not_interneuron_flag_and_never_confident(world):
    reference, fit, lab = world
    gaba = lab[lab["cell_class"] == "gabaergic"]
    exc = lab[lab["cell_class"] == "excitatory"]
    train_exc, test_exc = exc.iloc[:15], exc.iloc[15:]
    detector = InterneuronDetector.fit([reference, gaba.iloc[:100]], train_exc, FEATURES, "test")
    assert detector.flag(test_exc).mean() >= 0.9
    assert detector.flag(gaba.iloc[100:]).mean() <= 0.1
    lab_fit = fit_lab_model(fit.model, fit.calibration, reference, "label5", lab)
    from ephys2tx.models.trusted import fit_training_summary

    trust = fit_training_summary(lab_fit.model.shift.to_lab(reference), FEATURES, "mouse")
    trust.interneuron = detector
    scored = pd.concat([gaba.iloc[100:], test_exc], ignore_index=True)
    proba = lab_fit.model.predict_proba_levels(scored[FEATURES])["subclass"].to_numpy()
    sets = [[c] for c in np.asarray(fit.taxonomy.subclasses)[proba.argmax(axis=1)]]
    table = trust_table(scored, proba, list(fit.taxonomy.subclasses), sets, trust)
    flagged = table["flags"].map(lambda f: NOT_INTERNEURON in split_joined(f, FLAG_SEPARATOR))
    assert flagged[len(gaba) - 100 :].mean() >= 0.9  # the excitatory cells
    assert not (table["confident"] & flagged).any()  # a flagged cell is never confident


def test_lab_shift_flags_a_shifted_batch_and_names_features(world):
    reference, _, lab = world
    shift = BatchShift.fit(reference, FEATURES, reference["donor"], reference["label5"])
    gaba = lab[lab["cell_class"] == "gabaergic"]
    line = shift.check(gaba, gaba["label5"])
    assert line is not None and line.startswith("lab_shift")
    ratio = shift.shifts(gaba, gaba["label5"])
    assert ratio["v_baseline"] > 1  # the lab's offset of 8 mV, beyond every donor
    assert ratio.idxmax() in line  # the most shifted feature is named
    # the reference's own cells (a fresh draw, same class mix) are not shifted
    fresh = _cells({c: 20 for c in MOUSE_CLASSES}, np.random.default_rng(5), "f", 4)
    assert shift.check(fresh, fresh["label5"]) is None
    assert shift.check(gaba.head(5), gaba["label5"].head(5)) is None  # too few cells to judge


def test_feature_shift_identity_changes_nothing():
    cells = pd.DataFrame({"tau": [0.01, 0.02], "other": [1, 2]})
    shift = FeatureShift.identity(["tau"])
    pd.testing.assert_frame_equal(shift.to_reference(cells), cells.astype({"tau": float}))


def test_m1_labels_follow_the_rules():
    assert first_t_type("Sst Calb2 Pdlim5 (62.0%), Sst Hpse Cbln4 (20.0%)") == (
        "Sst Calb2 Pdlim5", 62.0,
    )  # fmt: skip
    assert first_t_type(np.nan)[0] is None
    meta = pd.DataFrame(
        {
            "Cell": ["a", "b", "c", "d", "e"],
            "Mouse": ["m1", "m1", "m2", "m2", "m3"],
            "RNA family": ["Pvalb", "IT", "low quality", "Sncg", "Vip"],
            "ALM/VISp top-3": ["Pvalb Reln Itm2a (80.0%)", "L5 IT (90.0%)", "", "Sncg Gpr50 (40.0%)",
                               "Vip Chat Htr1f (70.0%)"],
        }
    )  # fmt: skip
    table = labels_table(meta, known_t_types={"Pvalb Reln Itm2a"})
    assert table["cell_class"].tolist() == [
        "gabaergic", "excitatory", "low_quality", "gabaergic", "gabaergic",
    ]  # fmt: skip
    assert table["label"].tolist()[3] == "Vip" and table["label5"].tolist()[3] == "Sncg"
    # t-type only when >= 50% and known to the reference
    assert table["t_type"].tolist()[0] == "Pvalb Reln Itm2a"
    assert table["t_type"].isna().tolist() == [False, True, True, True, True]


@pytest.mark.slow
def test_adapt_and_predict_commands(world, tmp_path, monkeypatch):
    """`adapt` writes a lab model that `predict DIR` reads, with the new flags."""
    import ephys2tx.adapt as adapt_module
    from ephys2tx.cli import app

    reference, fit, lab = world
    monkeypatch.setattr(adapt_module, "default_training_cells", lambda *a, **k: reference)
    monkeypatch.setattr(adapt_module, "default_model_for_lab", lambda *a, **k: fit)
    monkeypatch.setattr(adapt_module, "data_checksums", lambda *a, **k: {})
    monkeypatch.setattr(adapt_module, "other_species_cells", lambda *a, **k: {})
    exc = lab[lab["cell_class"] == "excitatory"]

    def detector(species, features, ref, *a, **k):
        return InterneuronDetector.fit([ref], exc, features, "synthetic")

    monkeypatch.setattr(adapt_module, "m1_detector", detector)
    table = tmp_path / "lab.csv"
    lab[["specimen_id", "donor", *FEATURES]].to_csv(table, index=False)
    runner = CliRunner()
    result = runner.invoke(app, ["adapt", str(table), "--species", "mouse", "--out",
                                 str(tmp_path / "m")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "unlabelled target" in result.output and "lab model" in result.output
    out = tmp_path / "p.csv"
    result = runner.invoke(app, ["predict", str(tmp_path / "m"), str(table), "--out", str(out)])
    assert result.exit_code == 0, result.output
    preds = pd.read_csv(out, keep_default_na=False)
    assert len(preds) == len(lab)
    is_exc = preds["specimen_id"].str.startswith("e")
    flagged = preds["flags"].str.contains(NOT_INTERNEURON)
    assert flagged[is_exc].mean() >= 0.9
    assert not (preds["confident"].astype(str).eq("True") & flagged).any()
    import ephys2tx

    model = ephys2tx.load_model(tmp_path / "m")  # the Python API reads a lab model too
    assert model.kind == "hierarchical" and len(model.predict(lab)) == len(lab)
    # with labels: a `subclass` column
    labelled = lab.assign(subclass=lab["label5"].where(lab["donor"].isin(["ld0", "ld1", "ld2"])))
    labelled[["specimen_id", "donor", "subclass", *FEATURES]].to_csv(table, index=False)
    result = runner.invoke(app, ["adapt", str(table), "--species", "mouse", "--out",
                                 str(tmp_path / "m2")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "labelled lab cells join training" in result.output


def test_crosslab_section_round_trips_and_renders(tmp_path):
    from ephys2tx.report.html import render_report
    from ephys2tx.report.results import CrossLabRun, StudyResults, read_results, write_results

    run = CrossLabRun(
        n_gaba=818, n_excitatory=413, features=FEATURES,
        rows={"a": {"macro_f1": 0.5, "accuracy": 0.7}, "d": {"macro_f1": 0.6}},
        selection={"0": "anchored"}, lab_shift="lab_shift: this batch ...", draws=1, seconds=3.0,
    )  # fmt: skip
    results = StudyResults(crosslab=run)
    path = write_results(results, tmp_path / "results.json")
    assert read_results(path).crosslab == run
    page = render_report(read_results(path), tmp_path)
    assert "Another lab's cells" in page and "lab_shift: this batch" in page
    assert "<td>—</td>" in page  # a figure a row lacks is shown as missing, not as zero
