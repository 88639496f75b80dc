"""Every model of the study built in one place from its settings (no patching afterwards).

The networks take a `NetworkParams` (the study's presets and the commands' options both
give one) and a seed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from .forest import PooledSpeciesForest, make_forest
from .network_params import NetworkParams

if TYPE_CHECKING:  # the networks need torch (the `nn` extra): imported when one is built
    from .bilstm import BiLSTMClassifier
    from .transfer import TransferClassifier

DEFAULT_TREES = 500  # the transfer study's forests keep this size in every preset


def forest(seed: int, inputs: str = "raw", trees: int = DEFAULT_TREES):
    """The class-balanced forest on raw features or on per-family sPCA."""
    return make_forest(seed, inputs, n_estimators=trees)


def bilstm(network: NetworkParams, seed: int) -> BiLSTMClassifier:
    """The attention BiLSTM over feature families."""
    from .bilstm import BiLSTMClassifier

    return BiLSTMClassifier(**network.estimator_params(seed))


def transfer(
    network: NetworkParams, seed: int, mouse: pd.DataFrame, method: str
) -> TransferClassifier:
    """A mouse → human transfer network (`method`: finetune, joint, align, adversarial)."""
    from .transfer import make_transfer

    params = network.estimator_params(seed)
    return make_transfer(mouse, method, head_epochs=network.head_epochs, **params)


def transfer_variants(
    network: NetworkParams,
    seed: int,
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
        variants["rf"] = forest(seed)
    if "rf_pooled" in baselines:
        variants["rf_pooled"] = PooledSpeciesForest(
            labelled[features], labelled["label"].to_numpy(), seed
        )
    variants["bilstm_human"] = bilstm(network, seed)
    for method in methods:
        variants[f"transfer_{method}"] = transfer(network, seed, labelled, method)
    return variants
