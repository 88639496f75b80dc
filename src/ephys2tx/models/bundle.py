"""Saved models: the fitted estimator plus what a user needs to trust and reuse it.

A model directory holds `model.joblib` (the fitted estimator) and `model.json` (kind,
species, label, classes, feature list, family declaration, package version; for networks
also the standardization statistics and parameters).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from ..errors import Ephys2txError, MissingExtra, one_line
from ..features.families import FAMILY_OF_FEATURE
from ..version import __version__

MODEL_FILE = "model.joblib"
META_FILE = "model.json"


@dataclass
class ModelCard:
    """What a saved model is: read back by `predict` before touching the estimator."""

    kind: str
    species: str
    label: str
    classes: list[str]
    features: list[str]
    families: dict[str, list[str]] = field(default_factory=dict)
    version: str = __version__
    n_train_cells: int = 0
    extra: dict = field(default_factory=dict)


def card_for(model, kind: str, species: str, label: str, n_train_cells: int, **extra) -> ModelCard:
    """The card of a fitted model; classes, features and (networks) scaling come from it."""
    if hasattr(model, "used_features"):  # the BiLSTM and transfer estimators
        features = model.used_features()
        params = model.get_params(deep=False)
        simple = (int, float, str, bool, type(None), list, tuple)
        params = {k: v for k, v in params.items() if isinstance(v, simple)}
        extra = {**model.card_extra(), **extra, "params": params}
    else:
        features = [str(c) for c in model.feature_names_in_]
    return ModelCard(
        kind=kind,
        species=species,
        label=label,
        classes=[str(c) for c in model.classes_],
        features=features,
        n_train_cells=n_train_cells,
        extra=extra,
    )


def families_of(features: list[str]) -> dict[str, list[str]]:
    """The family declaration restricted to a model's features."""
    out: dict[str, list[str]] = {}
    for name in features:
        out.setdefault(FAMILY_OF_FEATURE.get(name, "other"), []).append(name)
    return out


def save_model(model_dir: str | Path, estimator, card: ModelCard) -> Path:
    """Write estimator and card; files are replaced atomically."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    if not card.families:
        card.families = families_of(card.features)
    tmp = model_dir / f".{MODEL_FILE}.part"
    joblib.dump(estimator, tmp)
    tmp.replace(model_dir / MODEL_FILE)
    tmp = model_dir / f".{META_FILE}.part"
    tmp.write_text(json.dumps(asdict(card), indent=2, default=_json_default))
    tmp.replace(model_dir / META_FILE)
    return model_dir


def read_card(model_dir: str | Path) -> ModelCard:
    """The model card of a directory; a missing, damaged or foreign model.json is a clear
    error."""
    path = Path(model_dir) / META_FILE
    if not path.is_file():
        raise Ephys2txError(
            f"{model_dir} is not a model directory (no {META_FILE}); "
            "train one with `ephys2tx train rf|bilstm|transfer|reference --out DIR`"
        )
    try:
        return ModelCard(**json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:  # bad JSON, or not a card's fields
        raise Ephys2txError(
            f"{path} is damaged or not an ephys2tx model card ({one_line(exc)}); "
            "train the model again"
        ) from exc


def load_model(model_dir: str | Path) -> tuple[object, ModelCard]:
    """Return (estimator, card); a missing, incomplete or damaged directory is a clear error."""
    model_dir = Path(model_dir)
    card = read_card(model_dir)
    if not (model_dir / MODEL_FILE).is_file():
        raise Ephys2txError(
            f"{model_dir} is not a model directory (no {MODEL_FILE}); "
            "train one with `ephys2tx train rf|bilstm|transfer|reference --out DIR`"
        )
    try:
        estimator = joblib.load(model_dir / MODEL_FILE)
    except MissingExtra:  # e.g. a BiLSTM on an install without torch: the hint says what to add
        raise
    except Exception as exc:  # a truncated or foreign pickle fails in many ways
        raise Ephys2txError(
            f"{model_dir / MODEL_FILE} cannot be read ({one_line(exc)}); train the model again"
        ) from exc
    return estimator, card


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
