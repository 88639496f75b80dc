"""The networks' size and training schedule: one record, torch-free.

The BiLSTM's and the transfer networks' defaults, the commands' options and the study's
presets all read it, so a default is written once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NetworkParams:
    """Size and schedule of the attention BiLSTM and the transfer networks built on it."""

    members: int = 3  # networks averaged, each early-stopped on other donors
    max_epochs: int = 300
    width: int = 32
    hidden: int = 32
    lr: float = 1e-3
    validation_fraction: float = 0.2  # 0: fixed epochs, no early stopping (tiny cohorts)
    head_epochs: int = 50  # transfer: epochs of the head-only stage

    def estimator_params(self, seed: int) -> dict:
        """Keyword arguments of `BiLSTMClassifier` (and every transfer network)."""
        return {
            "width": self.width,
            "hidden": self.hidden,
            "lr": self.lr,
            "max_epochs": self.max_epochs,
            "validation_fraction": self.validation_fraction,
            "n_members": self.members,
            "random_state": seed,
        }


NETWORK = NetworkParams()  # the defaults, read by the estimators' own fields
