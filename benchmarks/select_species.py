"""Species fingerprint variants, selected on seed-100 donor-grouped folds (never seed 0).

Measured as `bench_trust.py --parts species` measures the adopted one, on other folds: each
species' labelled cells are cut into 5 donor-grouped folds (seed 100); fold k of both is
held out together, and for each model species a fingerprint is fitted and calibrated
(inner out-of-fold threshold) on the other folds of both species, exactly as `train` does.
Prints, per variant and model species, the share of the other species' held-out cells
flagged `species_mismatch` and the false alarms on the model's own held-out cells (the
calibration is nested, so these are the rates `predict` would give), plus the pooled
out-of-fold AUROC and the other species flagged at an oracle 5% false-alarm threshold:

    EPHYS2TX_MIRROR=../shared/data OMP_NUM_THREADS=1 .venv/bin/python \
        benchmarks/select_species.py --variants current,missing
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.metrics import roc_auc_score

from ephys2tx.datasets.cells import build_cells, usable_features
from ephys2tx.evaluation.splits import DonorKFold
from ephys2tx.trust.species import HGB_SETTINGS, FingerprintSettings, SpeciesFingerprint

LABELS = {"human": "label", "mouse": "label5"}
SLOW = {"max_iter": 500, "learning_rate": 0.05, "min_samples_leaf": 10}
TUNED = {"max_iter": 300, "learning_rate": 0.05, "max_leaf_nodes": 15, "l2_regularization": 1.0}
F5 = {"false_alarm": 0.05}  # the rate before per-species rates; variants measured at it
VARIANTS = {
    "current": FingerprintSettings(**F5),
    "cov0.05": FingerprintSettings(min_coverage=0.05, **F5),
    "slow": FingerprintSettings(hgb=SLOW, **F5),
    "missing": FingerprintSettings(missingness=True, **F5),
    "missing-cov0.05": FingerprintSettings(min_coverage=0.05, missingness=True, **F5),
    "tuned": FingerprintSettings(hgb=TUNED, **F5),
    "missing-tuned": FingerprintSettings(missingness=True, hgb=TUNED, **F5),
    "missing-deep": FingerprintSettings(
        missingness=True, hgb={**HGB_SETTINGS, "max_iter": 400, "max_leaf_nodes": 63}, **F5
    ),
    "10splits": FingerprintSettings(splits=10, **F5),
    "missing-10splits": FingerprintSettings(missingness=True, splits=10, **F5),
    "fa0.045": FingerprintSettings(false_alarm=0.045),
    "fa0.055": FingerprintSettings(false_alarm=0.055),
    "fa0.06": FingerprintSettings(false_alarm=0.06),
    "per-species": FingerprintSettings(),  # adopted: FALSE_ALARM_BY_SPECIES
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--variants", default="current,missing,tuned,missing-tuned")
    args = parser.parse_args()
    cells = {s: build_cells(s)[0] for s in LABELS}
    tables = {s: t[t[LABELS[s]].notna()].reset_index(drop=True) for s, t in cells.items()}
    folds = {s: DonorKFold(5, 1, args.seed).cell_folds(t, LABELS[s]) for s, t in tables.items()}
    for name in args.variants.split(","):
        settings = VARIANTS[name]
        for model_species in tables:
            other = next(s for s in tables if s != model_species)
            start = time.perf_counter()
            flagged = {s: np.zeros(len(t), bool) for s, t in tables.items()}
            p_own = {s: np.full(len(t), np.nan) for s, t in tables.items()}
            for k in range(5):
                train = {s: t.iloc[folds[s][k].train] for s, t in tables.items()}
                fp = SpeciesFingerprint.fit(
                    train, usable_features(tables[model_species]), args.seed, model_species,
                    settings,
                )  # fmt: skip
                for s, t in tables.items():
                    test = folds[s][k].test
                    flagged[s][test] = fp.mismatch(t.iloc[test], model_species)
                    p_own[s][test] = fp.proba(t.iloc[test], model_species)
            own, oth = p_own[model_species], p_own[other]
            auroc = roc_auc_score(
                np.r_[np.ones(len(own)), np.zeros(len(oth))], np.nan_to_num(np.r_[own, oth], nan=1)
            )
            oracle = np.mean(oth < np.nanquantile(own, 0.05))
            print(
                f"{name:16} {model_species} model ({len(fp.features)} features, "
                f"{time.perf_counter() - start:.0f} s): species_mismatch on "
                f"{flagged[other].mean():.1%} of {other} cells, false alarms "
                f"{flagged[model_species].mean():.1%} of {model_species}; AUROC {auroc:.4f}; "
                f"oracle 5% threshold: {oracle:.1%}",
                flush=True,
            )


if __name__ == "__main__":
    main()
