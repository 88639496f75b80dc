"""`ephys2tx adapt`: a lab model from a lab's own cells, saved as a model directory.

Steps: the features the lab measures (shared with the reference table) -> the reference
model on exactly those features (fitted and calibrated here) -> the excitatory detector
(`trust/interneuron.py`; mouse only: the only excitatory cells here are mouse M1 cells) ->
the lab model (`models/lab.py`: anchored alignment without labels; with labels the lab's
cells join training and recalibrate the sets) -> a model directory that `predict DIR` reads
like any default model (kind `hierarchical`; its card's `lab` says what was done).

The training summary (ranges, novelty, `lab_shift` null) is the training cells mapped into
the lab's terms, so the flags read the lab's own values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .datasets.cells import other_species_cells
from .datasets.labels import DEFAULT_LABEL
from .default_model import (
    DEFAULT_SETTINGS,
    data_checksums,
    default_model_for_lab,
    default_training_cells,
    novelty_weights,
)
from .errors import Ephys2txError
from .models.bundle import HIERARCHICAL, LabCard, Provenance
from .models.hierarchy import HierarchyFit
from .models.lab import LabFit, fit_lab_model, lab_features
from .models.mapping import hierarchical_card
from .models.trusted import fit_trust, save_trained
from .trust.interneuron import InterneuronDetector, m1_detector


@dataclass
class LabAdaptation:
    """What `adapt` built: the reference fit, the lab fit, the detector and the features."""

    species: str
    features: list[str]
    reference: HierarchyFit
    lab: LabFit
    detector: InterneuronDetector | None
    default_training_cells: pd.DataFrame


def adapt_to_lab(
    species: str,
    lab: pd.DataFrame,
    labels: pd.Series | None = None,
    donors: pd.Series | None = None,
    data_dir=None,
    mirror=None,
    seed: int = 0,
    n_jobs: int = 1,
    say: Callable[[str], None] = print,
) -> LabAdaptation:
    """Fit a lab model to `lab` (canonical features, one row per cell)."""
    cells = default_training_cells(species, data_dir, mirror)
    features = lab_features(lab, cells)
    say(f"the lab's cells share {len(features)} features with the {species} reference")
    reference = default_model_for_lab(
        species, lab, features, cells, seed, n_jobs, data_dir, mirror, say
    )
    detector = m1_detector(species, features, cells, data_dir, mirror, seed=seed)
    eligible = ~detector.flag(lab) if detector is not None else None
    if detector is not None:
        say(f"{int((~eligible).sum())} of {len(lab)} lab cells look excitatory (not_interneuron)")
    fit = fit_lab_model(
        reference.model, reference.calibration, cells, DEFAULT_LABEL[species], lab,
        labels, donors, eligible, seed=seed,
    )  # fmt: skip
    return LabAdaptation(species, features, reference, fit, detector, cells)


def save_lab_model(out: str | Path, built: LabAdaptation, data_dir=None, mirror=None) -> Path:
    """Write the lab model directory (model, card, calibration, training summary)."""
    fit, ref = built.lab, built.reference
    species = built.species
    model = fit.model
    cells = built.default_training_cells
    provenance = Provenance(data_sha256=data_checksums(species, data_dir, mirror))
    card = hierarchical_card(
        model, ref.taxonomy, species, len(cells), provenance, DEFAULT_SETTINGS[species].describe(),
        ref.temperature,
    )  # fmt: skip
    card.lab = LabCard(
        details=fit.details, shift=model.shift.to_dict(),
        most_shifted=model.shift.largest(cells),
        not_interneuron=built.detector.source if built.detector else None,
    )  # fmt: skip
    in_lab_terms = model.shift.to_lab(cells)
    trust = fit_trust(
        in_lab_terms, species, built.features, ref.calibrated,
        other=other_species_cells(species, data_dir, mirror),
        weights=novelty_weights(model, built.features), interneuron=built.detector,
        shift_label=DEFAULT_LABEL[species],
    )  # fmt: skip
    trust.conformal = dict(fit.calibration)  # the lab's own sets (recalibrated with labels)
    return save_trained(out, model, card, trust)


def is_lab_model(card) -> bool:
    """True for a directory written by `adapt`."""
    return card.kind == HIERARCHICAL and card.lab is not None


def label_column(lab: pd.DataFrame, labels: pd.DataFrame | None) -> pd.Series | None:
    """The lab's subclass per cell: `--labels` (specimen_id, subclass), else a `subclass`
    column of the cells, else None (unlabelled)."""
    if labels is not None:
        missing = {"specimen_id", "subclass"} - set(labels.columns)
        if missing:
            raise Ephys2txError(
                f"--labels needs the columns specimen_id and subclass (lacks "
                f"{', '.join(sorted(missing))})"
            )
        mapping = dict(zip(labels["specimen_id"].astype(str), labels["subclass"], strict=False))
        out = lab["specimen_id"].astype(str).map(mapping)
        if out.notna().sum() == 0:
            raise Ephys2txError(
                "--labels: no specimen_id matches a cell of the inputs; check the ids"
            )
        return out.where(out.notna(), np.nan)
    if "subclass" in lab.columns and lab["subclass"].notna().any():
        return lab["subclass"]
    return None
