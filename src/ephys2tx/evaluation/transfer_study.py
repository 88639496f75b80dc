"""Does mouse pretraining help human subclass prediction? Same human folds for every model.

Every variant (forest, pooled mouse+human forest, human-only BiLSTM, transfer BiLSTMs) is
cross-validated on the same donor-grouped human folds; a learning curve shrinks each
fold's *training* donors to 10/25/50/100% (the same donors for every variant) while the
test cells stay unchanged. Mouse cells are only ever training data.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import Progress

from ..datasets.cells import usable_features
from . import LEARNING_CURVE_FRACTIONS
from .crossval import CVResult, cross_validate
from .folds import Fold, subsample_groups
from .metrics import mean_ci, paired_difference
from .run import write_evaluation

REFERENCE = "bilstm_human"  # the variant every transfer variant is compared with


def subset_seed(fold: Fold, seed: int = 0) -> int:
    """The donor subsample of a fold depends on the fold only, never on the model."""
    return seed + 1000 * fold.repeat + fold.fold


def cross_validate_attention(
    estimator,
    cells: pd.DataFrame,
    label: str,
    folds: list[Fold],
    features: list[str] | None = None,
    train_subset: Callable[[Fold], np.ndarray] | None = None,
    progress: bool | Progress = True,
    n_jobs: int = 1,
) -> tuple[CVResult, pd.DataFrame | None]:
    """`cross_validate` that also keeps out-of-fold attention weights when the model has them."""
    true, ids = cells[label].to_numpy(), cells["specimen_id"].to_numpy()

    def attention(model, fold: Fold, X_test: pd.DataFrame) -> pd.DataFrame | None:
        if not hasattr(model, "attention"):
            return None
        att = model.attention(X_test).reset_index(drop=True)
        att.insert(0, "true", true[fold.test])
        att.insert(0, "fold", fold.fold)
        att.insert(0, "repeat", fold.repeat)
        att.insert(0, "specimen_id", ids[fold.test])
        return att

    result = cross_validate(
        estimator, cells, label, folds, features, train_subset, progress,
        description="folds", on_fold=attention, n_jobs=n_jobs,
    )  # fmt: skip
    kept = [a for a in result.fold_outputs if a is not None]
    return result, (pd.concat(kept, ignore_index=True) if kept else None)


def attention_by_class(attention: pd.DataFrame) -> pd.DataFrame:
    """Mean attention weight of each family (columns) for each true class (rows)."""
    families = [c for c in attention.columns if c not in ("specimen_id", "repeat", "fold", "true")]
    return attention.groupby("true")[families].mean()


@dataclass
class StudyResult:
    """Cross-validation results per (variant, fraction) and their paired comparisons."""

    results: dict[tuple[str, float], CVResult] = field(default_factory=dict)
    attention: dict[str, pd.DataFrame] = field(default_factory=dict)

    def learning_curve(self) -> pd.DataFrame:
        """variant, fraction, mean, sd, ci95_low, ci95_high, n (macro-F1 over folds)."""
        rows = []
        for (variant, fraction), result in self.results.items():
            stats = mean_ci(result.scores["macro_f1"], bounds=(0, 1))
            rows.append(
                {
                    "variant": variant,
                    "fraction": fraction,
                    "mean": stats["mean"],
                    "sd": stats["sd"],
                    "ci95_low": stats["ci95"][0],
                    "ci95_high": stats["ci95"][1],
                    "n": stats["n"],
                }
            )
        return pd.DataFrame(rows)

    def paired(self, reference: str = REFERENCE) -> pd.DataFrame:
        """Each variant minus `reference` on the same folds, at each fraction."""
        rows = []
        for (variant, fraction), result in self.results.items():
            base = self.results.get((reference, fraction))
            if variant == reference or base is None:
                continue
            diff = paired_difference(result.scores, base.scores)
            rows.append(
                {
                    "variant": variant,
                    "reference": reference,
                    "fraction": fraction,
                    "mean_diff": diff["mean"],
                    "ci95_low": diff["ci95"][0],
                    "ci95_high": diff["ci95"][1],
                    "n_folds_better": diff["n_folds_a_better"],
                    "n": diff["n"],
                }
            )
        return pd.DataFrame(rows)


def run_transfer_study(
    human: pd.DataFrame,
    variants: dict[str, object],
    folds: list[Fold],
    fractions: tuple[float, ...] = LEARNING_CURVE_FRACTIONS,
    label: str = "label",
    features: dict[str, list[str]] | None = None,
    seed: int = 0,
    progress: bool = True,
    on_result: Callable[[str, float, CVResult], None] | None = None,
    n_jobs: int = 1,
) -> StudyResult:
    """Cross-validate every variant at every fraction of training donors on `folds`.

    `features[variant]` picks columns for a variant (the forests); the networks get the
    whole table and read their families and the `donor` column themselves. `n_jobs` folds
    of a network are fitted at once (forests already use every core).
    """
    features = features or {}
    groups = human["donor"].astype(str).to_numpy()
    study = StudyResult()
    with Progress(disable=not progress, transient=True) as bar:
        overall = bar.add_task("transfer study", total=len(variants) * len(fractions))
        for fraction in fractions:
            subset = None
            if fraction < 1.0:

                def subset(fold: Fold, fraction=fraction) -> np.ndarray:
                    return subsample_groups(fold.train, groups, fraction, subset_seed(fold, seed))

            for name, estimator in variants.items():
                bar.update(overall, description=f"{name} @ {fraction:.0%}")
                # the variants given a feature list are the forests: their trees use every core
                jobs = 1 if name in features else n_jobs
                result, att = cross_validate_attention(
                    estimator, human, label, folds, features.get(name), subset, bar, jobs
                )
                study.results[(name, fraction)] = result
                if att is not None and fraction == 1.0:
                    study.attention[name] = att
                if on_result is not None:
                    on_result(name, fraction, result)
                bar.advance(overall)
    return study


def plot_learning_curve(curve: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Macro-F1 against the share of human training donors, with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def plot_attention(
    by_class: pd.DataFrame,
    path: str | Path,
    title: str = "",
    importance: pd.DataFrame | None = None,
) -> Path:
    """Heatmap of mean attention per family and true class; forest importance beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def write_study(study: StudyResult, out_dir: str | Path, context: dict) -> dict:
    """learning_curve.csv/png, paired_differences.csv, attention CSVs/PNGs, study.json, and
    each variant's metrics.json and confusion matrix at the largest share in `<variant>/`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    curve = study.learning_curve()
    paired = study.paired()
    curve.to_csv(out / "learning_curve.csv", index=False)
    paired.to_csv(out / "paired_differences.csv", index=False)
    plot_learning_curve(curve, out / "learning_curve.png")
    for name, att in study.attention.items():
        by_class = attention_by_class(att)
        by_class.to_csv(out / f"attention_by_class_{name}.csv")
        plot_attention(by_class, out / f"attention_by_class_{name}.png", f"{name}: attention")
    summary = {
        **context,
        "variants": {
            f"{name}@{fraction:g}": result.summary(variant=name, fraction=fraction)
            for (name, fraction), result in study.results.items()
        },
        "learning_curve": curve.to_dict(orient="records"),
        "paired_vs_" + REFERENCE: paired.to_dict(orient="records"),
    }
    (out / "study.json").write_text(json.dumps(summary, indent=2, default=float))
    top = max(fraction for _, fraction in study.results)
    for (name, fraction), result in study.results.items():
        if fraction == top:
            metrics = result.summary(model=name, fraction=fraction, **context)
            write_evaluation(out / name, result, metrics, f"human: {name}")
    return summary


def study_variants(
    human: pd.DataFrame, mouse: pd.DataFrame, methods: tuple[str, ...], members: int, seed: int
) -> tuple[dict, dict]:
    """The models of the transfer study and the columns the forests read."""
    from ..models.bilstm import BiLSTMClassifier
    from ..models.forest import PooledSpeciesForest, make_forest
    from ..models.transfer import make_transfer

    rf_features = usable_features(human)
    labelled = mouse[mouse["label"].notna()]
    variants = {
        "rf": make_forest(seed),
        "rf_pooled": PooledSpeciesForest(labelled[rf_features], labelled["label"].to_numpy(), seed),
        "bilstm_human": BiLSTMClassifier(n_members=members, random_state=seed),
    }
    for method in methods:
        variants[f"transfer_{method}"] = make_transfer(
            labelled, method, n_members=members, random_state=seed
        )
    return variants, {"rf": rf_features, "rf_pooled": rf_features}
