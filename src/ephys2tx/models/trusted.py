"""A saved model with what it takes to trust its calls: calibration, reference, fingerprint.

Beside `model.json` and `model.skops` a model directory holds
- `calibration.json`: the Mondrian conformal scores (donor-grouped out of fold) and the
  temperature fitted on the same out-of-fold probabilities;
- `training.npz`: ranges, families, few-feature threshold and the novelty baseline of
  the training cells;
- `species.skops`: the species fingerprint (mouse vs human public cells).

All three are read without running code from the directory (JSON, npz without pickles, and
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import Ephys2txError
from ..files import atomic_write, atomic_write_text
from ..threads import limit, predicting
from ..trust.assess import TrainingSummary, assess, trust_columns
from ..trust.conformal import MondrianConformal, check_alpha, out_of_fold_proba
from ..trust.interneuron import BatchShift, InterneuronDetector
from ..trust.novelty import NovelFlag, NoveltyBaseline
from ..trust.species import SpeciesFingerprint
from ..trust.temperature import Temperature
from ..version import __version__
from .bundle import (
    CALIBRATION_FILE,
    RETRAIN,
    SPECIES_FILE,
    TRAINING_SUMMARY_FILE,
    ModelCard,
    align_features,
    families_of,
    load_model,
    proba_table,
    read_skops,
    write_skops,
)

# Donor-grouped folds of the out-of-fold scores that calibrate every saved model.
CALIBRATION_FOLDS = 5
INTERNEURON_FILE = "interneuron.skops"  # the `not_interneuron` detector, when the model has one
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


def fit_calibration(
    estimator, X: pd.DataFrame, y, groups, cv, n_jobs: int = 1
) -> tuple[MondrianConformal, Temperature]:
    """Temperature and Mondrian scores from one set of donor-grouped out-of-fold probabilities."""
    conformal, temperature, _ = fit_calibration_oof(estimator, X, y, groups, cv, n_jobs)
    return conformal, temperature


def fit_calibration_oof(
    estimator, X: pd.DataFrame, y, groups, cv, n_jobs: int = 1
) -> tuple[MondrianConformal, Temperature, np.ndarray]:
    """As `fit_calibration`, plus the temperature-scaled out-of-fold probabilities (rows of
    X, columns the sorted classes), which also calibrate the `novel` flag."""
    y = np.asarray(y).astype(str)
    classes = sorted(set(y))
    oof = out_of_fold_proba(estimator, X, y, groups, cv, n_jobs)
    temperature = Temperature.fit(oof, y, classes)
    scaled = temperature.apply(oof)
    return MondrianConformal.fit(scaled, y, classes), temperature, scaled


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


def save_trust(
    model_dir: str | Path,
    reference: TrainingSummary,
    calibration: tuple[MondrianConformal, Temperature] | None = None,
    **details,
) -> None:
    """Write the calibration (if any), the reference and the fingerprint; each atomically.

    A calibration or fingerprint not given is removed, so a model retrained into the same
    folder never inherits the scores of the model it replaced."""
    model_dir = Path(model_dir)
    if calibration is None:
        (model_dir / CALIBRATION_FILE).unlink(missing_ok=True)
    else:
        conformal, temperature = calibration
        payload = {
            "conformal": conformal.to_dict(),
            "temperature": temperature.temperature,
            "version": __version__,
            **details,
        }
        atomic_write_text(model_dir / CALIBRATION_FILE, json.dumps(payload))
    meta = {
        "species": reference.species,
        "features": reference.features,
        "required_families": reference.required_families,
        "min_measured": reference.min_measured,
    }
    novel_flag = getattr(reference, "novel_flag", None)
    shift = getattr(reference, "batch_shift", None)
    if shift is not None:
        meta["batch_shift_features"] = shift.features
        meta["batch_shift_classes"] = shift.classes
    arrays = {
        **(
            {
                "batchshift_median": shift.median,
                "batchshift_iqr": shift.iqr,
                "batchshift_threshold": shift.threshold,
            }
            if shift is not None
            else {}
        ),  # fmt: skip
        **{f"novelty_{k}": v for k, v in reference.novelty.to_arrays().items()},
        **{f"novelflag_{k}": v for k, v in (novel_flag.to_arrays() if novel_flag else {}).items()},
        "low": reference.low,
        "high": reference.high,
        "meta": np.asarray(json.dumps(meta)),
    }

    def write_npz(path: Path) -> None:
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    atomic_write(model_dir / TRAINING_SUMMARY_FILE, write_npz)
    if reference.fingerprint is not None:
        write_skops(model_dir / SPECIES_FILE, reference.fingerprint)
    else:
        (model_dir / SPECIES_FILE).unlink(missing_ok=True)
    detector = getattr(reference, "interneuron", None)
    if detector is not None:
        write_skops(model_dir / INTERNEURON_FILE, detector)
    else:
        (model_dir / INTERNEURON_FILE).unlink(missing_ok=True)


def store_trust(
    out: str | Path,
    estimator,
    model,
    cells: pd.DataFrame,
    label: str,
    species: str,
    features: list[str] | None,
    other: dict[str, pd.DataFrame] | None,
    cv=None,
    seed: int = 0,
) -> tuple[MondrianConformal, Temperature] | None:
    """Fit and write what `predict` needs beside a saved model: reference and fingerprint,
    and, given a donor-grouped splitter `cv` (None: uncalibrated), the calibration from
    out-of-fold fits.

    `estimator` is the unfitted model (refitted per fold), `model` the fitted one;
    `features` are the columns the estimator takes (None: the whole table)."""
    from sklearn.base import clone

    used = model.used_features() if hasattr(model, "used_features") else list(features)
    with limit():
        reference = fit_training_summary(cells, used, species, other, seed, model)
        calibration = None
        if cv is not None:
            X = cells[features] if features is not None else cells
            y, donors = cells[label].to_numpy(), cells["donor"].to_numpy()
            conformal, temperature, oof = fit_calibration_oof(clone(estimator), X, y, donors, cv)
            calibration = (conformal, temperature)
            reference.with_novel_flag(donors, oof.max(axis=1))  # the combined `novel` flag
    if calibration is not None:
        save_trust(out, reference, calibration, folds=cv.get_n_splits(), seed=seed)
    else:
        save_trust(out, reference, None, seed=seed)
    return calibration


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
    fingerprint = None
    if (model_dir / SPECIES_FILE).is_file():
        fingerprint = read_skops(model_dir / SPECIES_FILE, "species fingerprint")
        if not isinstance(fingerprint, SpeciesFingerprint):
            raise Ephys2txError(
                f"{model_dir / SPECIES_FILE} is not a species fingerprint; {RETRAIN}"
            )
    detector = None
    if (model_dir / INTERNEURON_FILE).is_file():
        detector = read_skops(model_dir / INTERNEURON_FILE, "interneuron detector")
        if not isinstance(detector, InterneuronDetector):
            raise Ephys2txError(
                f"{model_dir / INTERNEURON_FILE} is not an interneuron detector; {RETRAIN}"
            )
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


@dataclass
class TrustedModel:
    """Estimator + card + calibration + reference: probabilities, sets, flags and novelty."""

    estimator: object
    card: ModelCard
    conformal: MondrianConformal | None = None
    temperature: Temperature | None = None
    reference: TrainingSummary | None = None

    @classmethod
    def load(cls, model_dir: str | Path) -> TrustedModel:
        """Read a model directory written by `ephys2tx train`."""
        model_dir = Path(model_dir)
        estimator, card = load_model(model_dir)
        conformal = temperature = None
        if (model_dir / CALIBRATION_FILE).is_file():
            try:
                stored = json.loads((model_dir / CALIBRATION_FILE).read_text())
                conformal = MondrianConformal.from_dict(stored["conformal"])
                temperature = Temperature(float(stored.get("temperature", 1.0)))
            except (ValueError, KeyError, TypeError) as exc:
                raise Ephys2txError(
                    f"{model_dir / CALIBRATION_FILE} is damaged ({exc}); retrain the model"
                ) from exc
            if sorted(conformal.classes) != sorted(str(c) for c in estimator.classes_):
                raise Ephys2txError(
                    f"{model_dir / CALIBRATION_FILE} belongs to another model (classes "
                    f"{conformal.classes}); retrain the model"
                )
        return cls(estimator, card, conformal, temperature, load_training_summary(model_dir))

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
        trust = trust_table(cells, proba, self.classes, sets, self.reference)
        return pd.concat([out, trust], axis=1), missing


def trust_table(
    cells: pd.DataFrame,
    proba: np.ndarray,
    classes: list[str],
    sets: list[list[str]] | None,
    reference: TrainingSummary | None,
    predicted=None,
) -> pd.DataFrame:
    """prediction_set, confident, novelty and flags of each cell, given its class
    probabilities and conformal sets (None: uncalibrated, so empty sets and nothing
    confident) and its call (`predicted`; default the most probable class); without a
    stored training summary there is no novelty and no input flag."""
    n = len(cells)
    if reference is not None:
        proba = np.asarray(proba, float)
        called = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
        novelty, flags = reference.assess_cells(cells, proba.max(axis=1), called)
    else:
        novelty, flags = np.full(n, np.nan), [[] for _ in range(n)]
    sets = sets if sets is not None else [[] for _ in range(n)]
    ids = cells["specimen_id"].to_numpy()
    records = assess(ids, proba, classes, sets, flags, novelty, predicted)
    return trust_columns(records)
