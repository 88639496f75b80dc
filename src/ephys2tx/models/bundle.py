"""Saved models: the fitted estimator plus what a user needs to trust and reuse it.

A model directory holds
- `model.json`: the card (`ModelCard`: format, kind, species, label, classes, features,
  families, package version, provenance; the hierarchical model's taxonomy and settings,
  a network's standardization statistics and parameters, a lab model's shift);
- `model.skops`: the fitted estimator in skops' format (for networks, without weights);
- `network.pt` (networks only): the weights, one state_dict per member network;
- the trust files (`models/trusted.py`): `calibration.json`, `training.npz`,
  `species.skops`, `interneuron.skops`.

Loading never runs code from the directory: skops rebuilds only the types named in
`TRUSTED_TYPES` (anything else is refused before loading), torch reads weights with
`weights_only=True`, and numbers live in JSON or npz. A card without the current `format`
(an older ephys2tx, which pickled its estimators, or another program) is refused with how
to retrain. A directory is written into a temporary sibling folder and appears under its
name only when complete (`new_model_dir`), its card last.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import Ephys2txError, MissingExtra, one_line
from ..features.families import FAMILY_OF_FEATURE
from ..files import atomic_write, atomic_write_text, staging_folder
from ..version import __version__

MODEL_FILE = "model.skops"
NETWORK_FILE = "network.pt"
META_FILE = "model.json"
# The trust files beside it (written and read by trusted.py).
CALIBRATION_FILE = "calibration.json"
TRAINING_SUMMARY_FILE = "training.npz"
SPECIES_FILE = "species.skops"
INTERNEURON_FILE = "interneuron.skops"  # the `not_interneuron` detector, when the model has one
# What a model directory's format is; bumped when its files change, so older directories
# are refused (and cached default models retrained) rather than misread.
CARD_FORMAT = 3  # 3: a typed card, per-level conformal scores in calibration.json
RETRAIN = "train it again with `ephys2tx train rf|bilstm|transfer|hierarchical --out DIR`"
# The only types a model file may ask skops to rebuild beyond skops' own trusted
# scikit-learn and numpy types: this package's estimators and their parts, and the
# scikit-learn internals their fitted state holds. Kept complete by tests/test_model_files.py.
TRUSTED_TYPES = (
    "ephys2tx.datasets.taxonomy.Taxonomy",
    "ephys2tx.models.bilstm.BiLSTMClassifier",
    "ephys2tx.models.family_tensors.FamilyLayout",
    "ephys2tx.models.family_tensors.Standardizer",
    "ephys2tx.models.forest.PooledSpeciesForest",
    "ephys2tx.trust.interneuron.InterneuronDetector",
    "ephys2tx.models.lab.FeatureShift",
    "ephys2tx.models.lab.LabModel",
    "ephys2tx.models.hierarchy.HierarchicalClassifier",
    "ephys2tx.models.hierarchy.QuantileBins",
    "ephys2tx.trust.species.SpeciesFingerprint",
    "ephys2tx.models.transfer.TransferClassifier",
    "ephys2tx.representations.family_spca.FamilySPCA",
    "ephys2tx.representations.spca.SparsePCAResult",
    "numpy.dtype",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
    "sklearn.utils._bunch.Bunch",
)


@dataclass
class Provenance:
    """Where a model's training came from."""

    seed: int | None = None
    trained_by: str | None = None  # e.g. "ephys2tx reproduce"; None: `ephys2tx train`
    synthetic: bool = False  # trained on SYNTHETIC cells: never use it on real cells
    data_sha256: dict[str, str] | None = None  # the pinned tables (default models)


@dataclass
class HierarchyCard:
    """What the card of a hierarchical (subclass → t-type) model adds."""

    taxonomy: dict  # `Taxonomy.to_dict()`
    leaves: list[str]
    settings: dict = field(default_factory=dict)  # the model's settings (`DEFAULT_SETTINGS`)
    subclass_temperature: float = 1.0  # a record of what the model applies itself
    oof_macro_f1: float | None = None  # out-of-fold subclass macro-F1 on the training cells
    oof_folds: str | None = None  # the folds it was measured on
    subset: bool = False  # trained on some of the default inputs only (a lab's table)


@dataclass
class NetworkCard:
    """What the card of a network (BiLSTM, transfer) adds: its scaling and training."""

    scaling: str
    standardization: dict  # per feature: quantiles or centre and scale
    family_order: list[str]
    best_epochs: list
    params: dict = field(default_factory=dict)  # the estimator's simple parameters
    method: str | None = None  # transfer: how mouse cells were used
    n_source_cells: int | None = None  # transfer: mouse cells seen


@dataclass
class LabCard:
    """What `adapt` did to the default model for a lab's cells."""

    details: dict  # method, anchors, weights, lab cells (`models.lab.LabFit.details`)
    shift: dict  # per feature: offset and scale into the training cells' terms
    most_shifted: list
    not_interneuron: str | None = None  # the excitatory detector's source cells, if any


@dataclass
class ModelCard:
    """What a saved model is: read back by `predict` before touching the estimator.

    `kind` is "hierarchical" (subclass, then t-type: the default model, `train
    hierarchical`, `adapt`) or the flat model's recipe ("rf-raw", "bilstm", ...)."""

    kind: str
    species: str
    label: str
    classes: list[str]
    features: list[str]
    families: dict[str, list[str]] = field(default_factory=dict)
    version: str = __version__
    n_train_cells: int = 0
    format: int = CARD_FORMAT
    train_seconds: float | None = None  # wall time of the fit, where it was measured
    provenance: Provenance = field(default_factory=Provenance)
    hierarchy: HierarchyCard | None = None
    network: NetworkCard | None = None
    lab: LabCard | None = None

    @classmethod
    def from_dict(cls, data: dict) -> ModelCard:
        """The card of `asdict(card)` (a TypeError or ValueError when it does not fit)."""
        data = dict(data)
        data["provenance"] = Provenance(**(data.get("provenance") or {}))
        for name, part in (
            ("hierarchy", HierarchyCard),
            ("network", NetworkCard),
            ("lab", LabCard),
        ):
            if data.get(name) is not None:
                data[name] = part(**data[name])
        return cls(**data)


HIERARCHICAL = "hierarchical"  # the card kind of the subclass → t-type model


def card_for(
    model, kind: str, species: str, label: str, n_train_cells: int,
    provenance: Provenance | None = None, **network,
) -> ModelCard:  # fmt: skip
    """The card of a fitted model; classes, features and (networks) scaling come from it.

    `network`: what a network's card adds beyond its fitted state (`NetworkCard.method`,
    `n_source_cells`)."""
    info = None
    if hasattr(model, "used_features"):  # the BiLSTM and transfer estimators
        features = model.used_features()
        params = model.get_params(deep=False)
        simple = (int, float, str, bool, type(None), list, tuple)
        params = {k: v for k, v in params.items() if isinstance(v, simple)}
        info = NetworkCard(**model.card_extra(), params=params, **network)
    else:
        features = [str(c) for c in model.feature_names_in_]
    return ModelCard(
        kind=kind,
        species=species,
        label=label,
        classes=[str(c) for c in model.classes_],
        features=features,
        n_train_cells=n_train_cells,
        provenance=provenance if provenance is not None else Provenance(),
        network=info,
    )


def families_of(features: list[str]) -> dict[str, list[str]]:
    """The family declaration restricted to a model's features."""
    out: dict[str, list[str]] = {}
    for name in features:
        out.setdefault(FAMILY_OF_FEATURE.get(name, "other"), []).append(name)
    return out


def write_skops(path: Path, obj: object) -> None:
    """`obj` in skops' format, written atomically."""
    import skops.io as sio

    atomic_write(path, lambda tmp: sio.dump(obj, tmp))


def read_skops(path: Path, what: str = "model") -> object:
    """An object from a skops file, refused before loading if it asks for a type outside
    `TRUSTED_TYPES` (skops' own defaults aside): reading it can run no other code."""
    import skops.io as sio

    try:
        asked = sio.get_untrusted_types(file=path)
        unexpected = sorted(set(asked) - set(TRUSTED_TYPES))
        if not unexpected:
            return sio.load(path, trusted=asked)
    except MissingExtra:  # e.g. a BiLSTM on an install without torch: the hint says what to add
        raise
    except Exception as exc:  # not a skops file (e.g. a pickle), truncated, or damaged
        raise Ephys2txError(
            f"{path} cannot be read as a {what} file ({one_line(exc)}); {RETRAIN}"
        ) from exc
    raise Ephys2txError(
        f"{path} asks to load types this ephys2tx does not trust ({', '.join(unexpected[:3])}); "
        f"refused, nothing was run: {RETRAIN}"
    )


def write_model(folder: str | Path, estimator, card: ModelCard) -> Path:
    """Write estimator and card into `folder` (each file atomically, the card last).

    Prefer `save_model` or `new_model_dir`, which make the whole directory appear at once."""
    folder = Path(folder)
    if not card.families:
        card.families = families_of(card.features)
    card.format = CARD_FORMAT
    if hasattr(estimator, "network_weights"):  # networks: weights apart, as tensors only
        import torch

        weights = estimator.network_weights()
        atomic_write(folder / NETWORK_FILE, lambda tmp: torch.save(weights, tmp))
        estimator = estimator.without_networks()
    write_skops(folder / MODEL_FILE, estimator)
    atomic_write_text(folder / META_FILE, json.dumps(asdict(card), indent=2, default=_json_default))
    return folder


def save_model(model_dir: str | Path, estimator, card: ModelCard) -> Path:
    """Write a complete model directory at `model_dir` (appearing only when complete)."""
    with new_model_dir(model_dir) as folder:
        write_model(folder, estimator, card)
    return Path(model_dir)


@contextmanager
def new_model_dir(target: str | Path) -> Iterator[Path]:
    """A temporary sibling folder to write a model into; on success it becomes `target`.

    A missing or empty `target` is replaced by one rename. Into an existing folder (e.g.
    `--overwrite`) the old card is removed first, then the new files moved in one by one
    and the new card last: a directory with a card is always complete. On error nothing
    is published and the temporary folder is removed (a killed run's, by the next write)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(target.parent, target.name)
    try:
        yield staging
        if not (staging / META_FILE).is_file():
            raise Ephys2txError(f"internal: no {META_FILE} was written for {target}")
        _publish(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, target: Path) -> None:
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    if not target.exists():
        try:
            staging.rename(target)
            return
        except OSError:  # created meanwhile: fall back on moving file by file
            pass
    (target / META_FILE).unlink(missing_ok=True)
    new = {p.name for p in staging.iterdir()}
    for name in (*MODEL_DIR_FILES, *FORMAT_1_FILES):
        if name not in new:  # e.g. calibration.json of a model retrained uncalibrated
            (target / name).unlink(missing_ok=True)
    for name in sorted(new - {META_FILE}):
        os.replace(staging / name, target / name)
    os.replace(staging / META_FILE, target / META_FILE)


# The pickles of format 1: removed when a model is written over one, never read.
FORMAT_1_FILES = ("model.joblib", "species.joblib")
# Every file a model directory may hold.
MODEL_DIR_FILES = (
    MODEL_FILE,
    NETWORK_FILE,
    META_FILE,
    CALIBRATION_FILE,
    TRAINING_SUMMARY_FILE,
    SPECIES_FILE,
    INTERNEURON_FILE,
)


def read_card(model_dir: str | Path) -> ModelCard:
    """The model card of a directory; a missing, damaged, incomplete, older or foreign
    model.json is a clear error."""
    path = Path(model_dir) / META_FILE
    if not path.is_file():
        raise Ephys2txError(f"{model_dir} is not a model directory (no {META_FILE}); {RETRAIN}")
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise Ephys2txError(
            f"{path} is damaged or not an ephys2tx model card ({one_line(exc)}); {RETRAIN}"
        ) from exc
    found = data.get("format") if isinstance(data, dict) else None
    if found != CARD_FORMAT:
        raise Ephys2txError(
            f"{model_dir} holds a model of an older or unknown format (format {found}; this "
            f"ephys2tx {__version__} reads format {CARD_FORMAT}); {RETRAIN}"
        )
    names = {f.name for f in fields(ModelCard)}
    missing = sorted(
        n for n in ("kind", "species", "label", "classes", "features") if n not in data
    )
    if missing or set(data) - names:
        what = f"lacks {', '.join(missing)}" if missing else "has unknown fields"
        raise Ephys2txError(f"{path} is incomplete or not an ephys2tx card ({what}); {RETRAIN}")
    try:
        return ModelCard.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise Ephys2txError(
            f"{path} is not an ephys2tx card of format {CARD_FORMAT} ({one_line(exc)}); {RETRAIN}"
        ) from exc


def load_model(model_dir: str | Path) -> tuple[object, ModelCard]:
    """Return (estimator, card); a missing, incomplete, damaged or untrusted directory is a
    clear error. Reading it runs no code from the directory."""
    model_dir = Path(model_dir)
    card = read_card(model_dir)
    if not (model_dir / MODEL_FILE).is_file():
        raise Ephys2txError(f"{model_dir} is incomplete (no {MODEL_FILE}); {RETRAIN}")
    estimator = read_skops(model_dir / MODEL_FILE)
    if hasattr(estimator, "load_networks"):
        estimator.load_networks(_read_weights(model_dir / NETWORK_FILE))
    return estimator, card


def _read_weights(path: Path) -> list:
    """The member networks' state_dicts; tensors only (`weights_only`): no code runs."""
    if not path.is_file():
        raise Ephys2txError(f"{path.parent} is incomplete (no {NETWORK_FILE}); {RETRAIN}")
    import torch

    try:
        weights = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # a pickle with code, truncated, or damaged
        raise Ephys2txError(
            f"{path} cannot be read as network weights ({one_line(exc)}); {RETRAIN}"
        ) from exc
    if not isinstance(weights, list) or not all(isinstance(w, dict) for w in weights):
        raise Ephys2txError(f"{path} is not a list of network weights; {RETRAIN}")
    return weights


def align_features(cells: pd.DataFrame, features: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """The model's feature columns of a table, and those it lacks (they become NaN: unmeasured).

    A table with none of the model's features is an error: nothing could be predicted."""
    missing = [f for f in features if f not in cells.columns]
    if len(missing) == len(features):
        shown = ", ".join(features[:5]) + (" ..." if len(features) > 5 else "")
        raise Ephys2txError(
            f"the cell table has none of the model's {len(features)} features ({shown}); "
            "give a table with canonical IPFX feature columns, e.g. from `ephys2tx extract`"
        )
    return cells.reindex(columns=features), missing


def predict_table(estimator, card: ModelCard, cells: pd.DataFrame) -> pd.DataFrame:
    """specimen_id, predicted, then p_<Class> per class (missing columns count as NaN)."""
    X, _ = align_features(cells, card.features)
    proba = estimator.predict_proba(X)
    return proba_table(cells["specimen_id"].to_numpy(), proba, list(estimator.classes_))


def proba_table(specimen_ids, proba: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """specimen_id, predicted (most probable class), then p_<Class> per class."""
    out = pd.DataFrame({"specimen_id": specimen_ids})
    out["predicted"] = np.asarray(classes)[proba.argmax(axis=1)]
    for i, cls in enumerate(classes):
        out[f"p_{cls}"] = proba[:, i]
    return out


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value)}")
