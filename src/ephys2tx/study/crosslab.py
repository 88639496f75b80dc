"""The "Another lab's cells" study: the cross-lab benchmark on the M1 cells of Scala et al.
2021, from the pinned public files (`evaluation/crosslab.py` holds the rows and figures)."""

from __future__ import annotations

from pathlib import Path

from ..datasets.cells import other_species_cells
from ..datasets.scala2021 import m1_cells
from ..default_model import DEFAULT_SETTINGS, default_model_for_lab, default_training_cells
from ..evaluation.crosslab import (
    CEILING_MODELS,
    LAB_DRAWS,
    LAB_FRACTIONS,
    ROW_NAMES,
    CrossLabResult,
    crosslab_benchmark,
)
from ..models.ensemble import soft_vote
from ..models.lab import lab_features
from ..report.crosslab import crosslab_png

SPECIES = "mouse"
# The targets (issue 19), printed beside the figures.
TARGETS = {
    "a": "macro-F1 >= 0.70, accuracy >= 0.84, coverage >= 0.85, confident >= 0.92 right",
    "b": "macro-F1 >= 0.72, accuracy >= 0.86, coverage >= 0.85, confident >= 0.92 right",
    "c25": "macro-F1 >= 0.78 and >= (d); coverage 0.88-0.93",
    "excitatory": ">= 90% flagged, <= 5% confident",
}


def run_crosslab(
    seed: int = 0,
    draws: int = LAB_DRAWS,
    fractions: tuple[float, ...] = LAB_FRACTIONS,
    n_jobs: int = 1,
    data_dir=None,
    mirror=None,
    say=print,
) -> CrossLabResult:
    """Every row of the benchmark from the public files."""
    reference = default_training_cells(SPECIES, data_dir, mirror)
    lab, summary = m1_cells(data_dir, mirror)
    say(summary)
    features = lab_features(lab[lab["cell_class"] == "gabaergic"], reference)
    fit = default_model_for_lab(
        SPECIES, lab, features, reference, seed, n_jobs, data_dir, mirror, say
    )
    known = set(fit.taxonomy.t_types)
    lab["t_type"] = lab["t_type"].where(lab["t_type"].isin(known))
    other = other_species_cells(SPECIES, data_dir, mirror)
    result = crosslab_benchmark(
        reference, fit, lab, SPECIES, other, 0.1, fractions, draws, seed, say=say, n_jobs=n_jobs,
        ceiling_models=(("default model", soft_vote(DEFAULT_SETTINGS[SPECIES].subclass)),
                        *CEILING_MODELS),
    )  # fmt: skip
    result.notes["crosswalk"] = summary
    return result


def table_lines(result: CrossLabResult) -> list[str]:
    """The benchmark's table as Markdown lines (mean, sd over draws where there are draws)."""
    summary = result.summary()
    columns = [
        ("macro_f1", "macro-F1"), ("macro_f1_without_rarest", "macro-F1 w/o Sncg"),
        ("f1_rarest", "Sncg F1"), ("accuracy", "accuracy"), ("coverage", "coverage"),
        ("set_size", "set size"), ("confident", "confident"),
        ("confident_accuracy", "confident right"), ("confident_but_shift", "conf. w/o lab_shift"),
        ("confident_but_shift_accuracy", "its accuracy"), ("t_type_accuracy", "t-type acc."),
        ("exc_flagged", "exc. flagged"), ("exc_confident", "exc. confident"),
        ("exc_auroc", "exc. AUROC"), ("gaba_flagged", "GABA flagged not_interneuron"),
    ]  # fmt: skip
    recall = [c for c in summary.columns if c.startswith("recall_") and not c.endswith("_sd")]
    columns += [(c, c.removeprefix("recall_") + " recall") for c in recall]
    lines = ["| row | " + " | ".join(name for _, name in columns) + " |"]
    lines.append("|---" * (len(columns) + 1) + "|")
    for row in summary.index:
        cells = []
        for key, _ in columns:
            value = summary.loc[row].get(key, float("nan"))
            sd = summary.loc[row].get(f"{key}_sd", float("nan"))
            if value != value:  # NaN
                cells.append("—")
            elif sd == sd and sd > 0:
                cells.append(f"{value:.3f} ± {sd:.3f}")
            else:
                cells.append(f"{value:.3f}")
        lines.append(f"| {ROW_NAMES.get(row, row)} | " + " | ".join(cells) + " |")
    return lines


def crosslab_figure(result: CrossLabResult, path: str | Path) -> Path:
    """The benchmark's figure (`report.crosslab.crosslab_png`)."""
    n = int(result.scores.loc[result.scores["row"] == "a", "n_gaba"].iloc[0])
    title = f"Another lab's cells: M1 Patch-seq (Scala et al. 2021), {n} GABAergic cells, alpha 0.1"
    return crosslab_png(result.summary(), path, title)
