"""What a study runs and how large: one settings dataclass, three presets.

`full` is the reproduction (`ephys2tx reproduce`), `quick` the same study with fewer repeats
and smaller models (`reproduce --quick`), `demo` the study sized for a small SYNTHETIC
cohort (`ephys2tx demo`). Every field changes results, so the settings key the step cache.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import Ephys2txError
from ..evaluation.splits import DonorKFold, Splitter, protocol_splitter
from ..models.network_params import NETWORK, NetworkParams

PRESETS = ("full", "quick", "demo")

# species, label, inputs, protocol: every forest evaluation of the study
FOREST_RUNS = (
    ("mouse", "label5", "raw", "grouped"),
    ("mouse", "label", "raw", "grouped"),
    ("human", "label", "raw", "grouped"),
    ("mouse", "label5", "spca", "grouped"),
    ("human", "label", "spca", "grouped"),
    ("mouse", "label5", "raw", "seed"),
    ("human", "label", "raw", "seed"),
)
QUICK_FOREST_RUNS = tuple(r for i, r in enumerate(FOREST_RUNS) if i not in (3, 5))
DEMO_FOREST_RUNS = FOREST_RUNS[:3]
TRUST_RUNS = (("human", "label"), ("mouse", "label5"))  # species, label
# species, label, protocol; the human seed-protocol BiLSTM is the human-only variant of
# the seed-protocol transfer study
BILSTM_RUNS = (("mouse", "label5", "grouped"), ("mouse", "label5", "seed"))


@dataclass(frozen=True)
class StudySettings:
    """Sizes and contents of a study run (defaults: the full reproduction)."""

    preset: str = "full"
    seed: int = 0
    # forests: donor-grouped folds x repeats; the study's protocol over seeds
    folds: int = 5
    repeats: int = 3
    # the published study's protocol: 3 seeds, as for the networks (the study ran 10; so does
    # `evaluate rf --protocol seed --repeats 10`); 3 keep `make reproduce` under 20 min
    seed_repeats: int = 3
    forest_trees: int = 500
    forest_runs: tuple[tuple[str, str, str, str], ...] = FOREST_RUNS
    trust_runs: tuple[tuple[str, str], ...] = TRUST_RUNS
    # trust and reference sections: calibration nested in each outer fold makes ~6 fits a
    # fold, so they run the first repeat of the forests' folds; benchmarks/ run 5 x 3
    nested_repeats: int = 1
    importance_folds: int = 5
    importance_repeats: int = 1  # permutations per feature and fold
    embedding: bool = True
    # networks: BiLSTM recipe (models.recipes) and its folds
    bilstm_runs: tuple[tuple[str, str, str], ...] = BILSTM_RUNS
    network: NetworkParams = NETWORK
    network_folds: int = 5
    network_repeats: int = 1  # networks cost ~20x a forest; benchmarks/ run 5 x 3
    network_seed_repeats: int = 3  # the mouse BiLSTM in the study's protocol
    # transfer study on human cells
    transfer_methods: tuple[str, ...] = ("finetune", "align")  # joint = align without CORAL
    transfer_baselines: tuple[str, ...] = ("rf", "rf_pooled")
    # shares of human training donors; benchmarks/bench_transfer.py adds 50%
    transfer_fractions: tuple[float, ...] = (0.1, 0.25, 1.0)
    # repeats of the transfer study's folds (and seeds of its study-protocol run): the first
    # of benchmarks/bench_transfer.py's 3, which gives each of them the same numbers
    transfer_repeats: int = 1
    transfer_seed_protocol: bool = True  # also the study's random folds, all training cells
    # the hierarchical default model, and what `save_models` stores
    default_models: bool = True
    crosslab_draws: int = 1  # another lab's cells: draws of 25% of its mice (0: no section)
    store_trust: bool = True  # calibration, novelty baseline, fingerprint beside each forest
    save_networks: bool = False  # also the human BiLSTM and transfer models
    # the SYNTHETIC cohort (demo): cells per subclass and species
    n_per_class: int = 4

    @classmethod
    def preset_named(cls, name: str, seed: int = 0, **overrides) -> StudySettings:
        """`full`, `quick` or `demo`, with a seed and any field overridden."""
        if name not in PRESETS:
            raise Ephys2txError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
        return replace(_PRESETS[name], seed=seed, **overrides)

    # --- splitters: every model of a species is compared on the same folds ---------------
    def _splitter(self, protocol: str, species: str, n_splits: int, repeats: dict) -> Splitter:
        """`repeats[protocol]` repeats of the protocol's folds (grouped K-fold or seeds)."""
        return protocol_splitter(protocol, species, n_splits, repeats.get(protocol, 1), self.seed)

    def forest_splitter(self, protocol: str, species: str) -> Splitter:
        """Folds of the forest runs (and trust, reference): 5 x 3 donor-grouped by default."""
        repeats = {"grouped": self.repeats, "seed": self.seed_repeats}
        return self._splitter(protocol, species, self.folds, repeats)

    def nested_splitter(self) -> Splitter:
        """Folds of the trust and reference sections: the first `nested_repeats` repeats of
        the forests' donor-grouped folds."""
        return DonorKFold(self.folds, self.nested_repeats, self.seed)

    def importance_splitter(self) -> Splitter:
        """One repeat of the grouped folds; the first `importance_folds` are used."""
        return DonorKFold(self.folds, 1, self.seed)

    def network_splitter(self, protocol: str, species: str) -> Splitter:
        """Folds of the BiLSTM runs."""
        repeats = {"grouped": self.network_repeats, "seed": self.network_seed_repeats}
        return self._splitter(protocol, species, self.network_folds, repeats)

    def transfer_splitter(self, protocol: str) -> Splitter:
        """Human folds of the transfer study (`transfer_repeats` repeats or seeds)."""
        repeats = {"grouped": self.transfer_repeats, "seed": self.transfer_repeats}
        return self._splitter(protocol, "human", self.network_folds, repeats)


_PRESETS = {
    "full": StudySettings(),
    "quick": StudySettings(
        preset="quick",
        folds=3,  # 3 x 1 donor-grouped folds: a few minutes in all on 2 cores
        repeats=1,
        seed_repeats=2,
        forest_trees=100,
        forest_runs=QUICK_FOREST_RUNS,
        trust_runs=TRUST_RUNS[:1],
        importance_folds=2,
        importance_repeats=1,
        bilstm_runs=BILSTM_RUNS[:1],
        network=NetworkParams(members=1, max_epochs=40),
        network_folds=3,
        transfer_methods=("finetune",),
        transfer_fractions=(0.25, 1.0),
        transfer_repeats=1,
        transfer_seed_protocol=False,
        crosslab_draws=0,
    ),
    "demo": StudySettings(
        preset="demo",
        folds=3,  # 6 synthetic donors per species -> 2 test donors per fold
        repeats=2,  # 2 x 3 folds: paired comparisons over 6 folds, not 3
        seed_repeats=1,
        forest_runs=DEMO_FOREST_RUNS,
        trust_runs=(),
        importance_folds=1,  # the demo's classes separate perfectly: one fold says so
        importance_repeats=1,
        bilstm_runs=(),
        network=NetworkParams(
            members=1,
            max_epochs=60,  # fixed: too few donors to hold some out for early stopping
            width=16,
            hidden=16,
            lr=1e-2,  # ~10 training cells make one batch: one step per epoch
            validation_fraction=0.0,
            head_epochs=30,
        ),
        network_folds=3,
        transfer_methods=("finetune",),
        transfer_baselines=("rf",),
        transfer_fractions=(1.0,),
        transfer_repeats=2,
        transfer_seed_protocol=False,
        default_models=False,
        crosslab_draws=0,
        store_trust=False,
        save_networks=True,
    ),
}
