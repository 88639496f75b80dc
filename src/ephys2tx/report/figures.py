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


def learning_curve_png(curve: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Macro-F1 against the share of human training donors, with 95% intervals."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    variants = list(dict.fromkeys(curve["variant"]))
    for i, variant in enumerate(variants):
        part = curve[curve["variant"] == variant].sort_values("fraction")
        x = part["fraction"].to_numpy() * (1 + 0.012 * (i - len(variants) / 2))  # dodge
        mean, low, high = (part[c].to_numpy() for c in ("mean", "ci95_low", "ci95_high"))
        ax.errorbar(
            x,
            mean,
            yerr=[mean - low, high - mean],
            marker="o",
            capsize=3,
            label=variant,
        )
    ax.set_xscale("log")
    ax.minorticks_off()  # only the fractions run are labelled
    ticks = sorted(curve["fraction"].unique())
    ax.set_xticks(ticks, [f"{t:.0%}" for t in ticks])
    ax.set_xlabel("share of human training donors per fold")
    ax.set_ylabel("human macro-F1 (mean, 95% CI over folds)")
    ax.set_title(title or "Human subclass prediction: learning curve")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def attention_png(
    by_class: pd.DataFrame,
    path: str | Path,
    title: str = "",
    importance: pd.DataFrame | None = None,
) -> Path:
    """Heatmap of mean attention per family and true class; forest importance beside it."""
    n_panels = 2 if importance is not None else 1
    fig, axes = plt.subplots(
        1,
        n_panels,
        figsize=(4 + 4.5 * n_panels, 3.6),
        gridspec_kw={"width_ratios": [3, 1.2]} if n_panels == 2 else None,
    )
    ax = axes[0] if n_panels == 2 else axes
    image = ax.imshow(by_class.to_numpy(), cmap="viridis", aspect="auto")
    ax.set_xticks(range(by_class.shape[1]), by_class.columns, rotation=45, ha="right")
    ax.set_yticks(range(by_class.shape[0]), by_class.index)
    for (i, j), value in np.ndenumerate(by_class.to_numpy()):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="w", fontsize=7)
    fig.colorbar(image, ax=ax, label="mean attention weight")
    ax.set_title(title or "Attention per family and true class")
    if importance is not None:
        imp = importance.set_index("family").reindex(by_class.columns)
        axes[1].barh(range(len(imp)), imp["mean"], xerr=imp.get("sd"), color="tab:gray")
        axes[1].set_yticks(range(len(imp)), imp.index, fontsize=7)
        axes[1].invert_yaxis()
        axes[1].set_xlabel("forest permutation importance\n(macro-F1 drop, summed)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path
