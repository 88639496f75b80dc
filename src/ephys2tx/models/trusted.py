"""A saved model with what it takes to trust its calls: calibration, training summary,
fingerprint; and the one trust pipeline every model goes through.

`fit_trust` turns the training cells (and, calibrated, the donor-grouped out-of-fold
probabilities of `trust.calibrate`) into a `Trust` record: per-level conformal scores,
temperature, and the training-cell summary (ranges, families, novelty baseline, species
fingerprint, interneuron detector, batch shift, the combined `novel` flag). `save_trained`
writes model, card and trust into a directory that appears only when complete. `train`,
`reproduce`, the default model and `adapt` all save through it; `evaluate` fits the same
`fit_trust` inside each outer fold.

Beside `model.json` and `model.skops` a model directory holds
- `calibration.json`: the Mondrian conformal scores per level (a flat model: one level
  named by its label; the hierarchical model: `subclass` and `t_type`) and the temperature
  fitted on the same out-of-fold probabilities;
- `training.npz`: ranges, families, few-feature threshold and the novelty baseline of
  the training cells;
- `species.skops`: the species fingerprint (mouse vs human public cells);
- `interneuron.skops`: the `not_interneuron` detector, when the model has one.

All are read without running code from the directory (JSON, npz without pickles, and
skops with the trusted types of `bundle.TRUSTED_TYPES`).

```python
from ephys2tx.models.trusted import TrustedModel
model = TrustedModel.load("results/models/rf-human")
table, missing = model.predict_table(cells, alpha=0.1)   # predicted, p_*, sets, flags
sets = model.predict_set(cells, alpha=0.05)              # [["Pvalb"], ["Sst", "Vip"], ...]
```
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import Ephys2txError
from ..files import atomic_write, atomic_write_text
from ..threads import predicting
from ..trust.assess import TrainingSummary, assess, trust_columns
from ..trust.calibrate import Calibration, OutOfFold, calibrate
from ..trust.conformal import MondrianConformal, check_alpha
from ..trust.interneuron import BatchShift, InterneuronDetector
from ..trust.novelty import NovelFlag, NoveltyBaseline
from ..trust.species import SpeciesFingerprint
from ..trust.temperature import Temperature
from ..version import __version__
from .bundle import (
    CALIBRATION_FILE,
    HIERARCHICAL,
    INTERNEURON_FILE,
    RETRAIN,
    SPECIES_FILE,
    TRAINING_SUMMARY_FILE,
    ModelCard,
    align_features,
    families_of,
    load_model,
    new_model_dir,
    proba_table,
    read_skops,
    write_model,
    write_skops,
)

# Donor-grouped folds of the out-of-fold scores that calibrate every saved model.
CALIBRATION_FOLDS = 5
# The smallest training set whose calibration means something: cells and donors per class
# (each class must reach the held-out folds), and donors in all (one per fold at least).
MIN_CELLS_PER_CLASS = 5
MIN_DONORS_PER_CLASS = 2


def check_trainable(cells: pd.DataFrame, label: str, calibrate: bool = True) -> None:
    """Refuse, before any fitting, a training set too small to fit or calibrate: a single
    class, a class with fewer than `MIN_CELLS_PER_CLASS` cells or `MIN_DONORS_PER_CLASS`
    donors, or (calibrating) fewer donors than calibration folds."""
    y = cells[label].astype(str)
    counts = y.value_counts()
    if len(counts) < 2:
        raise Ephys2txError(
            f"training needs at least 2 classes in {label!r}; the {len(cells)} cells hold "
            f"{len(counts)} ({', '.join(counts.index[:3]) or 'none'}); give more cells or another label"
        )
    few = counts[counts < MIN_CELLS_PER_CLASS]
    if len(few):
        shown = ", ".join(f"{c} {n}" for c, n in few.items())
        raise Ephys2txError(
            f"too few cells to train: every class needs at least {MIN_CELLS_PER_CLASS} cells "
            f"(cells per class: {shown}); drop those classes or add cells"
        )
    if "donor" not in cells.columns:
        return
    donors = cells.groupby(y.to_numpy())["donor"].nunique()
    few = donors[donors < MIN_DONORS_PER_CLASS] if calibrate else donors[:0]
    if len(few):
        shown = ", ".join(f"{c} {n}" for c, n in few.items())
        raise Ephys2txError(
            f"too few donors to calibrate: every class needs cells of at least "
            f"{MIN_DONORS_PER_CLASS} donors (donors per class: {shown}); add cells, or train "
            "with --no-calibrate"
        )
    n_donors = cells["donor"].nunique()
    if calibrate and n_donors < CALIBRATION_FOLDS:
        raise Ephys2txError(
            f"too few donors to calibrate: {n_donors} donors for {CALIBRATION_FOLDS} "
            "donor-grouped folds; add cells, or train with --no-calibrate"
        )


def feature_weights(model, features: list[str]) -> np.ndarray | None:
    """Impurity importances of a fitted forest (mean 1) for the novelty distance, else None."""
    importances = getattr(model, "feature_importances_", None)
    names = getattr(model, "feature_names_in_", None)
    if importances is None or names is None or list(names) != list(features):
        return None
    return np.asarray(importances, float) * len(features)


def fit_training_summary(
    cells: pd.DataFrame,
    features: list[str],
    species: str,
    other: dict[str, pd.DataFrame] | None = None,
    seed: int = 0,
    model=None,
    weights: np.ndarray | None = None,
) -> TrainingSummary:
    """Ranges, families, novelty baseline and (given other species' cells) fingerprint.

    The novelty distance's feature weights are `weights`, else those of `model` (fitted)
    where it has them."""
    fingerprint = None
    if other:
        fingerprint = SpeciesFingerprint.fit({species: cells, **other}, features, seed, species)
    if weights is None and model is not None:
        weights = feature_weights(model, features)
    return TrainingSummary.fit(
        cells, features, families_of(features), species, cells["donor"].to_numpy(),
        fingerprint, weights,
    )  # fmt: skip


@dataclass
class Trust:
    """What a saved model needs beside its estimator to say how far to trust a call."""

    summary: TrainingSummary | None  # None: a model saved without one
    # the Mondrian conformal scores per level ({}: uncalibrated)
    conformal: dict[str, MondrianConformal] = field(default_factory=dict)
    # fitted on the first level's out-of-fold probabilities (None: uncalibrated)
    temperature: Temperature | None = None
    folds: int | None = None  # donor-grouped calibration folds
    seed: int = 0
    # each training cell's out-of-fold top probability (first level, temperature applied),
    # kept so that a saved fit can be reused (`default_model.fit_from_model_dir`)
    top_probability: np.ndarray | None = None

    @property
    def calibrated(self) -> bool:
        return bool(self.conformal)


def fit_trust(
    cells: pd.DataFrame,
    species: str,
    features: list[str],
    calibration: Calibration | None = None,
    *,
    other: dict[str, pd.DataFrame] | None = None,
    seed: int = 0,
    model=None,
    weights: np.ndarray | None = None,
    interneuron: InterneuronDetector | None = None,
    shift_label: str | None = None,
    folds: int | None = None,
) -> Trust:
    """The trust of a model trained on `cells` (`features`: the columns it reads).

    `calibration` (`trust.calibrate` on the training cells' donor-grouped out-of-fold
    probabilities; None: uncalibrated) gives the per-level conformal scores and the
    temperature, and calibrates the combined `novel` flag. `other` maps other species to
    their public cells (the species fingerprint); the novelty distance is weighted by
    `weights`, else by `model`'s impurity importances where it has them. `interneuron` is the
    `not_interneuron` detector; `shift_label` names the class column the batch-wide
    `lab_shift` null is fitted with (None: no `lab_shift`)."""
    summary = fit_training_summary(cells, features, species, other, seed, model, weights)
    donors = cells["donor"].to_numpy()
    if calibration is not None:  # the combined `novel` flag
        summary.with_novel_flag(donors, calibration.top_probability)
    summary.interneuron = interneuron
    if shift_label is not None:
        summary.batch_shift = BatchShift.fit(cells, features, donors, cells[shift_label].to_numpy())
    if calibration is None:
        return Trust(summary, seed=seed)
    return Trust(
        summary, calibration.conformal, calibration.temperature, folds, seed,
        calibration.top_probability,
    )  # fmt: skip


def fit_flat_trust(
    estimator,
    model,
    cells: pd.DataFrame,
    label: str,
    species: str,
    features: list[str] | None,
    *,
    other: dict[str, pd.DataFrame] | None = None,
    cv=None,
    seed: int = 0,
    scaling: bool = True,
) -> Trust:
    """`fit_trust` of a flat classifier: `estimator` is the unfitted model (refitted on each
    fold of the donor-grouped splitter `cv`; None: uncalibrated), `model` the fitted one,
    `features` the columns the estimator takes (None: the whole table); `scaling` fits a
    temperature (else T = 1)."""
    from sklearn.base import clone

    calibration = None
    if cv is not None:
        X = cells[features] if features is not None else cells
        oof = OutOfFold.flat(
            clone(estimator), X, cells[label], cells["donor"].to_numpy(), cv, label
        )
        calibration = calibrate(oof, scaling)
    return fit_trust(
        cells, species, model_features(model, features), calibration, other=other, seed=seed,
        model=model, folds=cv.get_n_splits() if cv is not None else None,
    )  # fmt: skip


def model_features(model, features: list[str] | None) -> list[str]:
    """The columns a fitted model reads (networks say so themselves)."""
    if hasattr(model, "used_features"):
        return list(model.used_features())
    if features is not None:
        return list(features)
    return [str(c) for c in model.feature_names_in_]


def save_trained(model_dir: str | Path, estimator, card: ModelCard, trust: Trust | None) -> Path:
    """Write model, card and trust (None: none) into a directory that appears at `model_dir`
    only when complete (`bundle.new_model_dir`)."""
    with new_model_dir(model_dir) as folder:
        write_model(folder, estimator, card)
        if trust is not None:
            write_trust(folder, trust, card)
    return Path(model_dir)


def write_trust(folder: Path, trust: Trust, card: ModelCard) -> None:
    """The trust files of a model directory being written (each atomically)."""
    if trust.calibrated:
        payload = {
            "levels": {level: c.to_dict() for level, c in trust.conformal.items()},
            "temperature": trust.temperature.temperature if trust.temperature else 1.0,
            # the hierarchical model applies its subclass temperature itself
            "temperature_in_estimator": card.kind == HIERARCHICAL,
            "folds": trust.folds,
            "seed": trust.seed,
            "top_probability": None
            if trust.top_probability is None
            else [float(p) for p in trust.top_probability],
            "version": __version__,
        }
        atomic_write_text(folder / CALIBRATION_FILE, json.dumps(payload))
    if trust.summary is not None:
        write_training_summary(folder, trust.summary)


def write_training_summary(folder: Path, summary: TrainingSummary) -> None:
    """training.npz, and the fingerprint and detector where the summary has them."""
    meta = {
        "species": summary.species,
        "features": summary.features,
        "required_families": summary.required_families,
        "min_measured": summary.min_measured,
    }
    shift = summary.batch_shift
    arrays = {}
    if shift is not None:
        meta["batch_shift_features"] = shift.features
        meta["batch_shift_classes"] = shift.classes
        arrays.update(
            batchshift_median=shift.median, batchshift_iqr=shift.iqr,
            batchshift_threshold=shift.threshold,
        )  # fmt: skip
    arrays.update({f"novelty_{k}": v for k, v in summary.novelty.to_arrays().items()})
    if summary.novel_flag is not None:
        arrays.update({f"novelflag_{k}": v for k, v in summary.novel_flag.to_arrays().items()})
    arrays.update(low=summary.low, high=summary.high, meta=np.asarray(json.dumps(meta)))

    def write_npz(path: Path) -> None:
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    atomic_write(folder / TRAINING_SUMMARY_FILE, write_npz)
    if summary.fingerprint is not None:
        write_skops(folder / SPECIES_FILE, summary.fingerprint)
    if summary.interneuron is not None:
        write_skops(folder / INTERNEURON_FILE, summary.interneuron)


def load_calibration(model_dir: Path) -> Trust:
    """The stored per-level conformal scores, temperature and out-of-fold top probabilities
    (without the training summary; {} and None: uncalibrated)."""
    path = model_dir / CALIBRATION_FILE
    if not path.is_file():
        return Trust(None)
    try:
        stored = json.loads(path.read_text())
        conformal = {
            str(level): MondrianConformal.from_dict(c) for level, c in stored["levels"].items()
        }
        temperature = Temperature(float(stored["temperature"]))
        top = stored.get("top_probability")
        top = np.asarray(top, float) if top is not None else None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise Ephys2txError(f"{path} is damaged ({exc}); {RETRAIN}") from exc
    return Trust(None, conformal, temperature, stored.get("folds"), stored.get("seed", 0), top)


def load_trust(model_dir: str | Path, classes: dict[str, list[str]]) -> Trust:
    """The stored trust of a model directory; `classes` are the estimator's classes per
    level, which the stored calibration must match (else it belongs to another model)."""
    model_dir = Path(model_dir)
    trust = load_calibration(model_dir)
    for level, c in trust.conformal.items():
        if level not in classes or sorted(c.classes) != sorted(classes[level]):
            raise Ephys2txError(
                f"{model_dir / CALIBRATION_FILE} belongs to another model (level {level!r}, "
                f"classes {c.classes}); {RETRAIN}"
            )
    trust.summary = load_training_summary(model_dir)
    return trust


def load_training_summary(model_dir: Path) -> TrainingSummary | None:
    """The stored training summary, or None for a model saved without one (e.g. by `reproduce`
    without stored trust). The npz is read without pickles."""
    if not (model_dir / TRAINING_SUMMARY_FILE).is_file():
        return None
    with np.load(model_dir / TRAINING_SUMMARY_FILE, allow_pickle=False) as a:
        meta = json.loads(str(a["meta"]))
        novelty = NoveltyBaseline.from_arrays(
            {k[len("novelty_") :]: a[k] for k in a.files if k.startswith("novelty_")}
        )
        low, high = a["low"], a["high"]
        novel_flag = None  # uncalibrated models: the kNN-only novelty flag
        if "novelflag_threshold" in a.files:
            novel_flag = NovelFlag.from_arrays(
                {k[len("novelflag_") :]: a[k] for k in a.files if k.startswith("novelflag_")}
            )
        batch_shift = None
        if "batchshift_median" in a.files:
            batch_shift = BatchShift(
                meta["batch_shift_features"], meta["batch_shift_classes"], a["batchshift_median"],
                a["batchshift_iqr"], a["batchshift_threshold"],
            )  # fmt: skip
    fingerprint = _read_part(model_dir / SPECIES_FILE, "species fingerprint", SpeciesFingerprint)
    detector = _read_part(model_dir / INTERNEURON_FILE, "interneuron detector", InterneuronDetector)
    return TrainingSummary(
        species=meta["species"],
        features=meta["features"],
        low=low,
        high=high,
        required_families=meta["required_families"],
        min_measured=int(meta["min_measured"]),
        novelty=novelty,
        fingerprint=fingerprint,
        novel_flag=novel_flag,
        interneuron=detector,
        batch_shift=batch_shift,
    )


def _read_part(path: Path, what: str, kind: type):
    """An optional skops part of the training summary (None when absent), of type `kind`."""
    if not path.is_file():
        return None
    part = read_skops(path, what)
    if not isinstance(part, kind):
        raise Ephys2txError(f"{path} holds no {what} (a {type(part).__name__}); {RETRAIN}")
    return part


@dataclass
class TrustedModel:
    """A flat classifier with its trust: probabilities, sets, flags and novelty.

    (The hierarchical model is served by `ephys2tx.predictor.Predictor`.)"""

    estimator: object
    card: ModelCard
    conformal: MondrianConformal | None = None
    temperature: Temperature | None = None
    summary: TrainingSummary | None = None

    @classmethod
    def load(cls, model_dir: str | Path) -> TrustedModel:
        """Read a model directory written by `ephys2tx train rf|bilstm|transfer`."""
        model_dir = Path(model_dir)
        estimator, card = load_model(model_dir)
        trust = load_trust(model_dir, {card.label: [str(c) for c in estimator.classes_]})
        conformal = trust.conformal.get(card.label)
        return cls(estimator, card, conformal, trust.temperature, trust.summary)

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.estimator.classes_]

    def predict_proba(self, cells: pd.DataFrame) -> np.ndarray:
        """Class probabilities (columns = `classes`), temperature-scaled when calibrated."""
        X, _ = align_features(cells, self.card.features)
        with predicting():
            proba = np.asarray(self.estimator.predict_proba(X), float)
        return self.temperature.apply(proba) if self.temperature is not None else proba

    def predict_set(self, cells: pd.DataFrame, alpha: float = 0.1) -> list[list[str]]:
        """Conformal prediction set of each cell at level alpha, most probable first."""
        return self._sets(self.predict_proba(cells), check_alpha(alpha))

    def _sets(self, proba: np.ndarray, alpha: float) -> list[list[str]]:
        if self.conformal is None:
            raise Ephys2txError(
                "this model has no stored calibration; retrain it without --no-calibrate"
            )
        order = [self.classes.index(c) for c in self.conformal.classes]
        return self.conformal.predict_set(proba[:, order], alpha)

    def predict_table(
        self, cells: pd.DataFrame, alpha: float = 0.1
    ) -> tuple[pd.DataFrame, list[str]]:
        """The predictions table and the model columns the input lacked (treated as NaN).

        Columns: specimen_id, predicted, p_<Class>, prediction_set, confident, novelty,
        flags. Without stored calibration the set is empty and no call is confident."""
        alpha = check_alpha(alpha)
        _, missing = align_features(cells, self.card.features)
        proba = self.predict_proba(cells)
        out = proba_table(cells["specimen_id"].to_numpy(), proba, self.classes)
        sets = self._sets(proba, alpha) if self.conformal is not None else None
        trust = trust_table(cells, proba, self.classes, sets, self.summary)
        return pd.concat([out, trust], axis=1), missing


def trust_table(
    cells: pd.DataFrame,
    proba: np.ndarray,
    classes: list[str],
    sets: list[list[str]] | None,
    summary: TrainingSummary | None,
    predicted=None,
) -> pd.DataFrame:
    """prediction_set, confident, novelty and flags of each cell, given its class
    probabilities and conformal sets (None: uncalibrated, so empty sets and nothing
    confident) and its call (`predicted`; default the most probable class); without a
    stored training summary there is no novelty and no input flag."""
    n = len(cells)
    if summary is not None:
        proba = np.asarray(proba, float)
        called = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
        novelty, flags = summary.assess_cells(cells, proba.max(axis=1), called)
    else:
        novelty, flags = np.full(n, np.nan), [[] for _ in range(n)]
    sets = sets if sets is not None else [[] for _ in range(n)]
    ids = cells["specimen_id"].to_numpy()
    records = assess(ids, proba, classes, sets, flags, novelty, predicted)
    return trust_columns(records)
