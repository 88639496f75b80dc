"""Where a study's cells come from: the public tables, or a SYNTHETIC cohort.

`PublicCells` fetches (or mirrors) the pinned public tables and harmonizes them
(`datasets.cells.build_cells`). `SyntheticCells` simulates Allen-protocol NWB files for
mouse and human cells (`synthetic`, a few per subclass, spread over synthetic
donors) and puts them through the real extraction path (`features.batch.run_batch`, the
code `ephys2tx extract` runs, on a local Dask cluster). Both give the study one cell table
per species and a `SpeciesData` QC record each.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..console import console
from ..datasets.cells import ID_COLUMNS, SPECIES, build_cells, usable_features, write_cell_table
from ..datasets.fetch import (
    REPAIRED_NOTE,
    altered_files,
    fetch_all,
    resolve_data_dir,
    resolve_mirror,
)
from ..errors import Ephys2txError
from ..features.families import SCALAR_FEATURES
from ..report.results import SpeciesData
from .cache import StepCache

if TYPE_CHECKING:
    from distributed import Client


def _species_data(table: pd.DataFrame, qc: dict, **extra) -> SpeciesData:
    return SpeciesData(
        **qc,
        n_donors=int(table["donor"].nunique()),
        n_features=len(usable_features(table)),
        labels=table["label"].value_counts().sort_index().to_dict(),
        labels5=table["label5"].dropna().value_counts().sort_index().to_dict(),
        **extra,
    )


class PublicCells:
    """The public tables, from the data directory (fetched or mirrored on first use)."""

    synthetic = False

    def __init__(self, data_dir: str | Path | None = None, mirror: str | None = None):
        self.data_dir = resolve_data_dir(data_dir)
        self.mirror = resolve_mirror(mirror)
        self._cells: dict[str, pd.DataFrame] = {}

    def cells(self, species: str) -> pd.DataFrame:
        if species not in self._cells:
            self._cells[species] = build_cells(species, self.data_dir, self.mirror)[0]
        return self._cells[species]

    def prepare(self, out: Path, cache: StepCache) -> tuple[dict[str, SpeciesData], dict]:
        """The data step: fetch, harmonize, write DIR/cells/<species>.parquet; QC per species."""

        def data() -> dict[str, SpeciesData]:
            altered = altered_files(self.data_dir)
            fetch_all(self.data_dir, self.mirror)
            for name in altered:
                console.print(f"[yellow]{name}[/]: {REPAIRED_NOTE}")
            result = {}
            for species in SPECIES:
                table, report = build_cells(species, self.data_dir, self.mirror)
                write_cell_table(table, out / "cells" / f"{species}.parquet")
                result[species] = _species_data(table, report.as_dict())
            return result

        return cache.run("data", data, dict[str, SpeciesData]), {}


@dataclass(frozen=True)
class CohortSettings:
    """What the simulated cohort depends on: keys the cohort and extraction steps."""

    n_per_class: int = 4
    seed: int = 0


class SyntheticCells:
    """A SYNTHETIC cohort of both species, simulated and extracted into DIR/cells/."""

    synthetic = True

    def __init__(self, out: Path, n_per_class: int, seed: int, workers: int, progress: bool):
        self.out = Path(out)
        self.settings = CohortSettings(n_per_class, seed)
        self.workers = workers
        self.progress = progress
        self._cells: dict[str, pd.DataFrame] = {}

    def cells(self, species: str) -> pd.DataFrame:
        if species not in self._cells:
            path = self.out / "cells" / f"{species}.parquet"
            if not path.is_file():
                raise Ephys2txError(f"{path} is missing; rerun `ephys2tx demo` to rebuild it")
            self._cells[species] = pd.read_parquet(path)
        return self._cells[species]

    def prepare(self, out: Path, cache: StepCache) -> tuple[dict[str, SpeciesData], dict]:
        """Simulate and extract (each cached by the cohort's own settings, not the study's)."""
        out, s = self.out, self.settings
        # the cohort and its features do not depend on model sizes: their own cache key
        cohort_cache = StepCache(out, s)
        # a cached step whose files were deleted is run again
        if not _outputs_present(out, [f"recordings/{sp}/cohort.csv" for sp in SPECIES]):
            (cohort_cache.dir / "cohort.json").unlink(missing_ok=True)
        if not _outputs_present(out, [f"cells/{sp}.parquet" for sp in SPECIES]):
            (cohort_cache.dir / "data.json").unlink(missing_ok=True)
        cluster = _Cluster(self.workers)
        try:
            cohort = cohort_cache.run(
                "cohort",
                lambda: synthesize(out, s.n_per_class, s.seed, cluster, self.progress),
            )
            data = cohort_cache.run(
                "data", lambda: extract(out, cluster, self.progress), dict[str, SpeciesData]
            )
        finally:
            cluster.close()
        cache.timings.extend(cohort_cache.timings)
        return data, cohort


def _outputs_present(out: Path, names: list[str]) -> bool:
    return all((out / n).is_file() for n in names)


class _Cluster:
    """A local Dask cluster started on first use, so fully cached reruns start none."""

    def __init__(self, workers: int):
        self.workers = workers
        self.client = None
        self.cluster = None

    def get(self) -> Client:
        if self.client is None:
            from ..features.batch import dask_client

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


def synthesize(out: Path, n_per_class: int, seed: int, cluster: _Cluster, progress: bool) -> dict:
    """Both species' cohorts, simulated side by side on the Dask workers."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from ..synthetic import SUBCLASSES, write_cohort

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
            n_per_class,
            str(_recordings_dir(out, sp)),
            seed,
            False,  # no bar inside a worker; this process shows one
            pure=False,
            key=f"synth-{sp}",
        )
        for sp in SPECIES
    }
    total = sum(len(SUBCLASSES[sp]) * n_per_class for sp in SPECIES)
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


def extract(out: Path, cluster: _Cluster, progress: bool = True) -> dict[str, SpeciesData]:
    """Features of every synthetic file through `run_batch`; cell tables; QC counts."""
    from ..features.batch import run_batch

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
        qc = {"species": sp, "n_input": len(cohort), "dropped": dropped, "n_kept": len(cells)}
        errors = failed[["file", "stage", "reason"]].to_dict(orient="records")
        result[sp] = _species_data(cells, qc, extraction_errors=errors)
    return result
