"""report.html in a real browser: headless Chromium loads every figure, the tables are there,
and the numbers on the page are the numbers in results.json (as rounded for display).

Chromium is Debian's `chromium` package: CI (.ci/run) installs it; without it the browser
tests skip and say how to install it. A screenshot is kept as a test artifact in
$EPHYS2TX_ARTIFACTS (default: artifacts/ under the repository root).
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
PROBE_ID = "ephys2tx-probe"
BROKEN_ID = "ephys2tx-broken-sentinel"  # an image that must be reported as failed
# Runs after the load event; writes what the page shows into the DOM for --dump-dom.
PROBE_SCRIPT = f"""
<img id="{BROKEN_ID}" alt="" style="display:none" src="data:image/png;base64,AAAA">
<script>
window.addEventListener('load', () => {{
  const text = e => e.textContent.trim();
  const probe = {{
    images: [...document.images].map(i => ({{
      id: i.id, alt: i.alt, complete: i.complete, width: i.naturalWidth}})),
    numbers: [...document.querySelectorAll('[data-key]')].map(e => ({{
      key: e.dataset.key, text: text(e)}})),
    tables: [...document.querySelectorAll('table')].map(t => ({{
      section: (t.closest('section') || {{}}).id || (() => {{
        let e = t; while (e && !(e.tagName === 'H2' && e.id)) e = e.previousElementSibling;
        return e ? e.id : null; }})(),
      rows: t.rows.length,
      headers: [...t.rows[0].cells].map(text)}})),
    sections: [...document.querySelectorAll('h2[id]')].map(h => h.id),
    synthetic_banners: [...document.querySelectorAll('.synthetic')].length,
  }};
  const pre = document.createElement('pre');
  pre.id = '{PROBE_ID}';
  pre.textContent = JSON.stringify(probe);
  document.body.appendChild(pre);
}});
</script>
"""
FLAGS = [
    "--headless",
    "--no-sandbox",  # tests run as root in containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]


# --- helpers (also used by test_demo on the demo's report) -------------------------------
def ensure_chromium() -> Path:
    """/usr/bin/chromium; skip the test when it is missing (a test never installs software)."""
    if CHROMIUM.is_file():
        return CHROMIUM
    pytest.skip(
        f"headless Chromium is not installed at {CHROMIUM}; install Debian's `chromium` "
        "package (`apt-get install -y --no-install-recommends chromium`, as .ci/run does) "
        "to run the browser test"
    )


def artifacts_dir() -> Path:
    path = Path(os.environ.get("EPHYS2TX_ARTIFACTS", REPO / "artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _chromium(browser: Path, profile: Path, *args: str, timeout: int = 90) -> str:
    done = subprocess.run(
        [str(browser), *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"chromium failed: {done.stderr[-2000:]}"
    return done.stdout


def probe_page(browser: Path, report: Path, workdir: Path) -> dict:
    """Load a copy of `report` with the probe script; return what the browser saw."""
    page = report.read_text(encoding="utf-8")
    assert "</body>" in page
    probed = workdir / "probed.html"
    probed.write_text(page.replace("</body>", PROBE_SCRIPT + "</body>"), encoding="utf-8")
    dom = _chromium(
        browser,
        workdir / "profile",
        "--virtual-time-budget=10000",  # lets the load event and the probe run first
        "--dump-dom",
        probed.as_uri(),
    )
    found = re.search(rf'<pre id="{PROBE_ID}">(.*?)</pre>', dom, re.S)
    assert found, "the probe did not run: no load event within the time budget"
    return json.loads(html.unescape(found.group(1)))


def screenshot(browser: Path, report: Path, png: Path, workdir: Path) -> Path:
    _chromium(
        browser,
        workdir / "profile",
        f"--screenshot={png}",
        "--window-size=1200,3000",
        report.as_uri(),
    )
    return png


def lookup(results: dict, key: str):
    """The value at a data-key path; dict keys may themselves contain dots."""
    node, parts = results, key.split(".")
    while parts:
        for n in range(len(parts), 0, -1):  # longest key first
            name = ".".join(parts[:n])
            if isinstance(node, dict) and name in node:
                node, parts = node[name], parts[n:]
                break
            if isinstance(node, list) and name.isdigit() and int(name) < len(node):
                node, parts = node[int(name)], parts[n:]
                break
        else:
            raise KeyError(f"{key!r} is not a path in results.json")
    return node


def number_mismatches(results: dict, numbers: list[dict]) -> list[str]:
    """Shown numbers that differ from results.json by more than their display rounding."""
    bad = []
    for item in numbers:
        key, text = item["key"], item["text"].replace("−", "-").replace("+", "")
        try:
            value = float(lookup(results, key))
            shown = float(text)
        except (KeyError, TypeError, ValueError) as exc:
            bad.append(f"{key}: {item['text']!r} ({exc})")
            continue
        decimals = len(text.split(".")[1]) if "." in text else 0
        if abs(shown - value) > 0.5 * 10**-decimals + 1e-9:
            bad.append(f"{key}: page shows {item['text']}, results.json has {value}")
    return bad


def check_report(browser: Path, out: Path, workdir: Path, screenshot_name: str) -> dict:
    """Every figure loaded, tables present, numbers equal results.json; keep a screenshot."""
    results = json.loads((out / "results.json").read_text())
    probe = probe_page(browser, out / "report.html", workdir)
    images = [i for i in probe["images"] if i["id"] != BROKEN_ID]
    sentinel = [i for i in probe["images"] if i["id"] == BROKEN_ID]
    # the probe can tell a broken image from a loaded one
    assert sentinel and sentinel[0]["width"] == 0
    assert images, "the report has no figures"
    not_loaded = [i["alt"] for i in images if not (i["complete"] and i["width"] > 0)]
    assert not not_loaded, f"figures that did not load: {not_loaded}"
    assert probe["numbers"], "no number carries a data-key"
    assert number_mismatches(results, probe["numbers"]) == []
    png = screenshot(browser, out / "report.html", artifacts_dir() / screenshot_name, workdir)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1200, 3000)
    return probe


# --- a small report made here ------------------------------------------------------------
def _scores(labels: list[str], counts: list[list[int]], f1: float):
    from ephys2tx.report.results import Scores

    return Scores(
        model="rf-raw",
        species="human",
        label="label",
        protocol="grouped",
        n_cells=int(sum(map(sum, counts))),
        n_folds=5,
        n_repeats=1,
        macro_f1={"mean": f1, "sd": 0.0456, "ci95": [f1 - 0.05, f1 + 0.05], "n": 5},
        accuracy={"mean": f1 + 0.0123, "sd": 0.0311},
        per_class_f1=dict.fromkeys(labels, f1),
    )


@pytest.fixture(scope="module")
def small_report(tmp_path_factory) -> Path:
    import numpy as np
    import pandas as pd

    from ephys2tx.report import results as r
    from ephys2tx.report.figures import (
        accuracy_called_png,
        confusion_matrix_png,
        embedding_png,
        family_importance_png,
        reliability_png,
    )
    from ephys2tx.report.html import write_report

    out = tmp_path_factory.mktemp("report")
    figures = out / "figures"
    labels = ["Lamp5", "Pvalb", "Sst", "Vip"]
    counts = [[5, 1, 0, 0], [0, 6, 1, 0], [1, 0, 4, 1], [0, 0, 1, 7]]
    forest = []
    for species, label, f1 in (("human", "label", 0.71234), ("mouse", "label5", 0.80456)):
        run = r.ForestRun(species, label, "raw", "grouped", _scores(labels, counts, f1), None)
        metrics = {
            "macro_f1": run.scores.macro_f1,
            "confusion_matrix": {"labels": labels, "counts": counts},
        }
        png = confusion_matrix_png(metrics, figures / f"confusion_{run.key}.png", run.key)
        run.figure = r.Figure(png.name, run.title)
        forest.append(run)
    rng = np.random.default_rng(0)
    coords = pd.DataFrame(
        {"x": rng.normal(size=40), "y": rng.normal(size=40), "label": np.repeat(labels, 10)}
    )
    importance = pd.DataFrame(
        {"family": ["subthreshold", "ap_rheo"], "mean": [0.12, 0.05], "sd": [0.01, 0.02]}
    )
    bins = pd.DataFrame({"confidence": [0.35, 0.55, 0.85], "accuracy": [0.4, 0.6, 0.9]})
    curve = pd.DataFrame({"share_called": [0.5, 1.0], "accuracy": [0.95, 0.84]})
    paired = r.PairedDifference(
        "transfer", "bilstm_human", 1.0, "grouped", -0.0217, [-0.1, 0.05], 5, 2
    )
    results = r.StudyResults(
        ephys2tx_version="test",
        preset="quick",
        synthetic=True,
        data={
            "human": r.SpeciesData(
                species="human",
                n_input=60,
                dropped={"no transcriptomic type": 20},
                n_kept=40,
                n_donors=6,
                n_features=80,
                labels={"Lamp5": 10, "Pvalb": 10, "Sst": 10, "Vip": 10},
                labels5={},
            )
        },
        embedding={
            "human": r.Embedding(
                species="human",
                silhouette={"Lamp5": 0.1234, "Pvalb": -0.0567, "all": 0.0611},
                families={},
                n_cells=40,
                n_dropped_incomplete=0,
                figure=r.Figure(
                    embedding_png(coords, figures / "umap_human.png", "umap").name, "umap"
                ),
            )
        },
        forest=r.keyed(forest),
        importance={
            "human": r.Importance(
                "human",
                importance.to_dict(orient="records"),
                r.Figure(family_importance_png(importance, figures / "imp.png", "imp").name, "imp"),
            )
        },
        sequence=r.SequenceSection(
            scores={
                "bilstm_human": r.NetworkRun(
                    "bilstm_human", "BiLSTM", _scores(labels, counts, 0.65432)
                )
            },
            paired=r.keyed([paired]),
            figures=[],
            learning_curve=[],
            notes=[],
        ),
        trust={
            "human_label": r.TrustRun(
                species="human",
                label="label",
                title="forest, human 4-class",
                alpha=0.1,
                coverage=0.90123,
                coverage_per_class=dict.fromkeys(labels, 0.9),
                mean_set_size=1.8765,
                share_confident=0.2612,
                confident_accuracy=0.9345,
                ece=0.0549,
                ece_unscaled=0.1853,
                n_folds=5,
                n_repeats=1,
                figures=[
                    r.Figure(
                        reliability_png({"rf": bins}, figures / "rel.png").name, "reliability"
                    ),
                    r.Figure(
                        accuracy_called_png({"rf": curve}, figures / "acc.png").name, "called"
                    ),
                ],
            )
        },
        timings=[r.StepTiming("data", 1.5, False), r.StepTiming("rf_human", 12.25, True)],
    )
    r.write_results(results, out / "results.json")
    write_report(results, out)
    return out


@pytest.mark.slow
def test_report_in_headless_chromium(small_report, tmp_path):
    browser = ensure_chromium()
    probe = check_report(browser, small_report, tmp_path, "report.png")
    # 2 confusion matrices, UMAP, importance, reliability, accuracy against share called
    assert len(probe["images"]) - 1 == 6
    assert "How far to trust a call" in (small_report / "report.html").read_text()
    sections = {t["section"] for t in probe["tables"]}
    assert {"data", "embedding", "forest", "sequence"} <= sections
    assert all(t["rows"] >= 2 for t in probe["tables"])  # a header row and data
    keys = {n["key"] for n in probe["numbers"]}
    assert "forest.rf_human_label_raw_grouped.scores.macro_f1.mean" in keys
    assert "sequence.paired.transfer − bilstm_human @ 100%.mean" in keys
    assert "Time per step" in (small_report / "report.html").read_text()
    assert probe["synthetic_banners"] >= len(probe["sections"])  # SYNTHETIC on every section


def test_number_check_catches_a_wrong_number():
    results = {"forest": {"a.b": {"macro_f1": {"mean": 0.71234}}}, "data": {"n": 40}}
    good = [
        {"key": "forest.a.b.macro_f1.mean", "text": "0.712"},
        {"key": "data.n", "text": "40"},
    ]
    assert number_mismatches(results, good) == []
    wrong = [{"key": "forest.a.b.macro_f1.mean", "text": "0.714"}]
    assert len(number_mismatches(results, wrong)) == 1
    missing = [{"key": "forest.nope.mean", "text": "0.1"}]
    assert "not a path" in number_mismatches(results, missing)[0]


def test_missing_chromium_skips_with_the_install_command(monkeypatch, tmp_path):
    import test_report_browser as this

    monkeypatch.setattr(this, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setattr(subprocess, "run", None)  # nothing may be run, let alone installed
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y .*chromium"):
        this.ensure_chromium()
