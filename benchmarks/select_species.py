"""Species fingerprint variants, selected on seed-100 donor-grouped folds (never seed 0).

Mouse and human public cells are pooled; in each donor-grouped fold a fingerprint is fitted
on the training cells of both species (over the features of a `--species` model) and
scores the held-out cells of both. Prints, per variant, the AUROC of P(mouse) and, for
thresholds set at a fixed false-alarm rate on same-species held-out cells, the share of the
other species' cells flagged, for a mouse model and a human model:

    EPHYS2TX_MIRROR=../shared/data OMP_NUM_THREADS=1 .venv/bin/python \
        benchmarks/select_species.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from ephys2tx.datasets.cells import build_cells, usable_features
from ephys2tx.evaluation.splits import donor_kfold

VARIANTS = {
    # name: (minimum coverage in both species, HGB settings)
    "current": (0.2, {"max_iter": 200, "learning_rate": 0.1}),
    "cov0.05": (0.05, {"max_iter": 200, "learning_rate": 0.1}),
    "slow": (0.2, {"max_iter": 500, "learning_rate": 0.05, "min_samples_leaf": 10}),
    "cov0.05-slow": (0.05, {"max_iter": 500, "learning_rate": 0.05, "min_samples_leaf": 10}),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    cells = {s: build_cells(s)[0] for s in ("mouse", "human")}
    features = {s: usable_features(t) for s, t in cells.items()}
    table = pd.concat(list(cells.values()), ignore_index=True)
    y = (table["species"] == "mouse").to_numpy()
    donors = (table["species"] + ":" + table["donor"].astype(str)).to_numpy()
    folds = list(donor_kfold(5, args.seed).split(np.zeros(len(y)), y, donors))
    for name in args.variants.split(","):
        coverage, params = VARIANTS[name]
        for model_species in ("mouse", "human"):
            shared = [
                f
                for f in features[model_species]
                if all(t[f].notna().mean() >= coverage if f in t else False for t in cells.values())
            ]
            X = table[shared].to_numpy(float)
            p_mouse = np.full(len(y), np.nan)
            start = time.perf_counter()
            for train, test in folds:
                model = HistGradientBoostingClassifier(
                    class_weight="balanced", random_state=args.seed, **params
                ).fit(X[train], y[train])
                p_mouse[test] = model.predict_proba(X[test])[:, 1]
            own = y if model_species == "mouse" else ~y
            p_own = p_mouse if model_species == "mouse" else 1 - p_mouse
            parts = []
            for fa in (0.01, 0.02, 0.05):
                threshold = np.quantile(p_own[own], fa)
                parts.append(f"FA {fa:.0%}: other flagged {np.mean(p_own[~own] < threshold):.1%}")
            legacy = {"mouse": 0.5, "human": 0.02}[model_species]
            print(
                f"{name:13} {model_species} model ({len(shared)} features, "
                f"{time.perf_counter() - start:.0f} s): AUROC {roc_auc_score(y, p_mouse):.3f}; "
                + "; ".join(parts)
                + f"; at {legacy}: other {np.mean(p_own[~own] < legacy):.1%}, "
                f"own {np.mean(p_own[own] < legacy):.1%}",
                flush=True,
            )


if __name__ == "__main__":
    main()
