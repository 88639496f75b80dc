"""Does mouse pretraining help human subclass prediction? Same human folds for every model.

Every variant (forest, pooled mouse+human forest, human-only BiLSTM, transfer BiLSTMs) is
cross-validated on the same donor-grouped human folds; a learning curve shrinks each
fold's *training* donors to 10/25/50/100% (the same donors for every variant) while the
test cells stay unchanged. Mouse cells are only ever training data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from rich.progress import Progress

from . import LEARNING_CURVE_FRACTIONS
from .crossval import CVResult, CVTask, cross_validate, cross_validate_many
from .metrics import mean_ci, paired_difference
from .splits import Fold, subsample_groups

BASELINE = "bilstm_human"  # the variant every transfer variant is compared with


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
    result = cross_validate(
        estimator, cells, label, folds, features, train_subset, progress,
        description="folds", on_fold=_attention_hook(cells, label), n_jobs=n_jobs,
    )  # fmt: skip
    return result, _attention_table(result)


def _attention_hook(cells: pd.DataFrame, label: str):
    """`on_fold` that returns a fitted model's attention weights on the test cells."""
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

    return attention


def _attention_table(result: CVResult) -> pd.DataFrame | None:
    kept = [a for a in result.fold_outputs if a is not None]
    return pd.concat(kept, ignore_index=True) if kept else None


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

    def paired(self, baseline: str = BASELINE) -> pd.DataFrame:
        """Each variant minus `baseline` on the same folds, at each fraction."""
        rows = []
        for (variant, fraction), result in self.results.items():
            base = self.results.get((baseline, fraction))
            if variant == baseline or base is None:
                continue
            diff = paired_difference(result.scores, base.scores)
            rows.append(
                {
                    "variant": variant,
                    "baseline": baseline,
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
    whole table and read their families and the `donor` column themselves. `n_jobs`
    network fits run at once (forests already use every core). `on_result` is called per
    (variant, share) once all are fitted.
    """
    features = features or {}
    groups = human["donor"].astype(str).to_numpy()
    hook = _attention_hook(human, label)

    def subset(fraction: float) -> Callable[[Fold], np.ndarray] | None:
        if fraction >= 1.0:
            return None
        return lambda fold: subsample_groups(fold.train, groups, fraction, subset_seed(fold, seed))

    def task(name: str, fraction: float) -> CVTask:
        return CVTask(
            variants[name], human, label, folds, features.get(name), subset(fraction), hook
        )

    runs = [(name, fraction) for fraction in fractions for name in variants]
    # the variants given a feature list are the forests: their trees use every core, so
    # they run one fold at a time; every network fit of every share goes to one pool of
    # n_jobs workers, largest shares first, so no worker waits at the end of a share
    networks = sorted((r for r in runs if r[0] not in features), key=lambda r: -r[1])
    done: dict[tuple[str, float], CVResult] = {}
    with Progress(disable=not progress, transient=True) as bar:
        for run in (r for r in runs if r[0] in features):
            done[run] = cross_validate_many([task(*run)], bar, f"{run[0]} @ {run[1]:.0%}")[0]
        if networks:
            fitted = cross_validate_many(
                [task(*run) for run in networks], bar, "networks", n_jobs=n_jobs
            )
            done.update(zip(networks, fitted, strict=True))
    study = StudyResult()
    for name, fraction in runs:  # in the order of shares, then variants, as always
        result = done[(name, fraction)]
        study.results[(name, fraction)] = result
        att = _attention_table(result)
        if att is not None and fraction == 1.0:
            study.attention[name] = att
        if on_result is not None:
            on_result(name, fraction, result)
    return study
