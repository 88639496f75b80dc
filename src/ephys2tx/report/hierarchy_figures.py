"""Figures of the default model: a t-type confusion matrix grouped by subclass, and t-type
F1 against the number of cells a t-type has."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..datasets.taxonomy import Taxonomy
from .figures import CLASS_COLORS, _save, plt


def t_type_confusion_png(
    counts: pd.DataFrame, taxonomy: Taxonomy, path: str | Path, title: str = ""
) -> Path:
    """Row-normalized true x predicted t-type matrix in tree order, subclass blocks outlined."""
    leaves = list(counts.index)
    rows = counts.to_numpy(float)
    rows = rows / np.maximum(rows.sum(axis=1, keepdims=True), 1)
    size = 0.17 * len(leaves) + 2.5
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    start = 0
    for subclass in taxonomy.subclasses:
        n = sum(1 for leaf in leaves if taxonomy.parent[leaf] == subclass)
        if n == 0:
            continue
        color = CLASS_COLORS.get(subclass, "grey")
        ax.add_patch(plt.Rectangle((start - 0.5, start - 0.5), n, n, fill=False, lw=1.5, ec=color))
        ax.text(start + n / 2 - 0.5, -0.8, subclass, ha="center", va="bottom", color=color,
                fontsize=9, fontweight="bold", clip_on=False)  # fmt: skip
        start += n
    names = [f"{leaf} *" if not taxonomy.is_resolved(leaf) else leaf for leaf in leaves]
    fontsize = 7 if len(leaves) <= 30 else 5
    ax.set_xticks(range(len(leaves)), names, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(len(leaves)), names, fontsize=fontsize)
    ax.set_xlabel("predicted t-type")
    ax.set_ylabel("true t-type")
    fig.colorbar(image, ax=ax, fraction=0.03, label="share of the true t-type's cells")
    note = "* = rarer t-types kept at subclass level"
    ax.set_title(f"{title}\n{note}".strip(), fontsize=10, pad=18)
    return _save(fig, path)


def t_type_f1_png(per_t_type: list[dict], path: str | Path, title: str = "") -> Path:
    """Each learned t-type's F1 against its number of cells, coloured by subclass."""
    data = pd.DataFrame(per_t_type)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for subclass, part in data.groupby("subclass"):
        ax.scatter(part["n_cells"], part["f1"], color=CLASS_COLORS.get(subclass, "grey"),
                   label=subclass, s=28, alpha=0.85)  # fmt: skip
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("cells of the t-type in the table (log scale; ~80% train in each fold)")
    ax.set_ylabel("t-type F1 (out of fold)")
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)
