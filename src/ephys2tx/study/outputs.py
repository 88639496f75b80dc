"""The files an evaluation leaves in its folder: metrics, predictions, tables and figures.

The computation lives in evaluation/; this module only writes what it returned.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..evaluation.crossval import CVResult
from ..evaluation.transfer_study import BASELINE, StudyResult, attention_by_class
from ..evaluation.trust import TrustEvaluation, accuracy_by_share_called, reliability_table
from ..files import atomic_write_text
from ..report.figures import (
    accuracy_called_png,
    attention_png,
    confusion_matrix_png,
    learning_curve_png,
    reliability_png,
)


def write_json(path: Path, payload: dict) -> Path:
    """A JSON file written atomically (floats from numpy included)."""
    return atomic_write_text(path, json.dumps(payload, indent=2, default=float))


def write_evaluation(out_dir: str | Path, result: CVResult, metrics: dict, title: str) -> Path:
    """metrics.json, predictions.csv, fold_scores.csv and confusion_matrix.png in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", metrics)
    result.predictions.to_csv(out / "predictions.csv", index=False)
    result.scores.to_csv(out / "fold_scores.csv", index=False)
    confusion_matrix_png(metrics, out / "confusion_matrix.png", title)
    return out


def write_attention(out_dir: Path, name: str, attention, title: str, importance=None) -> Path:
    """attention_by_class_<name>.csv and .png (mean attention per family and true class)."""
    by_class = attention_by_class(attention)
    by_class.to_csv(Path(out_dir) / f"{name}.csv")
    return attention_png(by_class, Path(out_dir) / f"{name}.png", title, importance)


def write_trust(out_dir: str | Path, evaluation: TrustEvaluation, title: str) -> dict:
    """trust.json, trust_cells.csv, reliability.png and accuracy_vs_called.png in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    evaluation.cells.to_csv(out / "trust_cells.csv", index=False)
    bins = reliability_table(evaluation.cells)
    curve = accuracy_by_share_called(evaluation.cells)
    summary = {
        **evaluation.summary,
        "reliability": bins.to_dict(orient="records"),
        "accuracy_by_share_called": curve.to_dict(orient="records"),
    }
    write_json(out / "trust.json", summary)
    reliability_png({title: bins}, out / "reliability.png", f"{title}: reliability")
    accuracy_called_png({title: curve}, out / "accuracy_vs_called.png", title)
    return summary


def write_study(study: StudyResult, out_dir: str | Path, context: dict) -> dict:
    """learning_curve.csv/png, paired_differences.csv, attention CSVs/PNGs, study.json, and
    each variant's metrics.json and confusion matrix at the largest share in `<variant>/`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    curve = study.learning_curve()
    paired = study.paired()
    curve.to_csv(out / "learning_curve.csv", index=False)
    paired.to_csv(out / "paired_differences.csv", index=False)
    learning_curve_png(curve, out / "learning_curve.png")
    for name, att in study.attention.items():
        write_attention(out, f"attention_by_class_{name}", att, f"{name}: attention")
    summary = {
        **context,
        "variants": {
            f"{name}@{fraction:g}": result.summary(variant=name, fraction=fraction)
            for (name, fraction), result in study.results.items()
        },
        "learning_curve": curve.to_dict(orient="records"),
        "paired_vs_" + BASELINE: paired.to_dict(orient="records"),
    }
    write_json(out / "study.json", summary)
    top = max(fraction for _, fraction in study.results)
    for (name, fraction), result in study.results.items():
        if fraction == top:
            metrics = result.summary(model=name, fraction=fraction, **context)
            write_evaluation(out / name, result, metrics, f"human: {name}")
    return summary
