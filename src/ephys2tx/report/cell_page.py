"""The per-cell report: one self-contained HTML page, one collapsible card per cell.

Figures are inlined as small PNGs; nothing is fetched from the network. Cards start
closed and their images are decoded only when a card is opened (a few lines of inline
script move each image's data into `src` on first opening), so a page of hundreds of cells
opens as fast as its summary table.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path

from rich.progress import track

from ..files import atomic_write_text
from ..schema import FLAG_SEPARATOR
from .cell_figures import features_png, format_value, sweeps_png
from .cells import CellCard, flag_sentence
from .figures import CLASS_COLORS

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:1.5em auto;
color:#222;line-height:1.4;padding:0 1em}
h1{font-size:1.5em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left}th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.note{color:#555;font-size:.9em}.na{color:#888;font-style:italic}
.banner{background:#fff3cd;border:1px solid #e0c060;padding:.5em 1em;margin:1em 0}
details.card{border:1px solid #ccc;border-radius:6px;margin:.4em 0;padding:.3em .8em}
details.card[open]{background:#fcfcfc}
details.card>summary{cursor:pointer;font-size:.95em}
.ok{color:#1a7f37;font-weight:600}.warn{color:#b35900;font-weight:600}
.grid{display:flex;flex-wrap:wrap;gap:1.2em;margin:.6em 0}.grid>div{flex:1 1 420px}
.bar{display:flex;align-items:center;gap:.5em;font-size:.88em;margin:.15em 0}
.bar .name{width:5.5em}.bar .track{flex:1;background:#eee;height:.9em;border-radius:3px}
.bar .fill{display:block;height:100%;border-radius:3px}.bar .num{width:3em;text-align:right}
.bar .inset{width:4em;font-size:.8em;color:#1a7f37}
ul.flags{margin:.3em 0;padding-left:1.2em;font-size:.9em}ul.flags code{color:#b35900}
img.fig{display:block;max-width:100%}h4{margin:.5em 0 .3em}
"""

# Opens a card's images on first opening; "open all" / "close all" for a quick look; shows
# only the cells that are flagged or not confident.
SCRIPT = """
<script>
function showImages(card){card.querySelectorAll('img[data-src]').forEach(function(img){
  img.src=img.dataset.src;img.removeAttribute('data-src');});}
document.querySelectorAll('details.card').forEach(function(card){
  card.addEventListener('toggle',function(){if(card.open)showImages(card);});
  if(card.open)showImages(card);});
function setAll(open){document.querySelectorAll('details.card').forEach(function(c){
  if(c.style.display!=='none')c.open=open;});}
function showOnly(kind){document.querySelectorAll('[data-cell]').forEach(function(e){
  var keep=kind==='all'||(kind==='flagged'&&e.dataset.flagged==='1')||
    (kind==='unsure'&&e.dataset.confident!=='1');e.style.display=keep?'':'none';});}
</script>
"""

# part of a card -> (its name, what a model needs to give it)
MISSING_PARTS = {
    "prediction_set": ("prediction sets", "a model trained with calibration (the default)"),
    "flags": ("flags", "the reference summary `train` stores beside the model"),
    "novelty": ("novelty", "the reference summary `train` stores beside the model"),
    "neighbours": ("nearest training cells", "a neighbour search over the training cells"),
}


def _e(value: object) -> str:
    return html.escape(str(value))


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode()
    return f'<img class="fig" alt="{_e(alt)}" data-src="data:image/png;base64,{data}">'


def _bars(card: CellCard) -> str:
    in_set = set(card.prediction_set or [])
    rows = []
    for cls, p in card.ranked:
        colour = CLASS_COLORS.get(cls, "#4C72B0")
        mark = "in set" if cls in in_set else ""
        rows.append(
            f"<div class='bar' data-class='{_e(cls)}'><span class='name'>{_e(cls)}</span>"
            f"<span class='track'><span class='fill' style='width:{100 * p:.1f}%;"
            f"background:{colour}'></span></span><span class='num'>{p:.2f}</span>"
            f"<span class='inset'>{mark}</span></div>"
        )
    if card.prediction_set is None:
        caption = "<p class='na'>Prediction set: not available for this model.</p>"
    else:
        shown = " | ".join(card.prediction_set) or "empty"
        caption = f"<p>Prediction set: <b data-key='set'>{_e(shown)}</b></p>"
    return "<h4>Probabilities</h4>" + "".join(rows) + caption


def _flags(card: CellCard) -> str:
    parts = ["<h4>Flags</h4>"]
    if card.confident is not None:
        parts.append(
            "<p class='ok'>Confident call: one class in the set and no flag.</p>"
            if card.confident
            else "<p class='warn'>Not a confident call.</p>"
        )
    if card.flags is None:
        parts.append("<p class='na'>Flags: not available for this model.</p>")
    elif not card.flags:
        parts.append("<p>No flag raised.</p>")
    else:
        items = "".join(
            f"<li data-flag='{_e(code)}'><code>{_e(code)}</code>: {_e(flag_sentence(code, card.features))}</li>"
            for code in card.flags
        )
        parts.append(f"<ul class='flags'>{items}</ul>")
    if card.novelty is None and card.flags is not None:  # the model has a reference
        parts.append("<p class='na'>Novelty: none (no feature of the model measured).</p>")
    elif card.novelty is None:
        parts.append("<p class='na'>Novelty: not available for this model.</p>")
    else:
        parts.append(
            f"<p>Novelty <b>{card.novelty:.2f}</b>: the share of the model's training cells "
            "that are more typical than this cell.</p>"
        )
    parts.append(
        f"<p class='note'>{card.n_measured} of {len(card.features)} model features measured.</p>"
    )
    return "".join(parts)


def _features(card: CellCard) -> str:
    head = "<h4>Most telling features</h4>"
    if not card.comparisons:
        why = (
            "none of the model's features is measured"
            if not card.n_measured
            else ("no training cells to compare with")
        )
        return head + f"<p class='na'>Not drawn: {why}.</p>"
    classes = (card.predicted, card.runner_up)
    alt = f"{card.specimen_id}: features against {classes[0]} and {classes[1]}"
    listed = ", ".join(
        f"{c.name} = {format_value(c.value, c.unit)} (separation {c.separation:.2f})"
        for c in card.comparisons
    )
    return (
        head + _img(features_png(card.comparisons, classes), alt) + f"<p class='note'>{listed}. "
        f"Features measured in this cell that best separate the training cells of "
        f"{_e(classes[0])} from {_e(classes[1])} (|2·AUROC − 1|).</p>"
    )


def _neighbours(card: CellCard) -> str:
    head = "<h4>Nearest training cells</h4>"
    if card.neighbours is None:
        return head + "<p class='na'>Nearest training cells: not available for this model.</p>"
    rows = "".join(
        f"<tr><td>{_e(n.specimen_id)}</td><td>{_e(n.donor)}</td><td>{_e(n.t_type)}</td>"
        f"<td>{_e(n.subclass)}</td><td class='num'>{n.distance:.3g}</td></tr>"
        for n in card.neighbours
    )
    return (
        head + "<table class='neighbours'><tr><th>specimen</th><th>donor</th><th>t-type</th>"
        f"<th>subclass</th><th>distance</th></tr>{rows}</table>"
    )


def _sweeps(card: CellCard) -> str:
    if card.sweeps:
        alt = f"{card.specimen_id}: rheobase and hero sweeps"
        return "<h4>Rheobase and hero sweeps</h4>" + _img(sweeps_png(card.sweeps), alt)
    if card.source:
        return f"<p class='na'>Sweeps of {_e(Path(card.source).name)}: {_e(card.sweeps_note or 'not drawn')}.</p>"
    return ""


def _summary_line(card: CellCard) -> str:
    p = card.probabilities[card.predicted]
    bits = [f"<b>{_e(card.specimen_id)}</b>", f"{_e(card.predicted)} (p = {p:.2f})"]
    if card.prediction_set is not None:
        bits.append("set " + _e(" | ".join(card.prediction_set) or "empty"))
    if card.confident:
        bits.append("<span class='ok'>confident</span>")
    if card.flags:
        bits.append(f"<span class='warn'>{len(card.flags)} flag(s)</span>")
    return " · ".join(bits)


def _marks(card: CellCard) -> str:
    """Attributes the page's filter reads."""
    return f"data-cell data-flagged='{int(bool(card.flags))}' data-confident='{int(bool(card.confident))}'"


def render_card(card: CellCard, index: int) -> str:
    """One card as a closed <details> element."""
    return (
        f"<details class='card' id='cell-{index}' {_marks(card)} "
        f"data-specimen='{_e(card.specimen_id)}' "
        f"data-predicted='{_e(card.predicted)}'><summary>{_summary_line(card)}</summary>"
        f"<div class='grid'><div>{_bars(card)}</div><div>{_flags(card)}</div></div>"
        f"<div class='grid'><div>{_features(card)}</div>"
        f"<div>{_neighbours(card)}{_sweeps(card)}</div></div></details>"
    )


def _summary_table(cards: Sequence[CellCard]) -> str:
    rows = []
    for i, card in enumerate(cards):
        p = card.probabilities[card.predicted]
        cells = [
            f"<a href='#cell-{i}' onclick=\"document.getElementById('cell-{i}').open=true\">"
            f"{_e(card.specimen_id)}</a>",
            _e(card.predicted),
            f"{p:.2f}",
            _e(" | ".join(card.prediction_set)) if card.prediction_set is not None else "—",
            {True: "yes", False: "no", None: "—"}[card.confident],
            f"{card.novelty:.2f}" if card.novelty is not None else "—",
            _e(FLAG_SEPARATOR.join(card.flags)) if card.flags is not None else "—",
        ]
        rows.append(f"<tr {_marks(card)}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = "".join(
        f"<th>{h}</th>"
        for h in ("cell", "predicted", "p", "prediction set", "confident", "novelty", "flags")
    )
    return f"<table class='summary'><tr>{head}</tr>{''.join(rows)}</table>"


def _missing_banner(cards: Sequence[CellCard]) -> str:
    missing = [
        f"{words} (needs {needs})"
        for attr, (words, needs) in MISSING_PARTS.items()
        if cards and all(getattr(c, attr) is None for c in cards)
    ]
    if not missing:
        return ""
    return (
        f"<div class='banner'>Not available for this model: {_e('; '.join(missing))}. "
        "The cards show what the model gives.</div>"
    )


def _filter(cards: Sequence[CellCard]) -> str:
    if not cards or all(c.confident is None and c.flags is None for c in cards):
        return ""
    flagged = sum(bool(c.flags) for c in cards)
    unsure = sum(not c.confident for c in cards)
    return (
        "<p class='note'>Show: <button onclick=\"showOnly('all')\">all cells</button> "
        f"<button onclick=\"showOnly('unsure')\">not confident ({unsure})</button> "
        f"<button onclick=\"showOnly('flagged')\">flagged ({flagged})</button></p>"
    )


def render_cell_report(
    cards: Sequence[CellCard],
    title: str,
    model_info: Mapping[str, object],
    progress: bool = False,
) -> str:
    """The page as one HTML string."""
    info = "; ".join(f"{_e(k)}: {_e(v)}" for k, v in model_info.items())
    body = [
        f"<h1>{_e(title)}</h1>",
        f"<p class='note'>{info}</p>",
        _missing_banner(cards),
        f"<h2 id='summary'>Summary ({len(cards)} cells)</h2>",
        _filter(cards),
        _summary_table(cards),
        "<h2 id='cells'>Cells</h2><p class='note'>Click a cell to open its card. "
        "<button onclick='setAll(true)'>open all</button> "
        "<button onclick='setAll(false)'>close all</button></p>",
    ]
    items = track(list(enumerate(cards)), description="drawing cell cards", disable=not progress)
    body.extend(render_card(card, i) for i, card in items)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<style>{CSS}</style></head><body>{''.join(body)}{SCRIPT}</body></html>"
    )


def write_cell_report(
    path: str | Path,
    cards: Sequence[CellCard],
    title: str,
    model_info: Mapping[str, object],
    progress: bool = False,
) -> Path:
    """Write the page atomically; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, render_cell_report(cards, title, model_info, progress))
