"""Is a cell an interneuron at all? The `not_interneuron` flag and the batch's `lab_shift`.

Every real batch holds excitatory and failed cells, but the training tables hold only
GABAergic interneurons, so no model trained on them can say "neither class". The detector
here is a gradient-boosted classifier of excitatory against GABAergic cells:
- excitatory cells come from the only public table here that has them, the M1 Patch-seq
  cells of Scala et al. 2021 (`datasets.scala2021`), through its crosswalk;
- GABAergic cells from both that table and the training table, so the detector cannot
  learn "which lab" in place of "which cell class".
Class weights are balanced and the flag is raised at P(excitatory) > 0.5: no threshold is
tuned. Scored on M1, the detector must never have seen the scored mice
(`benchmarks/bench_crosslab.py` fits it on the other mice's cells).

`BatchShift` says when a whole batch differs from the training cells more than the training
cells' own donors differ from each other, so a user knows the conformal guarantee may not hold
for that batch. Per feature, each cell's residual from its class's training median (in
training IQRs, clipped to +-3) is averaged over a donor; the spread of the donors' true
shifts, tau, is the variance of these donor means less their sampling variance (a donor
has a few cells, a batch hundreds, so raw donor means would be mostly noise). A batch
whose mean residual exceeds `SHIFT_SDS` tau in some feature is shifted: with hundreds of
training donors, about the largest shift any of them shows.
"""

from __future__ import annotations

import warnings
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
# Donors with fewer cells carry no within-donor variance for the null of BatchShift.
DONOR_MIN_CELLS = 2
SHIFT_SDS = 3.0
# The least spread of donor shifts assumed (IQR units): donors that agree perfectly (as in
# simulated data) would otherwise make any batch "shifted".
TAU_FLOOR = 0.05
RESIDUAL_CLIP = 3.0
# Batches with fewer interneuron-like cells are not judged (a median of few cells is noise).
BATCH_MIN_CELLS = 20
SHIFTED_SHOWN = 3
DETECTOR_SOURCE = "M1 Patch-seq (Scala et al. 2021): excitatory vs GABAergic, plus training cells"


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
    """Per class and feature the training median, per feature the IQR and the shift
    threshold (`SHIFT_SDS` times the spread of the training donors' shifts); a batch's
    cells count by the class they are called, so its class mix is not taken for a shift."""

    features: list[str]
    classes: list[str]
    median: np.ndarray  # (classes, features)
    iqr: np.ndarray  # (features,)
    threshold: np.ndarray  # (features,) in IQR units

    @classmethod
    def fit(cls, cells: pd.DataFrame, features: list[str], donors, labels) -> BatchShift:
        """From the training cells, their donors and their classes."""
        labels = np.asarray(labels).astype(str)
        classes = sorted(set(labels))
        X = cells[features].to_numpy(float)
        with warnings.catch_warnings():  # a class that never measures a feature: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            median = np.array([np.nanmedian(X[labels == c], axis=0) for c in classes])
        iqr = np.nanquantile(X, 0.75, axis=0) - np.nanquantile(X, 0.25, axis=0)
        shift = cls(list(features), classes, median, np.where(iqr > 0, iqr, 1.0), np.zeros(0))
        residual = shift._residuals(X, labels)
        frame = pd.DataFrame(residual).assign(donor=np.asarray(donors))
        grouped = frame.groupby("donor")
        n = grouped.count()
        means, variances = grouped.mean()[n > 0], grouped.var()
        keep = n >= DONOR_MIN_CELLS
        within = (variances[keep] / n[keep]).mean()  # sampling variance of a donor's mean
        spread = (means[keep] ** 2).mean() - within  # donors' true shifts, squared
        tau = np.sqrt(np.clip(spread.to_numpy(float), 0, None))
        shift.threshold = SHIFT_SDS * np.fmax(tau, TAU_FLOOR)
        return shift

    def _residuals(self, X: np.ndarray, called: np.ndarray) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        rows = np.array([index.get(str(c), -1) for c in called])
        centre = np.where(rows[:, None] >= 0, self.median[np.maximum(rows, 0)], np.nan)
        return np.clip((X - centre) / self.iqr, -RESIDUAL_CLIP, RESIDUAL_CLIP)

    def shifts(self, cells: pd.DataFrame, called) -> pd.Series:
        """Per feature, the batch's mean residual from its called classes over the threshold
        (> 1: shifted beyond the training donors); NaN where not measured."""
        X = cells.reindex(columns=self.features).to_numpy(float)
        with warnings.catch_warnings():  # a feature the batch never measures: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            shift = np.abs(np.nanmean(self._residuals(X, np.asarray(called)), axis=0))
        return pd.Series(shift / self.threshold, index=self.features)

    def check(self, cells: pd.DataFrame, called) -> str | None:
        """One line naming the most shifted features when the batch is beyond the
        training donors (None: not shifted, or fewer than BATCH_MIN_CELLS cells)."""
        if len(cells) < BATCH_MIN_CELLS:
            return None
        ratio = self.shifts(cells, called).dropna().sort_values(ascending=False)
        beyond = ratio[ratio > 1]
        if beyond.empty:
            return None
        shown = ", ".join(f"{f} ({r:.1f}x)" for f, r in beyond.head(SHIFTED_SHOWN).items())
        return (
            f"{LAB_SHIFT}: this batch of {len(cells)} cells differs from the training cells more "
            f"than their donors do in {len(beyond)} feature(s), most in {shown} (the shift over "
            f"{SHIFT_SDS:g} times the donors' spread); the sets' coverage may not hold: "
            "`ephys2tx adapt` fits a model to this lab"
        )


def m1_detector(
    species: str,
    features: list[str],
    training: pd.DataFrame,
    data_dir=None,
    mirror=None,
    exclude_donors=None,
    seed: int = 0,
    m1: pd.DataFrame | None = None,
) -> InterneuronDetector | None:
    """The `not_interneuron` detector over `features` from the M1 cells (read here unless
    given) and the training cells' GABAergic cells; None for human (no excitatory human cells
    here). `exclude_donors`: M1 mice left out, so that their cells can be scored."""
    if species != "mouse":
        return None
    if m1 is None:
        m1, _ = m1_cells(data_dir, mirror)
    if exclude_donors is not None:
        m1 = m1[~m1["donor"].isin(set(exclude_donors))]
    return InterneuronDetector.fit(
        [training, m1[m1["cell_class"] == "gabaergic"]],
        m1[m1["cell_class"] == "excitatory"],
        features,
        DETECTOR_SOURCE,
        seed,
    )
