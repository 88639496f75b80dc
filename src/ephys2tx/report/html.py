"""A self-contained HTML report: every figure inlined, readable offline without a server.

Every number is read from the results records (`report.results`) and tagged with `data-key`
(its path in results.json), so a test can check the page against the file.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from ..datasets.sources import CITATIONS
from ..evaluation.crosslab import ROW_NAMES
from ..files import atomic_write_text
from .published import PROTOCOL_NOTES, PUBLISHED_STUDY, REPORTED
from .results import CrossLabRun, Figure, Scores, StudyResults

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;
color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.banner{background:#fff3cd;border:1px solid #e0c060;padding:.6em 1em;margin:1em 0;font-weight:600}
.synthetic{background:#fde2e2;border-color:#d77}
figure{display:inline-block;margin:.5em;vertical-align:top}figure img{max-width:520px;display:block}
figcaption{font-size:.85em;color:#555;max-width:520px}.note{color:#555;font-size:.9em}
"""


def _img(path: Path, caption: str) -> str:
    if not path.is_file():
        return f'<p class="note">figure missing: {html.escape(path.name)}</p>'
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _num(value, key: str, digits: int = 3) -> str:
    return f'<td class="num" data-key="{key}">{value:.{digits}f}</td>'


def _table(headers: list[str], rows: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _score_row(label: str, scores: Scores, key: str, published: tuple[str, str] | None) -> str:
    """One model's scores; `published=None` leaves out the study's columns (synthetic data)."""
    f1, acc = scores.macro_f1, scores.accuracy
    ref_cells = (
        ""
        if published is None
        else f"<td>{html.escape(published[0])}</td><td class='note'>{html.escape(published[1])}</td>"
    )
    return (
        f"<tr><td>{html.escape(label)}</td><td>{scores.protocol}</td>"
        f"<td class='num'>{scores.n_cells}</td>"
        + _num(f1["mean"], f"{key}.scores.macro_f1.mean")
        + _num(f1["sd"], f"{key}.scores.macro_f1.sd")
        + f"<td class='num'>{f1['ci95'][0]:.3f}–{f1['ci95'][1]:.3f}</td>"
        + _num(acc["mean"], f"{key}.scores.accuracy.mean")
        + ref_cells
        + "</tr>"
    )


SCORE_HEADERS = [
    "model",
    "protocol",
    "cells",
    "macro-F1",
    "sd",
    "95% CI",
    "accuracy",
    "reported by the study",
    "how",
]


def _figure(figures: Path, figure: Figure | None) -> str:
    return "" if figure is None else _img(figures / figure.file, figure.caption)


def _data_section(results: StudyResults) -> str:
    rows = []
    for species, d in results.data.items():
        reasons = "; ".join(f"{k}: {v}" for k, v in d.dropped.items()) or "none"
        labels = ", ".join(f"{k} {v}" for k, v in d.labels.items())
        rows.append(
            f"<tr><td>{species}</td><td class='num'>{d.n_input}</td><td>{html.escape(reasons)}</td>"
            f"<td class='num' data-key='data.{species}.n_kept'>{d.n_kept}</td>"
            f"<td class='num'>{d.n_donors}</td><td class='num'>{d.n_features}</td><td>{labels}</td></tr>"
        )
    return "<h2 id='data'>1. Data and quality control</h2>" + _table(
        [
            "species",
            "input rows",
            "dropped (reason: cells)",
            "kept",
            "donors",
            "features",
            "aligned labels",
        ],
        rows,
    )


def _embedding_section(results: StudyResults, figures: Path) -> str:
    parts, rows = [], []
    for species, e in results.embedding.items():
        parts.append(_figure(figures, e.figure))
        for cls, value in e.silhouette.items():
            rows.append(
                f"<tr><td>{species}</td><td>{cls}</td>{_num(value, f'embedding.{species}.silhouette.{cls}')}</tr>"
            )
    return (
        "<h2 id='embedding'>2. Class separation in the sparse-PCA space</h2>"
        "<p class='note'>Per-family elastic-net sparse PCA (components with adjusted explained "
        "variance ≥ 1%, z-scored, concatenated), then UMAP. Silhouette per class is computed in "
        "the sPCA space.</p>" + "".join(parts) + _table(["species", "class", "silhouette"], rows)
    )


def _published(key: str, synthetic: bool) -> tuple[str, str] | None:
    return None if synthetic else REPORTED.get(key, ("—", ""))


def _headers(synthetic: bool) -> list[str]:
    return SCORE_HEADERS[:-2] if synthetic else SCORE_HEADERS


def _forest_section(results: StudyResults, figures: Path) -> str:
    rows, images = [], []
    synthetic = results.synthetic
    for key, run in results.forest.items():
        published = _published(run.published, synthetic)
        rows.append(_score_row(run.title, run.scores, f"forest.{key}", published))
        if run.protocol == "grouped" and run.inputs == "raw":
            images.append(_figure(figures, run.figure))
    imp = results.importance.get("human")
    return (
        "<h2 id='forest'>3. Random forest baseline</h2>"
        "<p class='note'>Class-balanced random forest on raw canonical features (missing values "
        "stay NaN; scikit-learn's trees route them) and on the sPCA components.</p>"
        + _table(_headers(synthetic), rows)
        + "".join(images)
        + (_figure(figures, imp.figure) if imp else "")
    )


def _sequence_section(results: StudyResults, figures: Path) -> str:
    seq = results.sequence
    if seq is None:
        return ""
    synthetic = results.synthetic
    rows = [
        _score_row(
            run.title, run.scores, f"sequence.scores.{key}", _published(run.published, synthetic)
        )
        for key, run in seq.scores.items()
    ]
    prow = [
        f"<tr><td>{html.escape(k)}</td>{_num(d.mean, f'sequence.paired.{k}.mean')}"
        f"<td class='num'>{d.ci95[0]:+.3f} to {d.ci95[1]:+.3f}</td><td class='num'>{d.n}</td></tr>"
        for k, d in seq.paired.items()
    ]
    return (
        "<h2 id='sequence'>4. Attention BiLSTM and mouse → human transfer</h2>"
        + _table(_headers(synthetic), rows)
        + (
            "<h3>Paired differences on the same human folds</h3>"
            + _table(["comparison", "mean Δ macro-F1", "95% CI", "folds"], prow)
            if prow
            else ""
        )
        + "".join(_figure(figures, f) for f in seq.figures)
        + "".join(f"<p class='note'>{html.escape(n)}</p>" for n in seq.notes)
    )


def _default_model_section(results: StudyResults, figures: Path) -> str:
    """The hierarchical default model: per-level scores, conformal sets, t-type figures."""
    ref = results.default_model
    if not ref:
        return ""
    rows, images = [], []
    for species, r in ref.items():
        for level, m in r.levels.items():
            key = f"default_model.{species}.levels.{level}"
            rows.append(
                f"<tr><td>{html.escape(species)}</td><td>{level.replace('_', '-')}</td>"
                + "".join(
                    _num(m[k]["mean"], f"{key}.{k}.mean", 2 if k == "mean_set_size" else 3)
                    for k in (
                        "accuracy",
                        "macro_f1",
                        "balanced_accuracy",
                        "coverage",
                        "mean_set_size",
                    )
                )
                + (
                    _num(r.subclass_ece, f"default_model.{species}.subclass_ece", 3)
                    + _num(
                        r.subclass_ece_unscaled, f"default_model.{species}.subclass_ece_unscaled", 3
                    )
                    if level == "subclass"
                    else "<td></td><td></td>"
                )
                + "</tr>"
            )
        images.extend(_figure(figures, f) for f in r.figures)
    any_ref = next(iter(ref.values()))
    note = (
        f"Donor-grouped {any_ref.n_folds} folds x {any_ref.n_repeats} repeats. t-type "
        "scores count cells of t-types with >= 10 cells; rarer ones stay at subclass level. "
        f"Conformal sets at alpha {any_ref.alpha}: the subclass set at alpha, the t-type set at "
        "alpha/2 before it is nested inside the subclass set (so it covers with >= 1 - 1.5 "
        "alpha), calibrated on other folds' out-of-fold scores. ECE: top-label expected calibration error of "
        "the subclass probabilities, after (and before) one temperature fitted on donor-grouped "
        "out-of-fold probabilities inside each outer training fold."
    )
    return (
        "<h2 id='default-model'>6. The default model, hierarchical: subclass, then t-type</h2>"
        f"<p class='note'>{html.escape(note)}</p>"
        + _table(
            [
                "species",
                "level",
                "accuracy",
                "macro-F1",
                "balanced accuracy",
                "coverage",
                "mean set size",
                "ECE",
                "ECE before temperature",
            ],
            rows,
        )  # fmt: skip
        + "".join(images)
    )


def _trust_section(results: StudyResults, figures: Path) -> str:
    """How far to trust a call: coverage, set size, confident calls, ECE (nested calibration)."""
    trust = results.trust
    if not trust:
        return ""
    rows, images = [], []
    for key, t in trust.items():
        k = f"trust.{key}"
        classes = ", ".join(f"{c} {v:.2f}" for c, v in t.coverage_per_class.items())
        acc = t.confident_accuracy
        rows.append(
            f"<tr><td>{html.escape(t.title)}</td>"
            + _num(t.coverage, f"{k}.coverage")
            + f"<td class='note'>{html.escape(classes)}</td>"
            + _num(t.mean_set_size, f"{k}.mean_set_size", 2)
            + _num(t.share_confident, f"{k}.share_confident")
            + (_num(acc, f"{k}.confident_accuracy") if acc is not None else "<td>—</td>")
            + _num(t.ece, f"{k}.ece")
            + _num(t.ece_unscaled, f"{k}.ece_unscaled")
            + "</tr>"
        )
        images += [_figure(figures, f) for f in t.figures]
    alpha = next(iter(trust.values())).alpha
    return (
        "<h2 id='trust'>5. How far to trust a call</h2>"
        f"<p class='note'>Prediction sets at alpha = {alpha:g} (Mondrian conformal: each class "
        "calibrated on its own cells) should hold the true class of at least "
        f"{1 - alpha:.0%} of the cells of every class. A call is <em>confident</em> when its set "
        "holds one class and no flag is raised (few features, missing family, value out of "
        "range, species mismatch, novel cell). The calibration, novelty baseline and "
        "temperature are fitted inside each outer training fold from donor-grouped "
        "out-of-fold scores, so the test cells never shape them. ECE: expected calibration "
        "error of the top-class probability, 10 bins, after temperature scaling "
        "(unscaled: the forest's own probabilities).</p>"
        + _table(
            [
                "model",
                "coverage",
                "coverage per class",
                "mean set size",
                "confident",
                "accuracy of confident calls",
                "ECE",
                "ECE unscaled",
            ],
            rows,
        )
        + "".join(images)
    )


def _crosslab_section(run: CrossLabRun, figures: Path) -> str:
    """Another lab's cells: the cross-lab benchmark's rows (`study/crosslab.py`)."""
    keys = [("macro_f1", "macro-F1"), ("accuracy", "accuracy"), ("coverage", "coverage"),
            ("set_size", "set size"), ("confident", "confident"),
            ("confident_accuracy", "confident right"), ("t_type_accuracy", "t-type accuracy"),
            ("exc_flagged", "excitatory flagged"), ("exc_confident", "excitatory confident")]  # fmt: skip
    rows = []
    for row, figures_of in run.rows.items():
        cells = "".join(
            _num(figures_of[k], k) if k in figures_of else "<td>—</td>" for k, _ in keys
        )
        rows.append(f"<tr><td>{html.escape(ROW_NAMES.get(row, row))}</td>{cells}</tr>")
    shift = html.escape(run.lab_shift or "not shifted beyond the Allen donors")
    return (
        "<h2 id='crosslab'>Another lab's cells</h2>"
        f"<p class='note'>The mouse default model, on the {len(run.features)} features the "
        f"crosswalk maps from the M1 Patch-seq table of Scala et al. 2021 (another lab, another "
        f"extractor), scored on its {run.n_gaba} GABAergic cells (5-class, alpha 0.1); "
        f"{run.n_excitatory} excitatory cells score the not_interneuron flag (its detector "
        f"fitted on other mice). (c): {run.draws} draw(s). The unlabelled method was chosen "
        f"per fold of mice on the other folds: {html.escape(str(run.selection))}. As it is, "
        f"the batch reads: {shift}. {run.seconds:.0f} s.</p>"
        + _table(["row", *(name for _, name in keys)], rows)
        + _figure(figures, run.figure)
    )


def _timing_section(results: StudyResults) -> str:
    """Seconds per step (as measured when the step ran; reused steps were read from cache)."""
    if not results.timings:
        return ""
    rows = [
        f"<tr><td>{html.escape(t.step)}</td><td class='num'>{t.seconds:.1f}</td>"
        f"<td>{'reused (cached)' if t.reused else 'ran'}</td></tr>"
        for t in results.timings
    ]
    ran = sum(t.seconds for t in results.timings if not t.reused)
    return (
        "<h2 id='timings'>Time per step</h2>"
        f"<p class='note'>Wall-clock seconds each step took when it ran; the steps run in this "
        f"invocation add up to {ran:.0f} s (reproduce runs steps side by side, one per core, so "
        "its wall time is shorter); the rest was read from DIR/steps/.</p>"
        + _table(["step", "seconds", "this run"], rows)
    )


def render_report(
    results: StudyResults,
    figures: Path,
    title: str | None = None,
) -> str:
    """The report as one HTML string."""
    synthetic = results.synthetic
    title = title or "ephys2tx: reproduction report"
    banners = []
    if synthetic:
        banners.append(
            "<div class='banner synthetic'>SYNTHETIC DATA: every cell in this report was simulated "
            "by `ephys2tx synth`; no number here is a biological result.</div>"
        )
    if results.quick:
        banners.append(
            "<div class='banner'>QUICK RUN: fewer repeats and smaller models than the full "
            "reproduction; numbers are indicative only.</div>"
        )
    body = [
        f"<h1>{html.escape(title)}</h1>",
        *banners,
        f"<p class='note'>ephys2tx {html.escape(results.ephys2tx_version)}; reference: "
        f"{html.escape(PUBLISHED_STUDY)}.</p>",
    ]
    if results.data:
        body.append(_data_section(results))
    if results.embedding:
        body.append(_embedding_section(results, figures))
    if results.forest:
        body.append(_forest_section(results, figures))
    body.append(_sequence_section(results, figures))
    body.append(_trust_section(results, figures))
    body.append(_default_model_section(results, figures))
    if results.crosslab is not None:
        body.append(_crosslab_section(results.crosslab, figures))
    body.append(_timing_section(results))
    if synthetic:
        body.append(
            "<h2 id='protocol'>About these cells</h2><p>Conductance-based model cells written as "
            "Allen-protocol NWB files and extracted with the same IPFX pipeline as real recordings. "
            "The published study's figures are left out: they describe real cells.</p>"
        )
    else:
        body.append(
            "<h2 id='protocol'>Where protocols differ</h2>"
            + "".join(f"<p>{html.escape(n)}</p>" for n in PROTOCOL_NOTES)
        )
        body.append(
            "<h2 id='cite'>Data sources</h2><ul>"
            + "".join(f"<li>{html.escape(c)}</li>" for c in CITATIONS.values())
            + "</ul>"
        )
    page = "\n".join(body)
    if synthetic:  # the label must be on every printed page too: right under each heading
        page = re.sub(r"(<h2 [^>]*>.*?</h2>)", r"\1<p class='banner synthetic'>SYNTHETIC</p>", page)
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style></head><body>{page}</body></html>"


def write_report(results: StudyResults, out: Path, title: str | None = None) -> Path:
    """DIR/report.html, written atomically."""
    page = render_report(results, Path(out) / "figures", title)
    return atomic_write_text(Path(out) / "report.html", page)
