"""Mouse -> human transfer on the same donor-grouped human folds (5 folds x 3 repeats):
human-only BiLSTM, transfer variants, the forest and the pooled mouse+human forest, at
10/25/50/100% of each fold's human training donors (test folds unchanged). Prints the
learning curve and each variant's paired macro-F1 difference to the human-only BiLSTM:

    EPHYS2TX_MIRROR=../shared/data .venv/bin/python benchmarks/bench_transfer.py
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import pandas as pd

from ephys2tx.datasets.cells import build_cells, usable_features
from ephys2tx.evaluation import LEARNING_CURVE_FRACTIONS
from ephys2tx.evaluation.crossval import CVResult
from ephys2tx.evaluation.splits import PROTOCOLS, protocol_splitter
from ephys2tx.evaluation.transfer_study import StudyResult, run_transfer_study
from ephys2tx.models import TRANSFER_METHODS, recipes
from ephys2tx.models.network_params import NetworkParams
from ephys2tx.study.outputs import write_study

warnings.filterwarnings("ignore", message=".*sklearn.utils.parallel.delayed.*")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--methods", default=",".join(TRANSFER_METHODS))
    parser.add_argument("--jobs", type=int, default=-1, help="folds fitted at once")
    parser.add_argument("--fractions", default=",".join(f"{f:g}" for f in LEARNING_CURVE_FRACTIONS))
    parser.add_argument("--variants", default="", help="only these variants (comma-separated)")
    parser.add_argument("--seed", type=int, default=0, help="fold seed (0 = the reported folds)")
    parser.add_argument(
        "--protocol", choices=PROTOCOLS, default="grouped", help="seed = the study's random folds"
    )
    parser.add_argument("--out", type=Path, default=Path("bench-transfer"))
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="*",
        help="only merge the saved results of earlier runs (e.g. variants run in parallel)",
    )
    args = parser.parse_args()
    if args.merge:
        print_study(merge(args.merge), args.out, {"protocol": "grouped", "merged": True})
        return

    human, _ = build_cells("human")
    mouse, _ = build_cells("mouse")
    splitter = protocol_splitter(args.protocol, "human", 5, args.repeats, args.seed)
    folds = splitter.cell_folds(human, "label")
    methods = tuple(m for m in args.methods.split(",") if m)
    network = NetworkParams(members=args.members)
    rf_features = usable_features(human)
    variants = recipes.transfer_variants(network, 0, mouse, rf_features, methods)
    features = {"rf": rf_features, "rf_pooled": rf_features}
    if args.variants:
        variants = {k: v for k, v in variants.items() if k in args.variants.split(",")}
    fractions = tuple(float(f) for f in args.fractions.split(","))
    start = time.perf_counter()

    saved = args.out / "runs"
    saved.mkdir(parents=True, exist_ok=True)

    def report(name, fraction, result):
        result.predictions.to_csv(saved / f"{name}@{fraction:g}.csv", index=False)
        f1 = result.scores["macro_f1"]
        print(f"  {name:20} {fraction:5.0%}  macro-F1 {f1.mean():.4f}  ({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip

    study = run_transfer_study(
        human, variants, folds, fractions, "label", features, seed=0, on_result=report,
        n_jobs=args.jobs,
    )  # fmt: skip
    for name, att in study.attention.items():
        att.to_csv(saved / f"attention_{name}.csv", index=False)
    context = {"protocol": args.protocol, "n_repeats": args.repeats, "n_members": args.members}
    print_study(study, args.out, context)
    print(f"total {time.perf_counter() - start:.0f} s for {len(folds)} folds")


def merge(dirs: list[Path]) -> StudyResult:
    """One study from the saved per-variant predictions of several runs (same folds)."""
    study = StudyResult()
    for directory in dirs:
        for path in sorted((directory / "runs").glob("*@*.csv")):
            name, fraction = path.stem.rsplit("@", 1)
            table = pd.read_csv(path)
            classes = sorted(table["true"].unique())
            study.results[(name, float(fraction))] = CVResult(table, classes)
        for path in sorted((directory / "runs").glob("attention_*.csv")):
            study.attention[path.stem.removeprefix("attention_")] = pd.read_csv(path)
    return study


def print_study(study: StudyResult, out: Path, context: dict) -> None:
    write_study(study, out, context)
    curve = study.learning_curve()
    print("\nlearning curve (human macro-F1, mean and 95% CI over folds)")
    print(curve.round(4).to_string(index=False))
    print("\npaired difference to the human-only BiLSTM (same folds)")
    print(study.paired().round(4).to_string(index=False))
    print(f"\nwrote {out}/ (learning_curve.png, attention_by_class_*.png, study.json)")


if __name__ == "__main__":
    main()
