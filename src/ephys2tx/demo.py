"""`ephys2tx demo`: the whole pipeline offline, on a SYNTHETIC cohort of both species.

No network and no downloaded data: `synthetic` simulates Allen-protocol NWB files
for mouse and human cells (a few per subclass, spread over synthetic donors), the real
extraction path (`features.batch.run_batch`, the code `ephys2tx extract` runs, on a local
Dask cluster) turns them into cell tables, and the study's own steps (`reproduce.Study`:
forest on donor-grouped folds, permutation importance, saved models) plus a small BiLSTM
and one mouse -> human transfer variant run on them. The report is the reproduction
report with `synthetic=True`, so every section says SYNTHETIC. Each step is cached in
DIR/steps/, so a rerun with the same settings only rewrites the report.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import __version__
from .datasets.cells import ID_COLUMNS, SPECIES, usable_features, write_cell_table
from .datasets.labels import DEFAULT_LABEL
from .errors import Ephys2txError
from .features.families import SCALAR_FEATURES, family_mask
from .reproduce import StepCache, Study, console

if TYPE_CHECKING:
    from distributed import Client

DEMO_TITLE = "ephys2tx demo: SYNTHETIC cohort, end to end"
FOREST_RUNS = [("mouse", "label5"), ("mouse", "label"), ("human", "label")]
TRANSFER_METHOD = "finetune"


@dataclass(frozen=True)
class CohortSettings:
    """What the simulated cohort depends on: keys the cohort and extraction steps."""

    n_per_class: int = 4
    seed: int = 0


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo. Everything here changes results, so it keys the step cache.

    The first fields are the ones `reproduce.Study`'s steps read (its StudySettings
    names); the rest size the cohort and the networks so that the whole demo fits in a
    few minutes on 2 cores. Only JSON-exact types (no tuples), so a cached step compares
    equal to the settings it was stored with.
    """

    quick: bool = False  # the demo is not the reproduction's --quick run
    seed: int = 0
    folds: int = 3  # 6 synthetic donors per species -> 2 test donors per fold
    repeats: int = 2  # 2 x 3 folds: paired comparisons over 6 folds, not 3
    seed_repeats: int = 1
    importance_folds: int = 1  # the demo's classes separate perfectly: one fold says so
    importance_repeats: int = 1
    forest_trees: int = 500
    n_per_class: int = 4
    width: int = 16
    hidden: int = 16
    epochs: int = 60  # fixed: too few donors to hold some out for early stopping
    lr: float = 1e-2  # ~10 training cells make one batch: one step per epoch
    transfer: bool = True


class DemoStudy(Study):
    """The reproduction's steps, reading cell tables extracted from the synthetic cohort."""

    def cells(self, species: str) -> pd.DataFrame:
        if species not in self._cells:
            path = self.out / "cells" / f"{species}.parquet"
            if not path.is_file():
                raise Ephys2txError(f"{path} is missing; rerun `ephys2tx demo` to rebuild it")
            self._cells[species] = pd.read_parquet(path)
        return self._cells[species]

    def embed(self, species: str) -> dict:
        # a demo cohort is smaller than UMAP's neighbourhood, which UMAP shrinks itself
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "n_neighbors is larger", UserWarning)
            return super().embed(species)


# --- cohort and extraction ---------------------------------------------------------------
class _Cluster:
    """A local Dask cluster started on first use, so fully cached reruns start none."""

    def __init__(self, workers: int):
        self.workers = workers
        self.client = None
        self.cluster = None

    def get(self) -> Client:
        if self.client is None:
            from .features.batch import dask_client

            console.print(f"[dim]starting a local Dask cluster ({self.workers} workers)[/]")
            self.client, self.cluster = dask_client(self.workers)  # as `ephys2tx extract`
        return self.client

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.cluster.close()
            self.client = self.cluster = None


def _recordings_dir(out: Path, species: str) -> Path:
    return out / "recordings" / species


def synthesize(out: Path, settings: DemoSettings, cluster: _Cluster, progress: bool) -> dict:
    """Both species' cohorts, simulated side by side on the Dask workers."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from .synthetic import SUBCLASSES, write_cohort

    for sp in SPECIES:  # a stale cohort must not count as progress or be extracted
        for old in [
            *_recordings_dir(out, sp).glob("synth_*.nwb"),
            _recordings_dir(out, sp) / "cohort.csv",
        ]:
            old.unlink(missing_ok=True)
    client = cluster.get()
    futures = {
        sp: client.submit(
            write_cohort,
            sp,
            settings.n_per_class,
            str(_recordings_dir(out, sp)),
            settings.seed,
            False,  # no bar inside a worker; this process shows one
            pure=False,
            key=f"synth-{sp}",
        )
        for sp in SPECIES
    }
    total = sum(len(SUBCLASSES[sp]) * settings.n_per_class for sp in SPECIES)
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), disable=not progress) as bar:
        task = bar.add_task("simulating SYNTHETIC cells", total=total)
        while not all(f.done() for f in futures.values()):
            time.sleep(0.5)
            done = sum(len(list(_recordings_dir(out, sp).glob("*.nwb"))) for sp in SPECIES)
            bar.update(task, completed=min(done, total))
        bar.update(task, completed=total)
    result = {}
    for sp, fut in futures.items():
        table = fut.result()  # re-raises a worker's Ephys2txError here
        result[sp] = {
            "n_cells": len(table),
            "n_donors": int(table["donor"].nunique()),
            "subclasses": table["subclass"].value_counts().sort_index().to_dict(),
        }
    return result


def synthetic_cells(cohort: pd.DataFrame, extracted: pd.DataFrame) -> pd.DataFrame:
    """Extracted features joined to the cohort's labels and donors (by file name).

    Extraction reads no labels (and the readers leave the synthetic donor unset), so both
    come from cohort.csv. Columns: the study's ID columns, canonical features,
    then `extraction_status`.
    """
    features = extracted.assign(file=extracted["file"].map(lambda f: Path(f).name))
    table = cohort.merge(features, on="file", how="inner", suffixes=("", "_extracted"))
    cells = pd.DataFrame(
        {
            "specimen_id": table["specimen_id"].astype("int64"),
            "species": table["species"],
            "donor": table["donor"].astype(str),
            "t_type": table["subclass"],
            "subclass": table["subclass"],
            "label": table["label"],
            "label5": table["label5"] if (table["species"] == "mouse").all() else np.nan,
            "condition": "synthetic",
        }
    )
    cells = pd.concat([cells, table[SCALAR_FEATURES].astype(float)], axis=1)
    cells["extraction_status"] = table["status"].to_numpy()
    return cells[list(ID_COLUMNS) + SCALAR_FEATURES + ["extraction_status"]]


def extract(out: Path, cluster: _Cluster, progress: bool = True) -> dict:
    """Features of every synthetic file through `run_batch`; cell tables; QC counts."""
    from .features.batch import run_batch

    files = sorted(p for sp in SPECIES for p in _recordings_dir(out, sp).glob("*.nwb"))
    address = cluster.get().scheduler.address
    batch = run_batch(files, out / "features", scheduler=address, progress=progress)
    console.print(
        f"extracted {len(batch.cells)} cells ({batch.n_cached} from cache), "
        f"{len(batch.errors)} errors, in {batch.seconds:.1f} s"
    )
    result = {}
    for sp in SPECIES:
        cohort = pd.read_csv(_recordings_dir(out, sp) / "cohort.csv")
        cells = synthetic_cells(cohort, batch.cells)
        mine = batch.errors["file"].map(lambda f, sp=sp: f"_{sp}_" in Path(f).name)
        failed = batch.errors.loc[mine.astype(bool)]
        cells = cells[cells[SCALAR_FEATURES].notna().any(axis=1)].reset_index(drop=True)
        write_cell_table(cells, out / "cells" / f"{sp}.parquet")
        dropped = {}
        if len(failed):
            dropped["extraction error"] = len(failed)
        if len(cohort) - len(failed) - len(cells):
            dropped["no electrophysiology features"] = len(cohort) - len(failed) - len(cells)
        result[sp] = {
            "species": sp,
            "n_input": len(cohort),
            "dropped": dropped,
            "n_kept": len(cells),
            "n_donors": int(cells["donor"].nunique()),
            "n_features": len(usable_features(cells)),
            "labels": cells["label"].value_counts().sort_index().to_dict(),
            "labels5": cells["label5"].dropna().value_counts().sort_index().to_dict(),
            "extraction_errors": failed[["file", "stage", "reason"]].to_dict(orient="records"),
        }
    return result


# --- BiLSTM and transfer -----------------------------------------------------------------
def _network_params(settings: DemoSettings) -> dict:
    # validation_fraction 0: a donor-grouped inner split of ~12 training cells would leave
    # classes with a single cell, so the networks train a fixed number of epochs instead
    return {
        "width": settings.width,
        "hidden": settings.hidden,
        "max_epochs": settings.epochs,
        "lr": settings.lr,
        "validation_fraction": 0.0,
        "n_members": 1,
        "random_state": settings.seed,
    }


def _variants(study: DemoStudy) -> dict:
    from .models.bilstm import BiLSTMClassifier
    from .models.forest import make_forest
    from .models.transfer import make_transfer

    s = study.settings
    variants = {
        "forest": make_forest(s.seed),
        "bilstm_human": BiLSTMClassifier(**_network_params(s)),
    }
    if s.transfer:
        variants[f"transfer_{TRANSFER_METHOD}"] = make_transfer(
            study.cells("mouse"),
            TRANSFER_METHOD,
            head_epochs=max(1, s.epochs // 2),
            **_network_params(s),
        )
    return variants


TITLES = {
    "forest": "forest (raw), human 4-class",
    "bilstm_human": "attention BiLSTM, human 4-class",
    f"transfer_{TRANSFER_METHOD}": f"transfer mouse → human ({TRANSFER_METHOD}), human 4-class",
}


def sequence(study: DemoStudy) -> dict:
    """Forest, human-only BiLSTM and transfer on the same donor-grouped human folds."""
    from .evaluation.folds import make_folds
    from .evaluation.metrics import paired_difference
    from .evaluation.transfer_study import attention_by_class, plot_attention, run_transfer_study

    s = study.settings
    human = study.cells("human")
    label = DEFAULT_LABEL["human"]
    folds = make_folds(
        human[label].to_numpy(),
        human["donor"].to_numpy(),
        "human",
        "grouped",
        s.folds,
        s.repeats,
        s.seed,
    )
    variants = _variants(study)
    result = run_transfer_study(
        human,
        variants,
        folds,
        fractions=(1.0,),
        label=label,
        features={"forest": usable_features(human)},
        seed=s.seed,
    )
    scores = {}
    for (name, _), cv in result.results.items():
        m = cv.summary(species="human", label=label, protocol="grouped", model=name)
        scores[name] = {
            "title": TITLES[name],
            "protocol": "grouped",
            "n_cells": m["n_cells"],
            "macro_f1": {k: m["macro_f1"][k] for k in ("mean", "sd", "ci95", "n")},
            "accuracy": {k: m["accuracy"][k] for k in ("mean", "sd")},
            "per_class_f1": m["per_class_f1"],
        }
    reference = result.results[("bilstm_human", 1.0)].scores
    paired = {}
    for name in variants:
        if name == "bilstm_human":
            continue
        diff = paired_difference(result.results[(name, 1.0)].scores, reference)
        paired[f"{name} − bilstm_human"] = {
            "mean": diff["mean"],
            "ci95": diff["ci95"],
            "n": diff["n"],
            "n_folds_better": diff["n_folds_a_better"],
        }
    figures = []
    for name, att in result.attention.items():
        png = plot_attention(
            attention_by_class(att),
            study.figures / f"attention_{name}.png",
            f"SYNTHETIC human: {name} attention",
        )
        figures.append([png.name, f"{TITLES[name]}: mean attention per family and true class"])
    return {
        "scores": scores,
        "paired": paired,
        "figures": figures,
        "notes": [
            f"SYNTHETIC: {len(human)} simulated human cells from {human['donor'].nunique()} "
            f"synthetic donors, {s.repeats} x {s.folds} donor-grouped folds; small networks (width "
            f"{s.width}, {s.epochs} epochs without early stopping). The transfer variant is pretrained "
            f"on the {len(study.cells('mouse'))} synthetic mouse cells. With so few cells "
            "the intervals are wide; the demo shows the pipeline, not a result.",
            *_absent_family_note(human),
        ],
    }


def _absent_family_note(cells: pd.DataFrame) -> list[str]:
    """Families no cell has (the synthetic protocol records no chirp): zero attention."""
    present = family_mask(cells).any()
    absent = [name for name, seen in present.items() if not seen]
    if not absent:
        return []
    return [
        f"Families no cell has ({', '.join(absent)}: the synthetic protocol does not record "
        "them) are masked, so their attention weight is exactly zero."
    ]


def save_models(study: DemoStudy) -> dict:
    """Forests of both species plus the human BiLSTM and transfer model, under DIR/models/."""
    from .models.bundle import card_for, save_model

    s = study.settings
    saved = {}
    variants = _variants(study)
    fits = [("rf-mouse", "mouse", variants["forest"], DEFAULT_LABEL["mouse"])]
    fits += [("rf-human", "human", variants["forest"], "label")]
    fits += [("bilstm-human", "human", variants["bilstm_human"], "label")]
    if s.transfer:
        name = f"transfer_{TRANSFER_METHOD}"
        fits += [(f"transfer-{TRANSFER_METHOD}-human", "human", variants[name], "label")]
    for name, species, model, label in fits:
        table = study.cells(species)
        is_forest = name.startswith("rf-")
        X = table[usable_features(table)] if is_forest else table
        model.fit(X, table[label].to_numpy())
        kind = "rf-raw" if is_forest else name.rsplit("-", 1)[0]
        card = card_for(
            model, kind, species, label, len(table),
            seed=s.seed, trained_by="ephys2tx demo",
            synthetic=True,  # never use these on real cells
        )  # fmt: skip
        target = study.out / "models" / name
        save_model(target, model, card)
        saved[name] = str(target.relative_to(study.out))
    return saved


# --- the pipeline ------------------------------------------------------------------------
def _outputs_present(out: Path, names: list[str]) -> bool:
    return all((out / n).is_file() for n in names)


def demo(
    out: str | Path,
    n_per_class: int = 4,
    seed: int = 0,
    workers: int = 2,
    transfer: bool = True,
    progress: bool = True,
    embedding: bool = True,
    folds: int = 3,
) -> dict:
    """Run the SYNTHETIC demo into `out` (reusing cached steps); return results.json's dict.

    `embedding=False` skips the sPCA/UMAP section (UMAP's compilation dominates small runs);
    `folds` donor-grouped folds (each repeated twice) need `n_per_class >= folds`.
    """
    from .report.html import write_report

    settings = DemoSettings(seed=seed, n_per_class=n_per_class, transfer=transfer, folds=folds)
    if n_per_class < settings.folds:  # stratified folds need a class with a cell per fold
        raise Ephys2txError(
            f"--n-per-class {n_per_class} is too small for {settings.folds} donor-grouped "
            f"folds; use {settings.folds} or more"
        )
    if workers < 1:
        raise Ephys2txError(f"--workers must be at least 1, got {workers}")
    start = time.perf_counter()
    out = Path(out)
    study = DemoStudy(out, settings)
    # the cohort and its features do not depend on model sizes: their own cache key
    cohort_cache = StepCache(out, CohortSettings(n_per_class, seed))
    # a cached step whose files were deleted is run again
    if not _outputs_present(out, [f"recordings/{sp}/cohort.csv" for sp in SPECIES]):
        (cohort_cache.dir / "cohort.json").unlink(missing_ok=True)
    if not _outputs_present(out, [f"cells/{sp}.parquet" for sp in SPECIES]):
        (cohort_cache.dir / "data.json").unlink(missing_ok=True)
    cluster = _Cluster(workers)
    results: dict = {
        "ephys2tx_version": __version__,
        "synthetic": True,
        "quick": settings.quick,
        "settings": asdict(settings),
    }
    try:
        results["cohort"] = cohort_cache.run(
            "cohort", lambda: synthesize(out, settings, cluster, progress)
        )
        results["data"] = cohort_cache.run("data", lambda: extract(out, cluster, progress))
    finally:
        cluster.close()
    run = study.cache.run
    if embedding:
        results["embedding"] = {
            sp: run(f"embed_{sp}", lambda sp=sp: study.embed(sp)) for sp in SPECIES
        }
    results["forest"] = {
        f"rf_{sp}_{lab}_raw_grouped": run(
            f"rf_{sp}_{lab}_raw_grouped", lambda a=(sp, lab): study.forest(*a, "raw", "grouped")
        )
        for sp, lab in FOREST_RUNS
    }
    importance = run("rf_importance_human", lambda: study.forest_importance("human"))
    results["forest_importance"] = {"human": importance}
    results["sequence"] = run("sequence", lambda: sequence(study))
    results["models"] = run("models", lambda: save_models(study))
    if not any(abs(row["mean"]) > 0 for row in importance["table"]):
        # an empty bar chart reads as a bug: say why instead of showing it
        results["forest_importance_all_zero"] = results.pop("forest_importance")
        results["sequence"]["notes"].append(
            "Forest permutation importance is zero for every family here, so its figure is "
            "left out: the forest separates these synthetic classes perfectly, and any one "
            "family permuted alone is made up for by the others."
        )
    tmp = out / ".results.json.part"
    tmp.write_text(json.dumps(results, indent=2, default=float))
    tmp.replace(out / "results.json")
    write_report(results, out, title=DEMO_TITLE, synthetic=True)
    console.print(f"demo finished in {time.perf_counter() - start:.0f} s")
    return results
