"""Run a study: every step its settings ask for (cached), then results.json and report.html.

`reproduce` feeds the study the public tables with the `full` or `quick` preset; `demo`
feeds it a SYNTHETIC cohort with the `demo` preset. Both are `run_study`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

from joblib import effective_n_jobs

from ..console import console
from ..datasets.cells import SPECIES
from ..errors import Ephys2txError
from ..features.families import family_mask
from ..report.results import (
    CrossLabRun,
    DefaultModelRun,
    Embedding,
    ForestRun,
    Importance,
    NetworkRun,
    SequenceSection,
    StudyResults,
    TransferStudy,
    TrustRun,
    keyed,
    to_dict,
    write_results,
)
from ..version import __version__
from .schedule import Step, run_steps
from .settings import StudySettings
from .sources import PublicCells, SyntheticCells
from .steps import Study

# relative cost of a step by species (cells, classes): from the quick preset's timings
SIZE = {"human": 1.0, "mouse": 1.6}
EMBED = {"mouse": 13.0, "human": 3.0}

DEMO_TITLE = "ephys2tx demo: SYNTHETIC cohort, end to end"
REPRODUCTION_NOTES = [
    "The transfer study refits every variant at every share of human training donors on "
    "the same donor-grouped human folds; mouse cells are only ever training data. Paired "
    "differences are fold by fold against the human-only BiLSTM, with a t-interval over folds.",
    "The study's protocol (random folds, cells of one donor on both sides) is run with all "
    "training cells, so its figures can be set beside the study's table.",
]


def sequence_section(
    bilstm: list[NetworkRun], transfers: list[TransferStudy], notes: list[str]
) -> SequenceSection:
    """Section 4: BiLSTM runs, then each transfer study's scores (prefixed by its protocol)."""
    scores = keyed(bilstm)
    paired, figures, curve = {}, [], []
    for study in transfers:
        prefix = "transfer_" if study.protocol == "grouped" else f"transfer_{study.protocol}_"
        scores.update({f"{prefix}{k}": v for k, v in study.scores.items()})
        paired.update(keyed(study.paired))
        figures += study.figures
        if study.protocol == "grouped":
            curve = study.learning_curve
    figures = [r.figure for r in bilstm if r.figure is not None] + figures
    return SequenceSection(scores, paired, figures, curve, notes)


def _synthetic_notes(study: Study) -> list[str]:
    s, human = study.settings, study.cells("human")
    notes = [
        f"SYNTHETIC: {len(human)} simulated human cells from {human['donor'].nunique()} "
        f"synthetic donors, {s.transfer_repeats} x {s.network_folds} donor-grouped folds; small "
        f"networks (width {s.network.width}, {s.network.max_epochs} epochs without early stopping). The "
        f"transfer variant is pretrained on the {len(study.cells('mouse'))} synthetic mouse "
        "cells. With so few cells the intervals are wide; the demo shows the pipeline, not a "
        "result."
    ]
    present = family_mask(human).any()
    absent = [name for name, seen in present.items() if not seen]
    if absent:  # the synthetic protocol records no chirp: zero attention
        notes.append(
            f"Families no cell has ({', '.join(absent)}: the synthetic protocol does not record "
            "them) are masked, so their attention weight is exactly zero."
        )
    return notes


def plan(s: StudySettings) -> list[Step]:
    """Every step the settings ask for after `data`, each weighted by its expected cost.

    Weights are seconds on the quick preset (quiet, 2 cores), scaled by how much larger a
    preset makes the step's models: forests by folds x trees, networks by members x epochs
    (the full preset's transfer study then starts first, as it must)."""
    forests = s.folds * s.repeats * s.forest_trees / 300
    nested = s.folds * s.nested_repeats * s.forest_trees / 300  # trust and reference sections
    networks = s.network.members * s.network.max_epochs / 40
    steps = []
    if s.embedding:
        steps += [Step(f"embed_{sp}", "embed", (sp,), Embedding, w) for sp, w in EMBED.items()]
    steps += [
        Step(f"rf_{sp}_{lab}_{inp}_{pro}", "forest", (sp, lab, inp, pro), ForestRun, forests)
        for sp, lab, inp, pro in s.forest_runs
    ]
    steps += [
        Step(f"trust_{sp}_{lab}", "trust", (sp, lab), TrustRun, 31 * nested * SIZE[sp])
        for sp, lab in s.trust_runs
    ]
    steps.append(Step("rf_importance_human", "importance", ("human",), Importance, 5))
    steps += [
        Step(f"bilstm_{sp}_{lab}_{pro}", "bilstm", (sp, lab, pro), NetworkRun, 14 * networks)
        for sp, lab, pro in s.bilstm_runs
    ]
    transfer = 25 * networks * s.transfer_repeats * len(s.transfer_fractions) / 2
    steps.append(Step("transfer", "transfer", (), TransferStudy, transfer))
    if s.transfer_seed_protocol:
        seed = 25 * networks * s.transfer_repeats / 2
        steps.append(Step("transfer_seed", "transfer", ("seed",), TransferStudy, seed))
    if s.default_models:
        steps += [
            Step(
                f"default_model_{sp}",
                "default_model",
                (sp,),
                DefaultModelRun,
                30 * nested * SIZE[sp],
            )
            for sp in SPECIES
        ]
    if s.crosslab_draws:
        steps.append(Step("crosslab", "crosslab", (), CrossLabRun, 240 * s.crosslab_draws))
    steps.append(Step("models", "save_models", (), None, 22 * s.forest_trees / 100))
    return steps


def run_study(study: Study, title: str | None = None, lanes: int = 1) -> StudyResults:
    """Every step of `study.settings` (reusing cached ones), `lanes` steps at a time; writes
    results.json and the report."""
    from ..report.html import write_report

    s = study.settings
    data, cohort = study.data()
    steps = plan(s)  # step names are made there only; results are taken back by method
    done = run_steps(study, steps, lanes)

    def of(method: str) -> list:
        return [done[step.name] for step in steps if step.method == method]

    embedding = {e.species: e for e in of("embed")}
    forests, trust, bilstm, transfers = of("forest"), of("trust"), of("bilstm"), of("transfer")
    (importance,) = of("importance")
    notes = _synthetic_notes(study) if study.synthetic else list(REPRODUCTION_NOTES)
    if importance.figure is None:
        notes.append(
            "Forest permutation importance is zero for every family here, so its figure is "
            "left out: the forest separates these classes perfectly, and any one family "
            "permuted alone is made up for by the others."
        )
    default_model = {r.species: r for r in of("default_model")}
    crosslab = next(iter(of("crosslab")), None)
    (models,) = of("save_models")
    results = StudyResults(
        ephys2tx_version=__version__,
        preset=s.preset,
        synthetic=study.synthetic,
        settings=to_dict(asdict(s)),  # tuples as JSON lists
        data=data,
        cohort=cohort,
        embedding=embedding,
        forest=keyed(forests),
        trust=keyed(trust),
        importance={"human": importance},
        sequence=sequence_section(bilstm, transfers, notes),
        default_model=default_model,
        crosslab=crosslab,
        models=models,
        timings=list(study.cache.timings),
    )
    write_results(results, study.out / "results.json")
    write_report(results, study.out, title=title)
    return results


def reproduce(
    out: Path,
    quick: bool = False,
    seed: int = 0,
    data_dir: str | Path | None = None,
    mirror: str | None = None,
    n_jobs: int = 1,
) -> StudyResults:
    """The study from the public tables (`full`, or `quick` preset) into `out`, its steps
    `n_jobs` at a time (-1: one per core)."""
    settings = StudySettings.preset_named("quick" if quick else "full", seed)
    study = Study(out, settings, PublicCells(data_dir, mirror), n_jobs)
    return run_study(study, lanes=effective_n_jobs(n_jobs))


def demo(
    out: str | Path,
    n_per_class: int = 4,
    seed: int = 0,
    workers: int = 2,
    transfer: bool = True,
    progress: bool = True,
    embedding: bool = True,
    folds: int = 3,
    lanes: int = 1,
) -> StudyResults:
    """The study on a SYNTHETIC cohort (`demo` preset) into `out`, offline.

    `embedding=False` skips the sPCA/UMAP section (UMAP's compilation dominates small runs);
    `folds` donor-grouped folds (each repeated twice) need `n_per_class >= folds`;
    `transfer=False` leaves out the mouse → human transfer network; `lanes` steps run at
    once (1: the demo's steps are too small to gain from worker processes).
    """
    if n_per_class < folds:  # stratified folds need a class with a cell per fold
        raise Ephys2txError(
            f"--n-per-class {n_per_class} is too small for {folds} donor-grouped "
            f"folds; use {folds} or more"
        )
    if workers < 1:
        raise Ephys2txError(f"--workers must be at least 1, got {workers}")
    start = time.perf_counter()
    settings = StudySettings.preset_named(
        "demo", seed, n_per_class=n_per_class, embedding=embedding, folds=folds,
        network_folds=folds,
    )  # fmt: skip
    if not transfer:
        settings = replace(settings, transfer_methods=())
    source = SyntheticCells(Path(out), n_per_class, seed, workers, progress)
    results = run_study(Study(out, settings, source, 1), DEMO_TITLE, lanes)
    console.print(f"demo finished in {time.perf_counter() - start:.0f} s")
    return results


def score_lines(results: StudyResults) -> list[str]:
    """One line per model of section 4: title, macro-F1 mean ± sd."""
    return [
        f"  {r.title}: macro-F1 {r.scores.macro_f1['mean']:.3f} ± {r.scores.macro_f1['sd']:.3f}"
        for r in results.sequence.scores.values()
    ]
