"""The per-cell report (`predict --report`): cards built from real human cells, the page
(one card per cell, flag sentences, self-contained), headless Chromium, and the CLI on a
real recording.

Prediction sets, flags and novelty are made up here, and the nearest training cells come
from a plain NaN-aware search: the report only shows what `predict` gives it.
"""

from __future__ import annotations

import html
import json
import re
import subprocess

import numpy as np
import pandas as pd
import pytest
from conftest import RECORDINGS, run_cli_in_process
from sklearn.metrics import roc_auc_score
from sklearn.metrics.pairwise import nan_euclidean_distances
from test_report_browser import artifacts_dir, ensure_chromium, screenshot

from ephys2tx.datasets.cells import usable_features
from ephys2tx.errors import Ephys2txError
from ephys2tx.report.cell_page import render_card, write_cell_report
from ephys2tx.report.cells import FLAG_SENTENCES, build_cards, flag_sentence

FSI = RECORDINGS / "abf" / "2019_07_24_0055_fsi.abf"
FLAG_CODES = [
    "few_features",
    "missing_family:ap_hero",
    "out_of_range:tau",
    "species_mismatch",
    "novel",
    "set_excludes_call",
]


@pytest.fixture(scope="module")
def case(human_cells):
    """A forest on the cells of most donors; 8 cells of held-out donors to report on."""
    from ephys2tx.models.forest import make_forest

    cells = human_cells[human_cells["label"].notna()].reset_index(drop=True)
    features = usable_features(cells)
    held = sorted(cells["donor"].unique())[:5]
    reference = cells[~cells["donor"].isin(held)].reset_index(drop=True)
    new = cells[cells["donor"].isin(held)].head(8).reset_index(drop=True)
    forest = make_forest(0, n_estimators=60, n_jobs=1).fit(reference[features], reference["label"])
    proba = forest.predict_proba(new[features])
    pred = pd.DataFrame({"specimen_id": new["specimen_id"].to_numpy()})
    pred["predicted"] = forest.classes_[proba.argmax(axis=1)]
    for i, cls in enumerate(forest.classes_):
        pred[f"p_{cls}"] = proba[:, i]
    order = np.argsort(-proba, axis=1)
    pred["prediction_set"] = ["|".join(forest.classes_[o[:2]]) for o in order]
    pred["confident"] = False
    pred["novelty"] = np.linspace(0, 1, len(new))
    pred["flags"] = [";".join(FLAG_CODES)] + [""] * (len(new) - 1)
    ref = reference[features].to_numpy(float)
    distances = nan_euclidean_distances(new[features].to_numpy(float), ref)
    indices = np.argsort(distances, axis=1)[:, :5]
    return {
        "forest": forest,
        "features": features,
        "reference": reference,
        "new": new,
        "pred": pred,
        "proba": proba,
        "classes": list(forest.classes_),
        "indices": indices,
        "distances": np.take_along_axis(distances, indices, axis=1),
    }


@pytest.fixture(scope="module")
def cards(case):
    return build_cards(
        case["pred"],
        case["new"],
        case["features"],
        case["reference"],
        "label",
        case["indices"],
        case["distances"],
    )


def test_cards_carry_the_predictions(case, cards):
    assert [c.specimen_id for c in cards] == [str(s) for s in case["new"]["specimen_id"]]
    for card, p in zip(cards, case["proba"], strict=True):
        assert card.probabilities == pytest.approx(dict(zip(case["classes"], p, strict=True)))
        ranked = np.asarray(case["classes"])[np.argsort(-p)]
        assert card.predicted == ranked[0] and card.runner_up == ranked[1]
        assert card.prediction_set == list(ranked[:2])
        assert card.confident is False
    assert cards[0].flags == FLAG_CODES
    assert all(c.flags == [] for c in cards[1:])
    assert [c.novelty for c in cards] == pytest.approx(np.linspace(0, 1, len(cards)))


def test_cards_compare_measured_features_with_the_two_classes(case, cards):
    reference = case["reference"]
    for card in cards:
        assert 0 < len(card.comparisons) <= 6
        scores = [c.separation for c in card.comparisons]
        assert scores == sorted(scores, reverse=True)
        for comp in card.comparisons:
            assert np.isfinite(card.features[comp.name]) and comp.value == card.features[comp.name]
            assert set(comp.by_class) == {card.predicted, card.runner_up}
            for cls, values in comp.by_class.items():
                expected = reference.loc[reference["label"] == cls, comp.name].dropna()
                assert np.array_equal(values, expected.to_numpy(float))
        # the separation is |2 AUROC - 1| between the two classes' training cells
        top = card.comparisons[0]
        a, b = top.by_class[card.predicted], top.by_class[card.runner_up]
        auc = roc_auc_score(np.r_[np.ones(len(a)), np.zeros(len(b))], np.r_[a, b])
        assert top.separation == pytest.approx(abs(2 * auc - 1))


def test_a_feature_the_cell_lacks_is_never_shown(case, cards):
    new = case["new"].copy()
    dropped = cards[0].comparisons[0].name
    new.loc[0, dropped] = np.nan
    again = build_cards(case["pred"], new, case["features"], case["reference"], "label")
    assert dropped not in [c.name for c in again[0].comparisons]
    assert again[0].neighbours is None  # no neighbour search given
    new.loc[1, case["features"]] = np.nan  # nothing measured: probabilities, no features
    blank = build_cards(case["pred"], new, case["features"], case["reference"], "label")[1]
    assert blank.n_measured == 0 and blank.comparisons == []
    assert "none of the model's features is measured" in render_card(blank, 1)


def test_neighbours_are_the_reference_rows(case, cards):
    reference = case["reference"]
    for card, idx, dist in zip(cards, case["indices"], case["distances"], strict=True):
        assert len(card.neighbours) == 5
        for n, i, d in zip(card.neighbours, idx, dist, strict=True):
            row = reference.iloc[i]
            assert (n.specimen_id, n.donor, n.t_type, n.subclass) == (
                str(row["specimen_id"]),
                row["donor"],
                row["t_type"],
                row["subclass"],
            )
            assert n.distance == pytest.approx(d)


def test_missing_trust_columns_are_not_available(case):
    plain = case["pred"][["specimen_id", "predicted", *[f"p_{c}" for c in case["classes"]]]]
    cards = build_cards(plain, case["new"], case["features"])
    assert all(
        c.prediction_set is None and c.flags is None and c.novelty is None and c.confident is None
        for c in cards
    )
    assert all(c.comparisons == [] and c.neighbours is None for c in cards)
    with pytest.raises(Ephys2txError, match="predictions for"):
        build_cards(plain.head(3), case["new"], case["features"])


def test_every_flag_code_has_its_sentence():
    assert set(FLAG_SENTENCES) == {code.split(":")[0] for code in FLAG_CODES}
    assert "AP shape at the hero sweep" in flag_sentence("missing_family:ap_hero")
    assert flag_sentence("out_of_range:tau").startswith("tau lies far beyond")
    assert "no description" in flag_sentence("made_up")
    with_value = flag_sentence("out_of_range:tau", {"tau": 17.2})
    assert with_value.startswith("tau = 17.2 s lies far beyond")


def _page(tmp_path, cards, name="cells.html"):
    path = write_cell_report(
        tmp_path / name, cards, "test cells", {"model": "rf", "species": "human"}
    )
    assert not list(tmp_path.glob("*.part"))  # written atomically
    return path, path.read_text(encoding="utf-8")


def test_page_has_one_card_per_cell_and_the_flag_sentences(tmp_path, cards):
    _, page = _page(tmp_path, cards)
    assert len(re.findall(r"<details class='card'", page)) == len(cards)
    for card in cards:
        assert f"data-specimen='{card.specimen_id}'" in page
    for code in FLAG_CODES:
        assert html.escape(flag_sentence(code, cards[0].features)) in page
    assert page.count("<li data-flag=") == len(FLAG_CODES)
    assert page.count("No flag raised.") == len(cards) - 1
    # self-contained: no address to fetch, every image inlined
    assert not re.search(r"https?://", page)
    assert not re.search(r"<(link|iframe)\b|<script[^>]+src=", page)
    images = re.findall(r"<img [^>]*>", page)
    assert len(images) == len(cards)  # one feature figure each; no recording, no sweeps
    assert all('data-src="data:image/png;base64,' in img for img in images)


def test_page_says_what_is_not_available(tmp_path, case):
    plain = case["pred"][["specimen_id", "predicted", *[f"p_{c}" for c in case["classes"]]]]
    cards = build_cards(plain, case["new"], case["features"], case["reference"], "label")
    _, page = _page(tmp_path, cards)
    banner = re.search(r"<div class='banner'>(.*?)</div>", page).group(1)
    for part in ("prediction sets", "flags", "novelty", "nearest training cells"):
        assert f"{part} (needs" in banner
    assert page.count("Nearest training cells: not available for this model.") == len(cards)


# Opens every card while the page is parsed (so the load event waits for every image), then
# reports what the browser shows once it has loaded.
PROBE = """<script>
setAll(true);
document.querySelectorAll('details.card').forEach(showImages);
window.addEventListener('load', () => {
  const probe = {
    cards: document.querySelectorAll('details.card').length,
    open: document.querySelectorAll('details.card[open]').length,
    images: [...document.images].map(i => ({alt: i.alt, width: i.naturalWidth})),
    flags: [...document.querySelectorAll('li[data-flag]')].map(e => e.dataset.flag),
    bars: document.querySelectorAll('.bar').length,
  };
  showOnly('flagged');
  const shown = s => [...document.querySelectorAll(s)].filter(e => e.style.display !== 'none');
  probe.flagged_shown = [shown('details.card').length, shown('table.summary tr[data-cell]').length];
  const pre = document.createElement('pre');
  pre.id = 'cell-probe';
  pre.textContent = JSON.stringify(probe);
  document.body.appendChild(pre);
});
</script>"""


@pytest.mark.slow
def test_cell_report_in_headless_chromium(tmp_path, case, cards):
    from ephys2tx.features.key_sweeps import key_sweeps
    from ephys2tx.recordings.read import read_recording

    browser = ensure_chromium()
    swept = build_cards(
        case["pred"].head(1),
        case["new"].head(1),
        case["features"],
        case["reference"],
        "label",
        sweeps={0: key_sweeps(read_recording(FSI))},
    )
    path, page = _page(tmp_path, [*swept, *cards[1:]])
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    done = subprocess.run(
        [str(browser), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
         "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'<pre id="cell-probe">(.*?)</pre>', done.stdout, re.S)
    assert found, "the probe did not run"
    probe = json.loads(html.unescape(found.group(1)))
    assert probe["cards"] == probe["open"] == len(cards)
    assert len(probe["images"]) == len(cards) + 1  # the first card also has its sweeps
    assert all(i["width"] > 100 for i in probe["images"]), probe["images"]
    assert probe["bars"] == len(cards) * len(case["classes"])
    assert probe["flags"] == FLAG_CODES
    assert probe["flagged_shown"] == [1, 1]  # the filter keeps the one flagged cell
    opened = tmp_path / "opened.html"
    opened.write_text(page.replace("<details class='card'", "<details open class='card'"))
    png = screenshot(browser, opened, artifacts_dir() / "cell_report.png", tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_key_sweeps_are_the_ones_the_features_come_from():
    from ephys2tx.features.extract import extract_features
    from ephys2tx.features.key_sweeps import key_sweeps
    from ephys2tx.recordings.read import read_recording

    rec = read_recording(FSI)
    found, reason = key_sweeps(rec)
    assert reason is None and set(found) == {"rheobase", "hero"}
    scalars = extract_features(rec).scalars
    assert found["rheobase"].amplitude == pytest.approx(scalars["rheobase_i"])
    assert found["hero"].amplitude == pytest.approx(scalars["stim_amp_hero"])


@pytest.mark.slow
def test_predict_report_on_a_real_recording(tmp_path, case):
    from ephys2tx.evaluation.splits import donor_kfold
    from ephys2tx.models.bundle import card_for
    from ephys2tx.models.forest import make_forest
    from ephys2tx.models.trusted import Trust, fit_training_summary, save_trained
    from ephys2tx.trust.calibrate import OutOfFold, calibrate

    reference, features, forest = case["reference"], case["features"], case["forest"]
    model = tmp_path / "model"
    # calibration and training summary as `train` stores them, without the species fingerprint
    unfitted = make_forest(0, n_estimators=60, n_jobs=1)
    y, donors = reference["label"].to_numpy(), reference["donor"].to_numpy()
    calibration = calibrate(
        OutOfFold.flat(unfitted, reference[features], y, donors, donor_kfold(5, 0), "label")
    )
    trust = Trust(
        fit_training_summary(reference, features, "human"), calibration.conformal,
        calibration.temperature,
    )  # fmt: skip
    card = card_for(forest, "rf-raw", "human", "label", len(reference))
    save_trained(model, forest, card, trust)
    report = tmp_path / "out" / "cells.html"
    done = run_cli_in_process(
        "predict", model, FSI, "--out", tmp_path / "out" / "preds.csv", "--report", report
    )
    assert done.returncode == 0, done.stderr
    predictions = pd.read_csv(tmp_path / "out" / "preds.csv", keep_default_na=False)
    page = report.read_text(encoding="utf-8")
    assert page.count("<details class='card'") == 1
    assert "data-specimen='2019_07_24_0055_fsi'" in page
    assert "rheobase and hero sweeps" in page  # the sweeps figure's alt text
    assert "Mondrian conformal, alpha 0.1" in page
    shown_set = " | ".join(predictions["prediction_set"][0].split("|"))
    assert f"<b data-key='set'>{html.escape(shown_set)}</b>" in page
    flags = [f for f in predictions["flags"][0].split("; ") if f]
    assert flags  # long squares only: the short-square and ramp families are missing
    for code in flags:
        assert html.escape(flag_sentence(code, {})) in page or code.startswith("out_of_range")
    assert "Not available for this model: nearest training cells (needs" in page
    assert not re.search(r"https?://", page)


def test_an_uncalibrated_model_leaves_its_columns_out(case, tmp_path):
    from ephys2tx.commands.predict_report import available_columns
    from ephys2tx.models.bundle import card_for, save_model
    from ephys2tx.models.forest import make_forest
    from ephys2tx.predictor import load_model

    reference, features = case["reference"], case["features"]
    forest = make_forest(0, n_estimators=10, n_jobs=1).fit(reference[features], reference["label"])
    save_model(
        tmp_path / "bare", forest, card_for(forest, "rf-raw", "human", "label", len(reference))
    )
    bare = load_model(tmp_path / "bare")  # no calibration, no training summary stored
    run = bare.run(case["new"])
    kept = available_columns(bare, run)
    assert not {"prediction_set", "confident", "novelty", "flags"} & set(kept.columns)
    cards = build_cards(kept, case["new"], features)
    assert all(c.prediction_set is None and c.flags is None for c in cards)
