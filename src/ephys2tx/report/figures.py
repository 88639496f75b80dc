"""Figures people would rather look at than read; each returns the PNG path it wrote."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

# One colour per subclass, the same in every figure (Allen-like hues).
CLASS_COLORS = {
    "Lamp5": "#DA808C",
    "Pvalb": "#D93137",
    "Sncg": "#DF70FF",
    "Sst": "#F6A220",
    "Vip": "#A45FBF",
}


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return path


def confusion_matrix_png(metrics: dict, path: str | Path, title: str = "") -> Path:
    """Row-normalized confusion matrix with counts, from a metrics.json dict."""
    labels = metrics["confusion_matrix"]["labels"]
    counts = np.asarray(metrics["confusion_matrix"]["counts"], float)
    rows = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.1 * len(labels) + 2, 1.0 * len(labels) + 1.6))
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                f"{rows[i, j]:.2f}\n({int(counts[i, j])})",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if rows[i, j] > 0.6 else "black",
            )
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    f1 = metrics["macro_f1"]
    ax.set_title(f"{title}\nmacro-F1 {f1['mean']:.3f} ± {f1['sd']:.3f}".strip(), fontsize=10)
    return _save(fig, path)


def embedding_png(coords: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """UMAP scatter coloured by subclass."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    size = max(6, min(40, 3000 / max(len(coords), 1)))  # small cohorts stay visible
    for label, part in coords.groupby("label"):
        ax.scatter(
            part["x"],
            part["y"],
            s=size,
            alpha=0.7,
            color=CLASS_COLORS.get(str(label), None),
            label=f"{label} ({len(part)})",
            linewidths=0,
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    ax.legend(markerscale=3, fontsize=8, frameon=False)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def family_importance_png(importance: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Horizontal bars: permutation importance summed per family (mean ± sd over folds)."""
    data = importance.sort_values("mean")
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(data) + 1.2))
    ax.barh(data["family"], data["mean"], xerr=data.get("sd"), color="#4C72B0")
    ax.set_xlabel("drop in macro-F1 when the family is permuted")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def reliability_png(bins: dict[str, pd.DataFrame], path: str | Path, title: str = "") -> Path:
    """Reliability diagram: accuracy against mean top probability per bin, one line per model."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], color="#999", lw=1, ls="--", label="perfectly calibrated")
    for name, table in bins.items():
        ax.plot(table["confidence"], table["accuracy"], marker="o", label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean top-class probability in bin")
    ax.set_ylabel("accuracy in bin")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def accuracy_called_png(curves: dict[str, pd.DataFrame], path: str | Path, title: str = "") -> Path:
    """Accuracy of the calls made against the share of cells called (surest cells first)."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for name, curve in curves.items():
        ax.plot(curve["share_called"], curve["accuracy"], marker=".", label=name)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of cells called (highest probability first)")
    ax.set_ylabel("accuracy of the calls made")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    return _save(fig, path)
