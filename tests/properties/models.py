"""Small real models of every kind, trained once per test session, and one `predict` for all.

Each is trained on a class-stratified subset of a public table with few trees or epochs and
3 donor-grouped calibration folds, and saved as `train` saves it (model, card, calibration,
reference; no species fingerprint, whose fit is the slow part). `predict` gives the table
the CLI writes, column for column (the `ephys2tx.predictor` API).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from ephys2tx.datasets.cells import usable_features
from ephys2tx.datasets.labels import DEFAULT_LABEL
from ephys2tx.evaluation.splits import donor_kfold
from ephys2tx.models.bundle import Provenance, card_for
from ephys2tx.models.hierarchy import HierarchySettings
from ephys2tx.models.members import forest

LIGHT_REFERENCE = HierarchySettings(
    subclass=(("rf", forest(15)),), t_type=(("rf", forest(15)),), t_type_model="flat"
)
TINY_NET = dict(width=8, hidden=8, max_epochs=3, patience=2, batch_size=32)
CALIBRATION_FOLDS = 3


def subset(cells: pd.DataFrame, label: str, per_class: int) -> pd.DataFrame:
    """The first `per_class` cells of each class (a fixed, stratified subset)."""
    cells = cells[cells[label].notna()]
    return pd.concat(g.head(per_class) for _, g in cells.groupby(label)).reset_index(drop=True)


def _store(out: Path, make, cells: pd.DataFrame, label: str, species: str, kind: str,
           features: list[str] | None) -> Path:  # fmt: skip
    from ephys2tx.models.trusted import fit_flat_trust, save_trained

    model = make()
    model.fit(cells[features] if features is not None else cells, cells[label].to_numpy())
    card = card_for(model, kind, species, label, len(cells), Provenance(seed=0))
    cv = donor_kfold(CALIBRATION_FOLDS, 0)
    trust = fit_flat_trust(make(), model, cells, label, species, features, cv=cv, seed=0)
    return save_trained(out, model, card, trust)


def train_forest(out: Path, cells: pd.DataFrame, species: str) -> Path:
    from ephys2tx.models.forest import make_forest

    label = DEFAULT_LABEL[species]
    train = subset(cells, label, 60)
    make = lambda: make_forest(0, "raw", n_estimators=20, n_jobs=1)  # noqa: E731
    return _store(out, make, train, label, species, "rf-raw", usable_features(train))


def train_bilstm(out: Path, cells: pd.DataFrame, species: str) -> Path:
    from ephys2tx.models.bilstm import BiLSTMClassifier

    label = DEFAULT_LABEL[species]
    train = subset(cells, label, 40)
    return _store(out, lambda: BiLSTMClassifier(**TINY_NET), train, label, species, "bilstm", None)


def train_transfer(out: Path, human: pd.DataFrame, mouse: pd.DataFrame) -> Path:
    from ephys2tx.models.transfer import TransferClassifier

    train = subset(human, "label", 30)
    source = subset(mouse, "label", 40)
    params = dict(TINY_NET, head_epochs=2)
    make = lambda: TransferClassifier(source=source, method="finetune", **params)  # noqa: E731
    return _store(out, make, train, "label", "human", "transfer-finetune", None)


def train_default_model(out: Path, cells: pd.DataFrame, species: str) -> Path:
    """The hierarchical default model (light settings), saved as the cache saves it."""
    from ephys2tx.default_model import novelty_weights
    from ephys2tx.default_model import train_default_model as fit
    from ephys2tx.models.mapping import card_features
    from ephys2tx.models.trusted import fit_trust, save_trained

    train = subset(cells, DEFAULT_LABEL[species], 70)
    result, card = fit(species, train, settings=LIGHT_REFERENCE, n_jobs=1)
    features = card_features(card)
    weights = novelty_weights(result.model, features)
    trust = fit_trust(train, species, features, result.calibrated, weights=weights)
    return save_trained(out, result.model, card, trust)


def taxonomy_parent(model_dir: Path) -> dict[str, str] | None:
    """leaf -> subclass of a default model, else None."""
    from ephys2tx.models.bundle import read_card

    card = read_card(model_dir)
    return card.hierarchy.taxonomy["parent"] if card.hierarchy is not None else None


@functools.cache
def predictor(model_dir: Path):
    """The `ephys2tx.predictor` API's model, loaded once per directory."""
    from ephys2tx.predictor import load_model

    return load_model(model_dir)


def predict(model_dir: Path, cells: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """The predictions table `predict MODEL_DIR` writes, for any model kind."""
    return predictor(model_dir).predict(cells, alpha)


def level_distributions(model_dir: Path, cells: pd.DataFrame, alpha: float) -> list[dict]:
    """The per-cell records of `--json` (subclass and t-type distributions)."""
    return predictor(model_dir).run(cells, alpha).mapping["results"]


def probability_columns(table: pd.DataFrame) -> np.ndarray:
    return table[[c for c in table.columns if c.startswith("p_")]].to_numpy(float)
