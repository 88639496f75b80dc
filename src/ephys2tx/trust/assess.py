"""How far to trust each call: prediction sets, flags and novelty, as typed per-cell records.

Pure computation: `TrainingSummary.fit` summarizes a model's training cells (ranges, family
coverage, novelty baseline, species fingerprint); `assess` turns probabilities plus that
training summary plus a Mondrian conformal calibration into one `CellTrust` per cell.

Flags (fixed vocabulary, joined by `schema.FLAG_SEPARATOR` in tables):
- `few_features`: fewer than half as many of the model's features measured as the
  median training cell has;
- `missing_family:<name>`: no feature of a family that most (>= 50%) training cells have;
- `out_of_range:<feature>`: a value beyond the training range [min, max] by more than
  `RANGE_MARGIN` times its width (catches unit errors);
- `species_mismatch`: the table's `species` column (or a recording's subject, e.g.
  "Mus musculus") names another species than the model's, or the species fingerprint (`trust/species.py`) finds the cell closer to
  the other species' public cells;
- `novel`: the rank average of novelty and 1 - top probability (calibrated models; else the
  novelty alone) above the threshold that flags 5% of training cells (`trust/novelty.py`);
- `not_interneuron`: the excitatory-vs-GABAergic detector (`trust/interneuron.py`) calls the
  cell excitatory (models that carry a detector);
- `lab_shift`: the whole batch differs from the training cells more than any training donor
  does (`models/interneuron.BatchShift`); every cell of that batch carries it;
- `set_excludes_call`: the (class-conditional) prediction set does not hold the most
  probable class.
`confident` and the last flag follow the one rule of `trust/agreement.py`: confident only
when the prediction set is the call alone and no flag is raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ..schema import FLAG_SEPARATOR, SET_SEPARATOR
from .agreement import SET_EXCLUDES_CALL, call_flags, is_confident
from .interneuron import LAB_SHIFT, NOT_INTERNEURON, BatchShift, InterneuronDetector
from .novelty import NovelFlag, NoveltyBaseline
from .species import SpeciesFingerprint

RANGE_MARGIN = 0.25
FEW_FEATURES_SHARE = 0.5
FAMILY_REQUIRED_SHARE = 0.5
FLAG_VOCABULARY = (
    "few_features",
    "missing_family:<name>",
    "out_of_range:<feature>",
    "species_mismatch",
    "novel",
    NOT_INTERNEURON,
    LAB_SHIFT,
    SET_EXCLUDES_CALL,
)


@dataclass
class TrainingSummary:
    """What flags and novelty need from a model's training cells."""

    species: str
    features: list[str]
    low: np.ndarray  # (d,) lowest accepted value per feature (range minus margin)
    high: np.ndarray  # (d,) highest accepted value per feature
    required_families: dict[str, list[str]]  # families most training cells measure
    min_measured: int  # fewer measured features than this raises `few_features`
    novelty: NoveltyBaseline
    fingerprint: SpeciesFingerprint | None = None
    novel_flag: NovelFlag | None = None  # set by `with_novel_flag` when calibrated
    interneuron: InterneuronDetector | None = None  # raises `not_interneuron` when set
    batch_shift: BatchShift | None = None  # raises `lab_shift` when set

    @classmethod
    def fit(
        cls,
        cells: pd.DataFrame,
        features: list[str],
        families: dict[str, list[str]],
        species: str,
        groups: ArrayLike,
        fingerprint: SpeciesFingerprint | None = None,
        weights: ArrayLike | None = None,
    ) -> TrainingSummary:
        """Summarize the training cells (one row each, columns include `features`)."""
        X = cells[features].to_numpy(float)
        lo, hi = np.nanmin(X, axis=0), np.nanmax(X, axis=0)
        width = np.where(hi > lo, hi - lo, np.abs(hi) + 1e-12)
        required = {
            name: cols
            for name, cols in families.items()
            if cells[cols].notna().any(axis=1).mean() >= FAMILY_REQUIRED_SHARE
        }
        measured = np.isfinite(X).sum(axis=1)
        return cls(
            species=species,
            features=list(features),
            low=lo - RANGE_MARGIN * width,
            high=hi + RANGE_MARGIN * width,
            required_families=required,
            min_measured=int(np.ceil(FEW_FEATURES_SHARE * np.median(measured))),
            novelty=NoveltyBaseline.fit(X, groups, features, weights=weights),
            fingerprint=fingerprint,
        )

    def with_novel_flag(self, groups: ArrayLike, top_probability: ArrayLike) -> TrainingSummary:
        """Calibrate the combined `novel` flag from the training cells' donors (as at
        fitting) and their out-of-fold top probabilities (same order); returns self."""
        self.novel_flag = NovelFlag.fit(self.novelty.own_novelty(groups), top_probability)
        return self

    def assess_cells(
        self,
        cells: pd.DataFrame,
        top_probability: np.ndarray | None = None,
        called: np.ndarray | None = None,
    ) -> tuple[np.ndarray, list[list[str]]]:
        """Novelty and flags of each cell of a table (model columns it lacks count as NaN);
        `called`, each cell's predicted class, lets the batch be checked for `lab_shift`."""
        table = cells.reindex(columns=self.features)
        if "species" in cells.columns:
            table["species"] = cells["species"].to_numpy()
        novelty = self.novelty.novelty(table[self.features])
        flags = self.flags(table, novelty, top_probability)
        if called is not None and self.batch_note(cells, called) is not None:
            flags = [[*f, LAB_SHIFT] for f in flags]
        return novelty, flags

    def not_interneuron(self, cells: pd.DataFrame) -> np.ndarray:
        """True where the detector (if any) calls the cell excitatory."""
        detector = getattr(self, "interneuron", None)
        if detector is None:
            return np.zeros(len(cells), bool)
        return detector.flag(cells)

    def batch_note(self, cells: pd.DataFrame, called) -> str | None:
        """The `lab_shift` line of a batch (its interneuron-like cells, with the class each
        is called), or None."""
        shift = getattr(self, "batch_shift", None)
        if shift is None:
            return None
        keep = ~self.not_interneuron(cells)
        return shift.check(cells[keep], np.asarray(called)[keep])

    def novel_score(self, novelty: np.ndarray, top_probability: np.ndarray | None) -> np.ndarray:
        """The score the `novel` flag thresholds: combined when calibrated, else the novelty."""
        flag = getattr(self, "novel_flag", None)
        if flag is None or top_probability is None:
            return np.asarray(novelty, float)
        return flag.score(novelty, top_probability)

    def is_novel(self, novelty: np.ndarray, top_probability: np.ndarray | None) -> np.ndarray:
        """The `novel` flag: combined with the top probability when both are available."""
        flag = getattr(self, "novel_flag", None)
        if flag is None or top_probability is None:
            return self.novelty.is_novel(novelty)
        return flag.is_novel(novelty, top_probability)

    def flags(
        self,
        cells: pd.DataFrame,
        novelty: np.ndarray | None = None,
        top_probability: np.ndarray | None = None,
    ) -> list[list[str]]:
        """The flags of each cell (a table with the model's feature columns, NaN allowed);
        `top_probability` (the model's, temperature-scaled) feeds the combined `novel`."""
        X = cells.reindex(columns=self.features).to_numpy(float)
        if novelty is None:
            novelty = self.novelty.novelty(X)
        measured = np.isfinite(X)
        outside = (X < self.low) | (X > self.high)
        family_missing = {
            name: ~cells.reindex(columns=cols).notna().any(axis=1).to_numpy()
            for name, cols in self.required_families.items()
        }
        mismatch = np.zeros(len(X), bool)
        if "species" in cells.columns:
            named = np.array([species_name(v) for v in cells["species"]], dtype=object)
            mismatch |= np.array([n is not None and n != self.species for n in named])
        if self.fingerprint is not None:
            mismatch |= self.fingerprint.mismatch(cells, self.species)
        novel = self.is_novel(novelty, top_probability)
        excitatory = self.not_interneuron(cells)
        out = []
        for i in range(len(X)):
            flags = []
            if measured[i].sum() < self.min_measured:
                flags.append("few_features")
            flags += [f"missing_family:{n}" for n, miss in family_missing.items() if miss[i]]
            flags += [f"out_of_range:{self.features[j]}" for j in np.flatnonzero(outside[i])]
            if mismatch[i]:
                flags.append("species_mismatch")
            if novel[i]:
                flags.append("novel")
            if excitatory[i]:
                flags.append(NOT_INTERNEURON)
            out.append(flags)
        return out


def species_name(value) -> str | None:
    """'mouse' or 'human' from a table or a recording's subject ('Mus musculus', 'Human');
    other names come back lower-cased, and a missing value as None."""
    if value is None or pd.isna(value):
        return None
    text = str(value).strip().lower()
    if not text:
        return None
    if "mus musculus" in text or "mouse" in text:
        return "mouse"
    if "homo sapiens" in text or "human" in text:
        return "human"
    return text


@dataclass
class CellTrust:
    """One cell's call and how far to trust it."""

    specimen_id: object
    predicted: str
    prediction_set: list[str]  # most probable first
    confident: bool
    novelty: float  # NaN when nothing is measured
    flags: list[str] = field(default_factory=list)


def assess(
    specimen_ids: Sequence,
    proba: np.ndarray,
    classes: Sequence[str],
    sets: list[list[str]],
    flags: list[list[str]],
    novelty: np.ndarray,
    predicted: Sequence[str] | None = None,
) -> list[CellTrust]:
    """Combine probabilities, conformal sets, flags and novelty into per-cell records.

    The call is `predicted` when given (a default model's assignment), else the most
    probable class; `confident` and `set_excludes_call` follow `trust/agreement.py`."""
    classes = list(classes)
    if predicted is None:
        predicted = np.asarray(classes)[np.asarray(proba).argmax(axis=1)]
    records = []
    for i, sid in enumerate(specimen_ids):
        call, cell_set = str(predicted[i]), list(sets[i])
        cell_flags = call_flags(call, cell_set, flags[i])
        records.append(
            CellTrust(
                specimen_id=sid,
                predicted=call,
                prediction_set=cell_set,
                confident=is_confident(call, cell_set, cell_flags),
                novelty=float(novelty[i]),
                flags=cell_flags,
            )
        )
    return records


def trust_columns(records: list[CellTrust]) -> pd.DataFrame:
    """prediction_set, confident, novelty and flags columns of a predictions table (list
    cells joined by `schema.SET_SEPARATOR` and `schema.FLAG_SEPARATOR`)."""
    return pd.DataFrame(
        {
            "prediction_set": [SET_SEPARATOR.join(r.prediction_set) for r in records],
            "confident": [r.confident for r in records],
            "novelty": [r.novelty for r in records],
            "flags": [FLAG_SEPARATOR.join(r.flags) for r in records],
        }
    )
