"""Is a cell an interneuron at all? The `not_interneuron` flag and the batch's `lab_shift`.

Every real batch holds excitatory and failed cells, but the reference tables hold only
GABAergic interneurons, so no model trained on them can say "neither class". The detector
here is a gradient-boosted classifier of excitatory against GABAergic cells:
- excitatory cells come from the only public table here that has them, the M1 Patch-seq
  cells of Scala et al. 2021 (`datasets.scala2021`), through its crosswalk;
- GABAergic cells from both that table and the reference table, so the detector cannot
  learn "which lab" in place of "which cell class".
Class weights are balanced and the flag is raised at P(excitatory) > 0.5: no threshold is
tuned. Scored on M1, the detector must never have seen the scored mice
(`benchmarks/bench_crosslab.py` fits it on the other mice's cells).

`BatchShift` says when a whole batch differs from the reference more than the reference's
own donors differ from each other (per feature, the batch's median shift in units of the
reference IQR against the largest shift of any reference donor), so a user knows the
conformal guarantee may not hold for that batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

from ..datasets.scala2021 import m1_cells

NOT_INTERNEURON = "not_interneuron"
LAB_SHIFT = "lab_shift"
# P(excitatory) above which a cell is flagged: the balanced classifier's own decision.
DETECTOR_THRESHOLD = 0.5
# A detector needs this many features shared with its training tables.
DETECTOR_MIN_FEATURES = 4
# Reference donors with fewer cells give too noisy a median for the null of BatchShift.
DONOR_MIN_CELLS = 5
# Batches with fewer interneuron-like cells are not judged (a median of few cells is noise).
BATCH_MIN_CELLS = 20
SHIFTED_SHOWN = 3
DETECTOR_SOURCE = "M1 Patch-seq (Scala et al. 2021): excitatory vs GABAergic, plus reference cells"


@dataclass
class InterneuronDetector:
    """P(not an interneuron) of a cell from the features it shares with the training cells."""

    features: list[str]
    model: HistGradientBoostingClassifier
    source: str  # which cells trained it, for the model card
    threshold: float = DETECTOR_THRESHOLD

    @classmethod
    def fit(
        cls,
        gabaergic: list[pd.DataFrame],
        excitatory: pd.DataFrame,
        features: list[str],
        source: str,
        seed: int = 0,
    ) -> InterneuronDetector | None:
        """Fit on GABAergic tables (each a lab) against excitatory cells, over `features`
        measured in the excitatory cells; None when too few features are shared."""
        usable = [f for f in features if f in excitatory and excitatory[f].notna().mean() >= 0.5]
        usable = [f for f in usable if all(f in t and t[f].notna().any() for t in gabaergic)]
        if len(usable) < DETECTOR_MIN_FEATURES or not len(excitatory):
            return None
        negative = pd.concat([t[usable] for t in gabaergic], ignore_index=True)
        X = pd.concat([negative, excitatory[usable]], ignore_index=True).astype(float)
        y = np.r_[np.zeros(len(negative)), np.ones(len(excitatory))]
        model = HistGradientBoostingClassifier(class_weight="balanced", random_state=seed)
        return cls(usable, model.fit(X, y), source)

    def score(self, cells: pd.DataFrame) -> np.ndarray:
        """P(excitatory) per cell; NaN where none of the detector's features is measured."""
        X = cells.reindex(columns=self.features).astype(float)
        p = self.model.predict_proba(X)[:, 1]
        return np.where(X.notna().any(axis=1).to_numpy(), p, np.nan)

    def flag(self, cells: pd.DataFrame) -> np.ndarray:
        """True where the cell looks like neither interneuron class (excitatory-like)."""
        return np.nan_to_num(self.score(cells), nan=0.0) > self.threshold


@dataclass
class BatchShift:
    """Per feature: the reference median and IQR, and the largest shift of a reference
    donor's median from the other donors' (in IQR units): the null a batch is held to."""

    features: list[str]
    median: np.ndarray
    iqr: np.ndarray
    donor_max: np.ndarray

    @classmethod
    def fit(cls, cells: pd.DataFrame, features: list[str], donors) -> BatchShift:
        """From the reference cells and their donors."""
        X = cells[features].to_numpy(float)
        donors = np.asarray(donors)
        median = np.nanmedian(X, axis=0)
        iqr = np.nanquantile(X, 0.75, axis=0) - np.nanquantile(X, 0.25, axis=0)
        iqr = np.where(iqr > 0, iqr, 1.0)
        largest = np.zeros(len(features))
        for donor in pd.unique(donors):
            own = donors == donor
            if own.sum() < DONOR_MIN_CELLS:
                continue
            with np.errstate(all="ignore"):
                shift = np.abs(np.nanmedian(X[own], axis=0) - np.nanmedian(X[~own], axis=0))
            largest = np.fmax(largest, shift / iqr)
        return cls(list(features), median, iqr, largest)

    def shifts(self, cells: pd.DataFrame) -> pd.Series:
        """Per feature, the batch's median shift over the largest donor shift (> 1: beyond
        every reference donor); NaN for a feature the batch does not measure."""
        X = cells.reindex(columns=self.features).to_numpy(float)
        with np.errstate(all="ignore"):
            shift = np.abs(np.nanmedian(X, axis=0) - self.median) / self.iqr
        ratio = shift / np.where(self.donor_max > 0, self.donor_max, np.nan)
        return pd.Series(ratio, index=self.features)

    def check(self, cells: pd.DataFrame) -> str | None:
        """One line naming the most shifted features when the batch is beyond the
        reference donors (None: not shifted, or fewer than BATCH_MIN_CELLS cells)."""
        if len(cells) < BATCH_MIN_CELLS:
            return None
        ratio = self.shifts(cells).dropna().sort_values(ascending=False)
        beyond = ratio[ratio > 1]
        if beyond.empty:
            return None
        shown = ", ".join(f"{f} ({r:.1f}x)" for f, r in beyond.head(SHIFTED_SHOWN).items())
        return (
            f"{LAB_SHIFT}: this batch of {len(cells)} cells differs from the reference more "
            f"than any reference donor in {len(beyond)} feature(s), most in {shown} (batch "
            "median shift over the largest donor shift); the sets' coverage may not hold: "
            "`ephys2tx adapt` fits a model to this lab"
        )


def m1_detector(
    species: str,
    features: list[str],
    reference: pd.DataFrame,
    data_dir=None,
    mirror=None,
    exclude_donors=None,
    seed: int = 0,
    m1: pd.DataFrame | None = None,
) -> InterneuronDetector | None:
    """The `not_interneuron` detector over `features` from the M1 cells (read here unless
    given) and the reference's GABAergic cells; None for human (no excitatory human cells
    here). `exclude_donors`: M1 mice left out, so that their cells can be scored."""
    if species != "mouse":
        return None
    if m1 is None:
        m1, _ = m1_cells(data_dir, mirror)
    if exclude_donors is not None:
        m1 = m1[~m1["donor"].isin(set(exclude_donors))]
    return InterneuronDetector.fit(
        [reference, m1[m1["cell_class"] == "gabaergic"]],
        m1[m1["cell_class"] == "excitatory"],
        features,
        DETECTOR_SOURCE,
        seed,
    )
