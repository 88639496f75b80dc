"""A SYNTHETIC cohort: cells of every subclass over a few synthetic donors, each written as an
Allen-style NWB file, with `cohort.csv` (labels and generating parameters)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..console import console
from ..errors import Ephys2txError
from ..recordings.sweeps import Recording
from ..schema import MOUSE_TO_ALIGNED, SUBCLASSES
from .params import CellParams, sample_params
from .protocol import simulate_cell

if TYPE_CHECKING:
    import pandas as pd

SYNTHETIC_NOTICE = (
    "SYNTHETIC cells: simulated conductance-based models recorded with the Allen protocol; "
    "not real recordings."
)
_SPECIES_CODE = {"mouse": 0, "human": 1}
_ID_BASE = 9_000_000_000  # far above real Allen specimen ids, so never confused with them


def _n_donors(n_cells: int) -> int:
    return max(1, min(6, n_cells))


def _simulate_valid(
    subclass: str, species: str, seed_key: list[int], donor_effect: float, cell_id: str
) -> tuple[CellParams, Recording]:
    """Draw parameters until the cell fires within the protocol (rarely needs a retry)."""
    for attempt in range(5):
        rng = np.random.default_rng([*seed_key, attempt])
        params = sample_params(subclass, species, rng, donor_effect=donor_effect)
        try:
            return params, simulate_cell(subclass, species, rng, params=params, cell_id=cell_id)
        except Ephys2txError:
            continue
    raise Ephys2txError(
        f"could not draw a firing synthetic {species} {subclass} cell; try another --seed"
    )


def _write_cell(job: tuple) -> dict:
    """Simulate one cohort cell and write its NWB file; returns its cohort.csv row."""
    from ..recordings.allen_nwb import write_allen_nwb

    species, subclass, seed, index, donor_id, donor_effect, out = job
    code = _SPECIES_CODE[species]
    specimen_id = _ID_BASE + code * 1_000_000 + index
    params, recording = _simulate_valid(
        subclass, species, [seed, code, index], donor_effect, str(specimen_id)
    )
    file = f"synth_{species}_{specimen_id}.nwb"
    write_allen_nwb(
        Path(out) / file,
        recording,
        session_description=(
            f"{SYNTHETIC_NOTICE} ephys2tx synth, species={species}, subclass={subclass}, "
            f"seed={seed}, cell={index}"
        ),
        donor=donor_id,
    )
    return {
        "specimen_id": specimen_id,
        "species": species,
        "donor": donor_id,
        "subclass": subclass,
        "label": MOUSE_TO_ALIGNED[subclass],  # human subclass names are the aligned ones
        "label5": subclass,
        "file": file,
        "synthetic": True,
        "seed": seed,
        "rheobase_pa": recording.metadata["rheobase_pa"],
        "short_square_threshold_pa": recording.metadata.get("short_square_threshold_pa"),
        "n_sweeps": len(recording.sweeps),
        **asdict(params),
    }


def write_cohort(
    species: str,
    n_per_class: int,
    out_dir: str | Path,
    seed: int = 0,
    progress: bool = True,
    jobs: int = 1,
) -> pd.DataFrame:
    """Simulate `n_per_class` SYNTHETIC cells per subclass, one Allen-style NWB file each.

    Cells are spread over a handful of synthetic donors (each donor adds a small shared offset
    to input resistance) so donor-grouped folds work. Writes and returns `out_dir/cohort.csv`.
    Deterministic for a given seed whatever `jobs` (worker processes): each cell draws from
    its own seeded generator.
    """
    import pandas as pd
    from rich.progress import Progress

    if species not in SUBCLASSES:
        raise Ephys2txError(f"unknown species {species!r}; use mouse or human")
    if n_per_class < 1:
        raise Ephys2txError(f"--n-per-class must be at least 1, got {n_per_class}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    code = _SPECIES_CODE[species]
    classes = SUBCLASSES[species]
    n_donors = _n_donors(len(classes) * n_per_class)
    donor_effects = [
        float(np.exp(np.random.default_rng([seed, code, 1_000_000 + d]).normal(0.0, 0.08)))
        for d in range(n_donors)
    ]
    plan = []
    for c, subclass in enumerate(classes):
        for k in range(n_per_class):
            donor = (k + c) % n_donors  # every donor gets several subclasses
            donor_id = f"synth-{species}-donor{donor + 1}"
            plan.append((species, subclass, seed, len(plan), donor_id, donor_effects[donor], out))
    rows: list[dict] = []
    with Progress(console=console, disable=not progress) as bar:
        task = bar.add_task(f"simulating {len(plan)} {species} cells", total=len(plan))
        if jobs <= 1:
            for job in plan:
                rows.append(_write_cell(job))
                bar.advance(task)
        else:
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(max_workers=min(jobs, len(plan))) as pool:
                for future in as_completed([pool.submit(_write_cell, job) for job in plan]):
                    rows.append(future.result())
                    bar.advance(task)
    table = pd.DataFrame(rows).sort_values("specimen_id", ignore_index=True)
    table.to_csv(out / "cohort.csv", index=False)
    return table
