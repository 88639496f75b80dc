"""Every model of the study built in one place from its settings (no patching afterwards).

`settings` is any object with the fields these recipes read (`study.StudySettings` has them
all); the commands pass their options through `NetworkRecipe` the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import pandas as pd

from .forest import PooledSpeciesForest, make_forest

if TYPE_CHECKING:  # the networks need torch (the `nn` extra): imported when one is built
    from .bilstm import BiLSTMClassifier
    from .transfer import TransferClassifier

DEFAULT_TREES = 500  # the transfer study's forests keep this size in every preset


class NetworkSettings(Protocol):
    seed: int
    bilstm_members: int
    bilstm_max_epochs: int
    width: int
    hidden: int
    lr: float
    validation_fraction: float
    head_epochs: int


@dataclass(frozen=True)
class NetworkRecipe:
    """The BiLSTM's settings as the commands give them (defaults: `BiLSTMClassifier`'s)."""

    seed: int = 0
    bilstm_members: int = 3
    bilstm_max_epochs: int = 300
    width: int = 32
    hidden: int = 32
    lr: float = 1e-3
    validation_fraction: float = 0.2
    head_epochs: int = 50


def network_params(s: NetworkSettings) -> dict:
    """Keyword arguments shared by the BiLSTM and every transfer network."""
    return {
        "width": s.width,
        "hidden": s.hidden,
        "lr": s.lr,
        "max_epochs": s.bilstm_max_epochs,
        "validation_fraction": s.validation_fraction,
        "n_members": s.bilstm_members,
        "random_state": s.seed,
    }


def forest(seed: int, inputs: str = "raw", trees: int = DEFAULT_TREES):
    """The class-balanced forest on raw features or on per-family sPCA."""
    return make_forest(seed, inputs, n_estimators=trees)


def bilstm(s: NetworkSettings) -> BiLSTMClassifier:
    """The attention BiLSTM over feature families."""
    from .bilstm import BiLSTMClassifier

    return BiLSTMClassifier(**network_params(s))


def transfer(s: NetworkSettings, mouse: pd.DataFrame, method: str) -> TransferClassifier:
    """A mouse → human transfer network (`method`: finetune, joint, align, adversarial)."""
    from .transfer import make_transfer

    return make_transfer(mouse, method, head_epochs=s.head_epochs, **network_params(s))


def transfer_variants(
    s: NetworkSettings,
    mouse: pd.DataFrame,
    features: list[str],
    methods: tuple[str, ...],
    baselines: tuple[str, ...] = ("rf", "rf_pooled"),
) -> dict[str, object]:
    """The models of the transfer study, by variant name (forests first, then networks).

    `rf`: the human forest; `rf_pooled`: the forest trained on human plus all labelled mouse
    cells, both on `features`; `bilstm_human`: the human-only BiLSTM every transfer variant is compared with.
    """
    labelled = mouse[mouse["label"].notna()]
    variants: dict[str, object] = {}
    if "rf" in baselines:
        variants["rf"] = forest(s.seed)
    if "rf_pooled" in baselines:
        variants["rf_pooled"] = PooledSpeciesForest(
            labelled[features], labelled["label"].to_numpy(), s.seed
        )
    variants["bilstm_human"] = bilstm(s)
    for method in methods:
        variants[f"transfer_{method}"] = transfer(s, labelled, method)
    return variants
