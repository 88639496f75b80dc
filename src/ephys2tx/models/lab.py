"""A lab model: the default model adapted to one lab's cells (`ephys2tx adapt`).

Another lab measures the same features with another rig, protocol and extractor, so each
feature is shifted and scaled (resting potential by the junction potential, widths by the
definition), and the lab's class mix is its own. A lab model is the default model behind
a per-feature affine map from the lab's values to the reference's (`FeatureShift`):

- **without labels** the map is anchored on classes, not on the batch as a whole: the
  reference calls the lab's cells, the confident calls (top probability at least
  `ANCHOR_PROBABILITY`, and not flagged `not_interneuron`) of each class are matched to the
  training cells of that class (median and IQR per class, pooled over classes), and the
  calls are made again through the new map, `ALIGN_ITERATIONS` times. Matching the batch's
  own median and IQR instead confuses a different class mix, or excitatory cells, with a
  shift of the features.
- **with labels** the labelled cells anchor the map by their own classes, and P(subclass)
  comes from the stack (below) when the lab's table carries its own columns (a crosswalked
  table), else from one of two kinds of candidate, chosen by folds of the lab's labelled
  cells grouped by its donors:
  - the labelled cells join training as the target domain (as the mouse cells join human
    training in transfer): a forest on the reference cells plus the lab's labelled cells,
    alone or averaged with the adapted reference's P(subclass) (the weight of the lab's
    cells, `LAB_WEIGHTS`, and the mix, `LAB_MIXES`);
  - the *stack*: a forest on the lab's labelled cells alone, whose inputs are all of the
    lab's own columns (`own_columns`: every numeric column of a crosswalked table, not only
    the features it shares with the reference) plus the adapted reference's P(subclass).
    With labels a lab's model is free to use what only the lab measures. It beat joint
    training on draws of M1 mice set aside for choosing, and a choice between them by a
    few dozen labelled cells' folds cost more than it gained (docs/guides/another-lab.md),
    so with the lab's own columns the stack is not chosen but used.
  P(t-type | subclass) stays the reference's. The subclass conformal sets and temperature
  are recalibrated on the lab's own labelled cells, out of fold by donor.

Which method and settings: chosen on M1 folds grouped by mouse and on Allen cells,
never on the cells a benchmark scores (`benchmarks/bench_crosslab.py`, docs/guides/another-lab.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import f1_score
from sklearn.model_selection import GroupKFold, StratifiedKFold

from ..datasets.cells import usable_features
from ..datasets.crosswalk import OWN_PREFIX
from ..errors import Ephys2txError
from ..trust.conformal import MondrianConformal
from ..trust.temperature import Temperature
from .forest import make_forest
from .hierarchy import HierarchicalClassifier, _aligned, rescale_subclass

ANCHOR_PROBABILITY = 0.7
ALIGN_ITERATIONS = 5
ANCHOR_MIN_CELLS = 5  # a class with fewer anchors does not anchor the map
SCALE_LIMITS = (0.5, 2.0)  # a lab's feature is at most twice or half as spread
LAB_WEIGHTS = (1.0, 4.0, 16.0)
# Share of the adapted reference's P(subclass) averaged into the lab forest's (0: the forest
# alone); chosen with the weight by the lab's own folds. (The adapted reference alone
# scored no better on two draws of 25% of the M1 mice, so it is not a candidate.)
LAB_MIXES = (0.0, 0.5)
LAB_FOLDS = 5
# A class's lab cells calibrate its sets only when there are this many: with n cells a class
# can be left out of a set only at alpha >= 1/(n+1), so fewer (say the 3 Sncg cells of a
# quarter of the M1 mice) would put the class in every set. Rarer classes keep the
# reference's calibration scores.
LAB_MIN_CALIBRATION = 19
ALIGN_METHODS = ("anchored", "anchored-offset", "none")
STACK = "stack"  # the labelled candidate on the lab's own columns (see the module docstring)
LAB_FOREST_TREES = 300
# A lab feature is used when at least this share of the lab's cells measure it.
LAB_FEATURE_COVERAGE = 0.5


def lab_features(lab: pd.DataFrame, reference: pd.DataFrame) -> list[str]:
    """The reference's usable features that the lab measures in most of its cells."""
    shared = [
        f for f in usable_features(reference)
        if f in lab.columns and lab[f].notna().mean() >= LAB_FEATURE_COVERAGE
    ]  # fmt: skip
    if len(shared) < 3:
        raise Ephys2txError(
            f"the lab's cells share only {len(shared)} feature(s) with the reference "
            f"({', '.join(shared) or 'none'}); a lab model needs at least 3: check the "
            "column names, or give --feature-map"
        )
    return shared


def own_columns(lab: pd.DataFrame) -> list[str]:
    """The lab's own columns (`OWN_PREFIX`, kept by the crosswalk) measured in most cells."""
    return [
        c for c in lab.columns
        if str(c).startswith(OWN_PREFIX) and lab[c].notna().mean() >= LAB_FEATURE_COVERAGE
    ]  # fmt: skip


def stack_columns(lab: pd.DataFrame, features: list[str]) -> list[str]:
    """The stack's columns: all of the lab's own columns, or the shared `features` for a
    table already in the reference's names."""
    return own_columns(lab) or list(features)


def stack_inputs(
    cells: pd.DataFrame, columns: list[str], reference_proba: np.ndarray, classes: list[str]
) -> pd.DataFrame:
    """The stack's inputs: the lab's `columns` as they are, then the adapted reference's
    P(subclass) (one column per class)."""
    X = cells.reindex(columns=columns).astype(float).reset_index(drop=True)
    P = pd.DataFrame(
        np.asarray(reference_proba, float), columns=[f"reference P({c})" for c in classes]
    )
    return pd.concat([X, P], axis=1)


@dataclass
class FeatureShift:
    """x_reference = offset + scale * x_lab, per feature; other columns pass unchanged."""

    features: list[str]
    offset: np.ndarray
    scale: np.ndarray

    @classmethod
    def identity(cls, features: list[str]) -> FeatureShift:
        return cls(list(features), np.zeros(len(features)), np.ones(len(features)))

    def to_reference(self, cells: pd.DataFrame) -> pd.DataFrame:
        """The cells with their features in the reference's terms (a copy)."""
        out = cells.copy()
        for j, f in enumerate(self.features):
            if f in out:
                out[f] = self.offset[j] + self.scale[j] * out[f].astype(float)
        return out

    def to_lab(self, cells: pd.DataFrame) -> pd.DataFrame:
        """The inverse: reference values in the lab's terms (a copy)."""
        out = cells.copy()
        for j, f in enumerate(self.features):
            if f in out:
                out[f] = (out[f].astype(float) - self.offset[j]) / self.scale[j]
        return out

    def to_dict(self) -> dict:
        return {
            f: {"offset": float(o), "scale": float(s)}
            for f, o, s in zip(self.features, self.offset, self.scale, strict=True)
        }

    def largest(self, reference: pd.DataFrame, n: int = 3) -> list[str]:
        """The n features whose map moves the lab's values most (offset in reference IQRs)."""
        iqr = reference[self.features].quantile(0.75) - reference[self.features].quantile(0.25)
        size = pd.Series(np.abs(self.offset), index=self.features) / iqr.replace(0, np.nan)
        size += pd.Series(np.abs(np.log(self.scale)), index=self.features)
        return list(size.sort_values(ascending=False).index[:n])


def class_anchored_shift(
    lab: pd.DataFrame,
    lab_class: np.ndarray,
    reference: pd.DataFrame,
    reference_class: np.ndarray,
    features: list[str],
    scale: bool = True,
) -> FeatureShift:
    """The per-feature affine map that brings each class's lab median and IQR onto the
    reference's for that class, pooled over classes with at least ANCHOR_MIN_CELLS anchors
    (`lab_class` None/NaN: not an anchor). Identity when no class anchors."""
    lab_class = pd.Series(np.asarray(lab_class, dtype=object)).where(
        pd.notna(pd.Series(lab_class, dtype=object)), None
    )
    counts = lab_class.dropna().value_counts()
    classes = [c for c, n in counts.items() if n >= ANCHOR_MIN_CELLS]
    ref_class = np.asarray(reference_class, dtype=object)
    classes = [c for c in classes if (ref_class == c).sum() >= ANCHOR_MIN_CELLS]
    shift = FeatureShift.identity(features)
    if not classes:
        return shift
    weight = np.array([counts[c] for c in classes], float)
    for j, f in enumerate(features):
        lm, lq, rm, rq, w = [], [], [], [], []
        for c, n in zip(classes, weight, strict=True):
            lv = lab[f].to_numpy(float)[(lab_class == c).to_numpy()]
            rv = reference[f].to_numpy(float)[ref_class == c]
            lv, rv = lv[np.isfinite(lv)], rv[np.isfinite(rv)]
            if len(lv) < ANCHOR_MIN_CELLS or len(rv) < ANCHOR_MIN_CELLS:
                continue
            lm.append(np.median(lv))
            rm.append(np.median(rv))
            lq.append(np.subtract(*np.quantile(lv, [0.75, 0.25])))
            rq.append(np.subtract(*np.quantile(rv, [0.75, 0.25])))
            w.append(n)
        if not w:
            continue
        lm, lq, rm, rq, w = map(np.asarray, (lm, lq, rm, rq, w))
        b = 1.0
        spread = (lq > 0) & (rq > 0)
        if scale and spread.any():
            ratio = np.average(np.log(rq[spread] / lq[spread]), weights=w[spread])
            b = float(np.clip(np.exp(ratio), *SCALE_LIMITS))
        shift.scale[j] = b
        shift.offset[j] = float(np.average(rm - b * lm, weights=w))
    return shift


def align_unlabelled(
    subclass_proba,
    lab: pd.DataFrame,
    reference: pd.DataFrame,
    reference_class: np.ndarray,
    classes: list[str],
    features: list[str],
    eligible: np.ndarray | None = None,
    method: str = "anchored",
) -> FeatureShift:
    """The lab-to-reference map without labels: anchored on the confident calls of
    `subclass_proba(cells) -> (n, len(classes))` among `eligible` cells, re-called through
    each new map (see the module docstring). `method`: one of ALIGN_METHODS."""
    if method not in ALIGN_METHODS:
        raise Ephys2txError(
            f"unknown alignment {method!r}; choose one of {', '.join(ALIGN_METHODS)}"
        )
    shift = FeatureShift.identity(features)
    if method == "none":
        return shift
    eligible = np.ones(len(lab), bool) if eligible is None else np.asarray(eligible, bool)
    names = np.asarray(classes, dtype=object)
    for _ in range(ALIGN_ITERATIONS):
        p = np.asarray(subclass_proba(shift.to_reference(lab)), float)
        anchor = eligible & (p.max(axis=1) >= ANCHOR_PROBABILITY)
        called = np.where(anchor, names[p.argmax(axis=1)], None)
        shift = class_anchored_shift(
            lab, called, reference, reference_class, features, scale=method == "anchored"
        )
    return shift


class _Replace:
    """A 'recalibration' that replaces P(subclass) by given probabilities (for
    `rescale_subclass`, which keeps each subclass's t-types in proportion)."""

    def __init__(self, proba: np.ndarray):
        self.proba = proba

    def apply(self, _: np.ndarray) -> np.ndarray:
        return self.proba


class LabModel(ClassifierMixin, BaseEstimator):
    """The default model seen through a lab's `FeatureShift`; with `subclass_estimator`
    (fitted on reference + lab cells, in reference terms) P(subclass) is that estimator's,
    or with `stack_estimator` (fitted on the lab's `stack_columns` and the adapted
    reference's P(subclass)) the stack's, temperature-scaled by `subclass_temperature`;
    P(t-type | subclass) stays the reference's. Behaves as a `HierarchicalClassifier` for
    `predict_mapping` and the trust columns."""

    def __init__(
        self,
        reference: HierarchicalClassifier | None = None,
        shift: FeatureShift | None = None,
        subclass_estimator=None,
        subclass_temperature: float = 1.0,
        mix: float = 0.0,
        stack_estimator=None,
        stack_columns: list[str] | None = None,
    ):
        self.reference = reference
        self.shift = shift
        self.subclass_estimator = subclass_estimator
        self.subclass_temperature = subclass_temperature
        self.mix = mix
        self.stack_estimator = stack_estimator
        self.stack_columns = stack_columns

    def fit(self, X=None, y=None) -> LabModel:
        """Nothing to fit: the parts are fitted by `fit_lab_model`."""
        return self

    @property
    def taxonomy(self):
        return self.reference.taxonomy

    @property
    def classes_(self) -> np.ndarray:
        return self.reference.classes_

    @property
    def subclasses_(self) -> list[str]:
        return self.reference.subclasses_

    @property
    def feature_names_in_(self) -> np.ndarray:
        """The reference's features, then the stack's own columns (so `predict` passes them)."""
        names = list(self.reference.feature_names_in_)
        extra = [c for c in (self.stack_columns or []) if c not in names]
        return np.asarray(names + extra, dtype=object)

    @property
    def subclass_estimator_(self):
        """The forest whose importances weight novelty (the lab's, else the reference's)."""
        return self.subclass_estimator or self.reference.subclass_estimator_

    def subclass_proba(self, X: pd.DataFrame) -> np.ndarray:
        """P(subclass) of cells in the lab's terms (columns `subclasses_`)."""
        return self.predict_proba_levels(X)["subclass"].to_numpy()

    def predict_proba_levels(self, X: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """{'subclass', 't_type'} distributions of cells given in the lab's terms."""
        Xr = self.shift.to_reference(X)
        levels = self.reference.predict_proba_levels(Xr)
        if self.stack_estimator is not None:
            columns = list(self.stack_columns)
            if not X.reindex(columns=columns).notna().any().any():
                raise Ephys2txError(
                    f"this lab model uses the lab's own columns ({len(columns)}, e.g. "
                    f"{columns[0].removeprefix(OWN_PREFIX)!r}) and the cells have none of them; "
                    "give a table from the same pipeline as the one `adapt` read"
                )
            est = self.stack_estimator
            inputs = stack_inputs(X, columns, levels["subclass"].to_numpy(), self.subclasses_)
            sub = _aligned(est.predict_proba(inputs), est.classes_, self.subclasses_)
        elif self.subclass_estimator is not None:
            est = self.subclass_estimator
            inputs = Xr[list(est.feature_names_in_)]
            sub = _aligned(est.predict_proba(inputs), est.classes_, self.subclasses_)
            sub = (1 - self.mix) * sub + self.mix * levels["subclass"].to_numpy()
        else:
            return levels
        sub = Temperature(self.subclass_temperature).apply(sub)
        leaves = list(levels["t_type"].columns)
        leaf_p, sub_p = rescale_subclass(
            levels["t_type"].to_numpy(), levels["subclass"].to_numpy(), leaves,
            self.taxonomy.parent, self.subclasses_, _Replace(sub),
        )  # fmt: skip
        return {
            "subclass": pd.DataFrame(sub_p, index=X.index, columns=self.subclasses_),
            "t_type": pd.DataFrame(leaf_p, index=X.index, columns=leaves),
        }

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict_proba_levels(X)["t_type"].to_numpy()

    def assign(self, leaf_p: np.ndarray):
        return self.reference.assign(leaf_p)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.assign(self.predict_proba(X))[1]


@dataclass
class LabFit:
    """A fitted lab model and what calibrates its sets and flags."""

    model: LabModel
    calibration: dict[str, MondrianConformal]  # per level
    details: dict = field(default_factory=dict)  # method, anchors, weights, shifted features
    # out-of-fold top subclass probability of the lab's labelled cells (None: unlabelled)
    top_probability: np.ndarray | None = None
    calibration_cells: np.ndarray | None = None  # which lab cells calibrated the sets


def _lab_forest(
    reference: pd.DataFrame, reference_y, lab: pd.DataFrame, lab_y, weight: float, features,
    seed: int,
):  # fmt: skip
    X = pd.concat([reference[features], lab[features]], ignore_index=True)
    y = np.r_[np.asarray(reference_y, dtype=object), np.asarray(lab_y, dtype=object)].astype(str)
    w = np.r_[np.ones(len(reference)), np.full(len(lab), weight)]
    forest = make_forest(seed, n_estimators=LAB_FOREST_TREES, n_jobs=1)
    return forest.fit(X, y, sample_weight=w)


def _stack_forest(
    cells: pd.DataFrame, columns: list[str], reference_proba: np.ndarray, y, classes, seed: int
):  # fmt: skip
    forest = make_forest(seed, n_estimators=LAB_FOREST_TREES, n_jobs=1)
    return forest.fit(stack_inputs(cells, columns, reference_proba, classes), np.asarray(y, str))


def _lab_folds(y: np.ndarray, donors: np.ndarray | None, seed: int) -> list:
    if donors is not None and len(set(donors)) >= 2:
        n = min(LAB_FOLDS, len(set(donors)))
        return list(GroupKFold(n).split(np.zeros(len(y)), y, donors))
    n = int(min(LAB_FOLDS, pd.Series(y).value_counts().min()))
    if n < 2:
        raise Ephys2txError(
            "the labelled cells are too few to calibrate on (each class needs 2 cells, or "
            "give a donor column); label more cells or adapt without labels"
        )
    return list(StratifiedKFold(n, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def _lab_calibration(
    proba: np.ndarray, y: np.ndarray, classes: list[str], reference: MondrianConformal
) -> tuple[MondrianConformal, list[str]]:
    """Mondrian scores from the lab's out-of-fold probabilities for the classes with at
    least LAB_MIN_CALIBRATION lab cells, the reference's stored scores for the others.
    Returns the calibration and the classes calibrated on lab cells."""
    counts = pd.Series(y).value_counts()
    own = [c for c in classes if counts.get(c, 0) >= LAB_MIN_CALIBRATION]
    lab = MondrianConformal.fit(proba, y, classes)
    take_lab = np.isin(lab.labels, own)
    take_ref = ~np.isin(reference.labels, own)
    scores = np.r_[lab.scores[take_lab], reference.scores[take_ref]]
    labels = np.r_[lab.labels[take_lab], reference.labels[take_ref]]
    return MondrianConformal(list(classes), scores, labels), own


def fit_lab_model(
    reference: HierarchicalClassifier,
    reference_calibration: dict[str, MondrianConformal],
    default_training_cells: pd.DataFrame,
    reference_label: str,
    lab: pd.DataFrame,
    lab_labels: pd.Series | None = None,
    lab_donors: pd.Series | None = None,
    eligible: np.ndarray | None = None,
    method: str = "anchored",
    seed: int = 0,
) -> LabFit:
    """Adapt a fitted default model to a lab's cells (features in the lab's terms).

    `lab_labels`: subclass per lab cell (NaN: unlabelled); none labelled means the
    unlabelled method. `eligible`: cells that may anchor the map (not `not_interneuron`)."""
    features = [f for f in reference.feature_names_in_ if f in lab.columns]
    classes = list(reference.subclasses_)
    ref_y = default_training_cells[reference_label].to_numpy(dtype=object)
    labelled = _labelled(lab, lab_labels, classes)
    if not labelled.any():
        inputs = list(reference.feature_names_in_)

        def subclass_proba(cells: pd.DataFrame) -> np.ndarray:
            return reference.predict_proba_levels(cells.reindex(columns=inputs))[
                "subclass"
            ].to_numpy()

        shift = align_unlabelled(
            subclass_proba, lab, default_training_cells, ref_y, classes, features, eligible, method
        )
        details = {"method": f"unlabelled, {method}", "lab_cells": int(len(lab))}
        return LabFit(LabModel(reference, shift), dict(reference_calibration), details)
    y = lab_labels[labelled].astype(str).to_numpy()
    cells = lab[labelled].reset_index(drop=True)
    donors = None if lab_donors is None else lab_donors[labelled].astype(str).to_numpy()
    folds = _lab_folds(y, donors, seed)
    columns = stack_columns(lab, features)
    data = _LabData(reference, default_training_cells, ref_y, features, classes, seed)
    mixed = data.out_of_fold(cells, y, folds, columns, joint=not own_columns(lab))
    names = np.asarray(classes, dtype=object)
    scores = {k: f1_score(y, names[p.argmax(axis=1)], average="macro") for k, p in mixed.items()}
    order = {k: i for i, k in enumerate(mixed)}  # on a tie: joint training, then the stack
    chosen = max(mixed, key=lambda k: (round(scores[k], 6), -order[k]))
    temperature = Temperature.fit(mixed[chosen], y, classes)
    scaled = temperature.apply(mixed[chosen])
    calibration = dict(reference_calibration)
    calibration["subclass"], own = _lab_calibration(
        scaled, y, classes, reference_calibration["subclass"]
    )
    model = data.final_model(chosen, cells, y, columns, temperature.temperature)
    label = {k: STACK if k == STACK else f"weight {k[0]:g}, mix {k[1]:g}" for k in mixed}
    details = {
        "method": (
            "labelled: a forest on the lab's own columns and the adapted reference's "
            "P(subclass), sets recalibrated on the lab's cells"
            if chosen == STACK
            else "labelled: lab cells join training, sets recalibrated on them"
        ),
        "lab_cells": int(len(lab)),
        "labelled_cells": int(labelled.sum()),
        "subclass_model": label[chosen],
        "lab_weight": None if chosen == STACK else chosen[0],
        "reference_mix": None if chosen == STACK else chosen[1],
        "stack_columns": len(columns),
        "inner_macro_f1": {label[k]: round(float(s), 4) for k, s in scores.items()},
        "calibration_folds": len(folds),
        "calibrated_on_lab_cells": own,
        "grouped_by_donor": donors is not None and len(set(donors)) >= 2,
    }
    return LabFit(model, calibration, details, scaled.max(axis=1), np.flatnonzero(labelled))


def _labelled(lab: pd.DataFrame, lab_labels: pd.Series | None, classes: list[str]) -> np.ndarray:
    """Which lab cells carry a label; labels that name no class of the model are refused."""
    if lab_labels is None:
        return np.zeros(len(lab), bool)
    labelled = lab_labels.notna().to_numpy()
    unknown = sorted(set(lab_labels[labelled].astype(str)) - set(classes))
    if unknown:
        raise Ephys2txError(
            f"lab labels {', '.join(unknown)} are not classes of the reference "
            f"({', '.join(classes)}); rename them or leave those cells unlabelled"
        )
    return labelled


@dataclass
class _LabData:
    """The default model and its training cells, as the labelled candidates use them."""

    reference: HierarchicalClassifier
    training: pd.DataFrame
    ref_y: np.ndarray
    features: list[str]
    classes: list[str]
    seed: int

    def out_of_fold(self, cells, y, folds, stack_columns, joint: bool) -> dict:
        """Each candidate's out-of-fold P(subclass) on the labelled lab cells, in order of
        preference: joint training per (weight, mix) when `joint`, then the stack."""
        classes, features, seed = self.classes, self.features, self.seed
        weights = LAB_WEIGHTS if joint else ()
        oof = {w: np.zeros((len(y), len(classes))) for w in weights}
        adapted = np.zeros((len(y), len(classes)))  # the adapted reference alone, out of fold
        stacked = np.zeros((len(y), len(classes)))
        for train, test in folds:
            shift = class_anchored_shift(
                cells.iloc[train], y[train], self.training, self.ref_y, features
            )
            adapted_model = LabModel(self.reference, shift)
            adapted[test] = adapted_model.subclass_proba(cells.iloc[test])
            stack = _stack_forest(
                cells.iloc[train], stack_columns, adapted_model.subclass_proba(cells.iloc[train]),
                y[train], classes, seed,
            )  # fmt: skip
            stack_X = stack_inputs(cells.iloc[test], stack_columns, adapted[test], classes)
            stacked[test] = _aligned(stack.predict_proba(stack_X), stack.classes_, classes)
            for w in weights:
                forest = _lab_forest(
                    self.training, self.ref_y, shift.to_reference(cells.iloc[train]), y[train], w,
                    features, seed,
                )  # fmt: skip
                test_X = shift.to_reference(cells.iloc[test])[features]
                oof[w][test] = _aligned(forest.predict_proba(test_X), forest.classes_, classes)
        mixed = {(w, m): (1 - m) * oof[w] + m * adapted for w in weights for m in LAB_MIXES}
        mixed[STACK] = stacked
        return mixed

    def final_model(self, chosen, cells, y, stack_columns, temperature: float) -> LabModel:
        """The chosen candidate fitted on all labelled lab cells."""
        shift = class_anchored_shift(cells, y, self.training, self.ref_y, self.features)
        if chosen == STACK:
            reference_p = LabModel(self.reference, shift).subclass_proba(cells)
            stack = _stack_forest(cells, stack_columns, reference_p, y, self.classes, self.seed)
            return LabModel(
                self.reference, shift, None, temperature, 0.0, stack, list(stack_columns)
            )
        weight, mix = chosen
        forest = _lab_forest(
            self.training, self.ref_y, shift.to_reference(cells), y, weight, self.features,
            self.seed,
        )  # fmt: skip
        return LabModel(self.reference, shift, forest, temperature, mix)
