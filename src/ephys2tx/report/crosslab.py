"""The cross-lab benchmark's figure: each row's figures side by side (`evaluation/crosslab.py`)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..evaluation.crosslab import ROW_NAMES  # noqa: E402
from ..files import atomic_write  # noqa: E402

PANELS = (
    ("subclass", ["macro_f1", "macro_f1_without_rarest", "accuracy", "t_type_accuracy"]),
    ("recall per class", None),
    ("sets and trust", ["coverage", "confident", "confident_accuracy", "confident_but_shift"]),
    ("excitatory cells", ["exc_flagged", "exc_confident", "exc_auroc"]),
)


def crosslab_png(summary: pd.DataFrame, path: str | Path, title: str) -> Path:
    """Four panels of grouped bars (rows of the benchmark), sd over draws as error bars."""
    path = Path(path)
    rows = [r for r in ROW_NAMES if r in summary.index]
    recall = [c for c in summary.columns if c.startswith("recall_") and not c.endswith("_sd")]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    for ax, (name, metrics) in zip(axes, PANELS, strict=True):
        metrics = recall if metrics is None else [m for m in metrics if m in summary.columns]
        width = 0.8 / max(len(rows), 1)
        x = np.arange(len(metrics))
        for i, row in enumerate(rows):
            values = [summary.loc[row, m] for m in metrics]
            errors = [summary.loc[row].get(f"{m}_sd", np.nan) for m in metrics]
            errors = [0.0 if not np.isfinite(e) else e for e in errors]
            ax.bar(x + i * width, values, width, yerr=errors, label=ROW_NAMES[row], capsize=2)
        ax.set_xticks(x + width * (len(rows) - 1) / 2)
        labels = [m.removeprefix("recall_").replace("_", " ") for m in metrics]
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(name, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path
