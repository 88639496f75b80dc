"""`ephys2tx reproduce`: the whole study from public data into results.json and report.html.

Each step stores its result in DIR/steps/<name>.json together with the settings it ran
with; a rerun with the same settings reuses it, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from . import __version__
from .console import console
from .datasets.cells import build_cells, usable_features, write_cell_table
from .datasets.fetch import (
    REPAIRED_NOTE,
    altered_files,
    fetch_all,
    resolve_data_dir,
    resolve_mirror,
)
from .datasets.labels import DEFAULT_LABEL
from .evaluation import LEARNING_CURVE_FRACTIONS

REFERENCE_ALPHA = 0.1  # conformal level of the reference model's sets in the report


@dataclass(frozen=True)
class StudySettings:
    """Sizes of the run; `quick` trades repeats and model size for a few minutes' run."""

    quick: bool = False
    seed: int = 0
    folds: int = 5
    repeats: int = 3
    seed_repeats: int = 10  # the reference study's protocol: 10 seeds
    importance_folds: int = 5
    importance_repeats: int = 3
    bilstm_members: int = 3  # 3 networks, each early-stopped on other donors, are averaged
    bilstm_max_epochs: int = 300
    transfer_methods: tuple[str, ...] = ("finetune", "align")  # joint = align without CORAL
    transfer_fractions: tuple[float, ...] = LEARNING_CURVE_FRACTIONS
    transfer_repeats: int = 3  # 5 x 3 like benchmarks/bench_transfer.py (~20 min on 2 cores)
    forest_trees: int = 500
    network_folds: int = 5
    network_repeats: int = 1  # networks cost ~20x a forest; benchmarks/ run 5 x 3
    network_seed_repeats: int = 3  # the study's protocol for the networks: fewer seeds than its 10

    @classmethod
    def make(cls, quick: bool, seed: int = 0) -> StudySettings:
        if quick:
            return cls(
                quick=True,
                seed=seed,
                repeats=1,
                seed_repeats=2,
                importance_folds=2,
                importance_repeats=1,
                bilstm_members=1,
                bilstm_max_epochs=40,
                transfer_methods=("finetune",),
                transfer_fractions=(0.25, 1.0),
                transfer_repeats=1,
                forest_trees=200,
                network_folds=3,
            )
        return cls(False, seed)


class StepCache:
    """Run a named step once per settings; results are JSON files written atomically."""

    def __init__(self, out: Path, settings: StudySettings):
        self.dir = out / "steps"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.settings = json.loads(json.dumps(asdict(settings)))  # tuples compare as stored lists

    def run(self, name: str, step: Callable[[], dict]) -> dict:
        path = self.dir / f"{name}.json"
        if path.is_file():
            stored = json.loads(path.read_text())
            if stored.get("settings") == self.settings and stored.get("version") == __version__:
                console.print(f"[dim]reusing {name}[/]")
                return stored["result"]
        console.print(f"[bold]{name}[/]")
        start = time.perf_counter()
        result = step()
        record = {
            "settings": self.settings,
            "version": __version__,
            "seconds": round(time.perf_counter() - start, 1),
            "result": result,
        }
        tmp = path.with_suffix(".part")
        tmp.write_text(json.dumps(record, indent=1, default=float))
        tmp.replace(path)
        return result


def _metrics_brief(metrics: dict) -> dict:
    keep = (
        "model",
        "species",
        "label",
        "protocol",
        "n_cells",
        "n_features",
        "n_folds",
        "n_repeats",
    )
    return {
        **{k: metrics[k] for k in keep if k in metrics},
        "macro_f1": {k: metrics["macro_f1"][k] for k in ("mean", "sd", "ci95", "n")},
        "accuracy": {k: metrics["accuracy"][k] for k in ("mean", "sd")},
        "per_class_f1": metrics["per_class_f1"],
    }


class Study:
    """The steps of the reproduction, sharing data, settings and output folders."""

    def __init__(
        self,
        out: Path,
        settings: StudySettings,
        data_dir: str | Path | None = None,
        mirror: str | None = None,
        n_jobs: int = 1,
    ):
        self.out = Path(out)
        self.settings = settings
        self.n_jobs = n_jobs  # folds of a network fitted at once; results do not depend on it
        self.data_dir = resolve_data_dir(data_dir)
        self.mirror = resolve_mirror(mirror)
        self.cache = StepCache(self.out, settings)
        self.figures = self.out / "figures"
        self.figures.mkdir(parents=True, exist_ok=True)
        self._cells: dict[str, pd.DataFrame] = {}

    def cells(self, species: str) -> pd.DataFrame:
        if species not in self._cells:
            self._cells[species] = build_cells(species, self.data_dir, self.mirror)[0]
        return self._cells[species]

    # --- steps -------------------------------------------------------------------------
    def data(self) -> dict:
        altered = altered_files(self.data_dir)
        fetch_all(self.data_dir, self.mirror)
        for name in altered:
            console.print(f"[yellow]{name}[/]: {REPAIRED_NOTE}")
        result = {}
        for species in ("mouse", "human"):
            table, report = build_cells(species, self.data_dir, self.mirror)
            write_cell_table(table, self.out / "cells" / f"{species}.parquet")
            result[species] = {
                **report.as_dict(),
                "n_donors": int(table["donor"].nunique()),
                "n_features": len(usable_features(table)),
                "labels": table["label"].value_counts().sort_index().to_dict(),
                "labels5": table["label5"].value_counts().sort_index().to_dict(),
            }
        return result

    def embed(self, species: str) -> dict:
        from .report.figures import embedding_png
        from .representations.embedding import embed_cells

        table = self.cells(species)
        label = DEFAULT_LABEL[species]
        emb = embed_cells(table, usable_features(table), label, self.settings.seed)
        png = embedding_png(
            emb.coords, self.figures / f"umap_{species}.png", f"{species}: sPCA → UMAP"
        )
        return {**emb.summary(), "figure": png.name}

    def forest(self, species: str, label: str, inputs: str, protocol: str) -> dict:
        from .evaluation.run import evaluate, write_evaluation
        from .models.forest import make_forest

        table = self.cells(species)
        s = self.settings
        repeats = s.repeats if protocol == "grouped" else s.seed_repeats
        result, metrics = evaluate(
            make_forest(s.seed, inputs, n_estimators=s.forest_trees),
            table,
            species,
            label,
            usable_features(table),
            protocol,
            s.folds,
            repeats,
            s.seed,
            description=f"forest {species} {label} {inputs} {protocol}",
            model=f"rf-{inputs}",
        )
        name = f"rf_{species}_{label}_{inputs}_{protocol}"
        write_evaluation(
            self.out / "rf" / name, result, metrics, f"{species} {label}: forest ({inputs})"
        )
        figure = self.figures / f"confusion_{name}.png"
        (self.out / "rf" / name / "confusion_matrix.png").replace(figure)
        return {**_metrics_brief(metrics), "figure": figure.name}

    def trust(self, species: str, label: str, alpha: float = 0.1) -> dict:
        """How far to trust a call: the forest with calibration nested in each outer fold."""
        from .evaluation.folds import cell_folds
        from .evaluation.run import write_trust
        from .evaluation.trust import evaluate_trust
        from .models.forest import make_forest

        table = self.cells(species)
        table = table[table[label].notna()].reset_index(drop=True)
        s = self.settings
        folds = cell_folds(table, label, species, "grouped", s.folds, s.repeats, s.seed)
        others = {sp: self.cells(sp) for sp in ("mouse", "human") if sp != species}
        evaluation = evaluate_trust(
            make_forest(s.seed, n_estimators=s.forest_trees), table, label, folds, species,
            usable_features(table), alpha, others, seed=s.seed,
            description=f"forest {species} {label}, nested calibration",
        )  # fmt: skip
        name = f"trust_{species}_{label}"
        title = f"forest, {species} {_classes(label)}"
        summary = write_trust(self.out / "trust" / name, evaluation, title)
        figures = []
        for source, caption in [
            ("reliability.png", f"{title}: accuracy against top-class probability, out of fold"),
            ("accuracy_vs_called.png", f"{title}: accuracy of the calls made, surest first"),
        ]:
            target = self.figures / f"{name}_{source}"
            shutil.copyfile(self.out / "trust" / name / source, target)
            figures.append((target.name, caption))
        keep = ("reliability", "accuracy_by_share_called")
        return {
            **{k: v for k, v in summary.items() if k not in keep},
            "title": title,
            "n_folds": s.folds,
            "n_repeats": s.repeats,
            "figures": figures,
        }

    def forest_importance(self, species: str) -> dict:
        from .evaluation.folds import cell_folds
        from .evaluation.importance import family_permutation_importance
        from .models.forest import make_forest
        from .report.figures import family_importance_png

        table = self.cells(species)
        label = DEFAULT_LABEL[species]
        s = self.settings
        folds = cell_folds(
            table,
            label,
            species,
            "grouped",
            s.folds,
            1,
            s.seed,
        )
        importance = family_permutation_importance(
            make_forest(s.seed, n_estimators=s.forest_trees),
            table,
            label,
            usable_features(table),
            folds[: s.importance_folds],
            s.importance_repeats,
            s.seed,
        )
        importance.to_csv(self.out / f"rf_family_importance_{species}.csv", index=False)
        png = family_importance_png(
            importance,
            self.figures / f"rf_importance_{species}.png",
            f"{species}: forest, permutation importance per family",
        )
        return {"table": importance.to_dict(orient="records"), "figure": png.name}

    def _bilstm(self, **overrides):
        from .models.bilstm import BiLSTMClassifier

        s = self.settings
        return BiLSTMClassifier(
            n_members=s.bilstm_members,
            max_epochs=s.bilstm_max_epochs,
            random_state=s.seed,
            **overrides,
        )

    def bilstm(self, species: str, label: str, protocol: str) -> dict:
        from .evaluation.folds import cell_folds
        from .evaluation.run import write_evaluation
        from .evaluation.transfer_study import (
            attention_by_class,
            cross_validate_attention,
            plot_attention,
        )

        table = self.cells(species)
        s = self.settings
        repeats = s.network_repeats if protocol == "grouped" else s.network_seed_repeats
        folds = cell_folds(table, label, species, protocol, s.network_folds, repeats, s.seed)
        result, attention = cross_validate_attention(
            self._bilstm(), table, label, folds, n_jobs=self.n_jobs
        )
        metrics = result.summary(
            model="bilstm", species=species, label=label, protocol=protocol, seed=s.seed
        )
        name = f"bilstm_{species}_{label}_{protocol}"
        write_evaluation(self.out / "bilstm" / name, result, metrics, f"{species} {label}: BiLSTM")
        brief = {
            **_metrics_brief(metrics),
            "title": f"BiLSTM {species} {_classes(label)}",
            "reference": f"bilstm_{species}_{label}",
        }
        if protocol == "grouped":
            by_class = attention_by_class(attention)
            by_class.to_csv(self.out / f"attention_{name}.csv")
            png = plot_attention(
                by_class,
                self.figures / f"attention_{name}.png",
                f"{species}: BiLSTM attention per family",
            )
            brief["figure"] = png.name
        return brief

    def transfer(self, protocol: str = "grouped") -> dict:
        """The transfer study: a learning curve on donor-grouped folds, or (`seed`) the
        study's random folds with all training cells, to set beside its table."""
        from .evaluation.folds import cell_folds
        from .evaluation.transfer_study import run_transfer_study, study_variants, write_study

        s = self.settings
        human, mouse = self.cells("human"), self.cells("mouse")
        grouped = protocol == "grouped"
        repeats = s.transfer_repeats if grouped else s.network_seed_repeats
        fractions = s.transfer_fractions if grouped else (1.0,)
        folds = cell_folds(human, "label", "human", protocol, s.network_folds, repeats, s.seed)
        variants, features = study_variants(
            human, mouse, s.transfer_methods, s.bilstm_members, s.seed
        )
        for model in variants.values():
            if hasattr(model, "max_epochs"):
                model.set_params(max_epochs=s.bilstm_max_epochs)
        study = run_transfer_study(
            human, variants, folds, fractions, "label", features, s.seed, n_jobs=self.n_jobs
        )
        name = "transfer" if grouped else f"transfer_{protocol}"
        out = self.out / name
        context = {"protocol": protocol, "n_folds": s.network_folds, "n_repeats": repeats}
        summary = write_study(study, out, context)
        figures = []
        for source, caption in [
            (
                "learning_curve.png",
                "human macro-F1 against the share of human training donors (test folds unchanged)",
            ),
            *[
                (f"attention_by_class_{n}.png", f"{n}: attention per family")
                for n in study.attention
            ],
        ]:
            if grouped and (out / source).is_file():  # one share of donors: no curve to draw
                (out / source).replace(self.figures / f"{name}_{source}")
                figures.append((f"{name}_{source}", caption))
        top = max(fractions)
        scores = {
            variant: {
                **_metrics_brief(
                    result.summary(model=variant, species="human", label="label", protocol=protocol)
                ),
                "title": f"{variant} (human 4-class, all training donors)",
                "reference": {"bilstm_human": "transfer_human_only"}.get(
                    variant, "transfer_best" if variant.startswith("transfer") else ""
                ),
            }
            for (variant, fraction), result in study.results.items()
            if fraction == top
        }
        where = "" if grouped else f", {protocol} protocol"
        paired = {
            f"{row['variant']} − {row['reference']} @ {row['fraction']:.0%}{where}": {
                "mean": row["mean_diff"],
                "ci95": [row["ci95_low"], row["ci95_high"]],
                "n": row["n"],
            }
            for row in study.paired().to_dict(orient="records")
        }
        return {
            "scores": scores,
            "paired": paired,
            "figures": figures,
            "learning_curve": summary["learning_curve"],
        }

    def reference(self, species: str) -> dict:
        """The hierarchical reference model per level on the shared folds, with its figures."""
        from .reference import evaluate_reference_model, write_reference_evaluation

        s = self.settings
        result = evaluate_reference_model(
            species, s.folds, s.repeats, s.seed, REFERENCE_ALPHA, self.n_jobs,
            data_dir=self.data_dir, mirror=self.mirror,
        )  # fmt: skip
        target = write_reference_evaluation(self.out / "reference" / species, result, species)
        figures = []
        for name, caption in (
            ("t_type_confusion", "t-type confusion matrix grouped by subclass"),
            ("t_type_f1_vs_cells", "t-type F1 against the t-type's number of cells"),
        ):
            copy = self.figures / f"reference_{species}_{name}.png"
            shutil.copyfile(target / f"{name}.png", copy)
            figures.append((copy.name, f"{species} reference model: {caption}"))
        m = result.metrics
        keep = ("accuracy", "macro_f1", "balanced_accuracy", "coverage", "mean_set_size")
        levels = {
            level: {k: {"mean": m[level][k]["mean"], "sd": m[level][k]["sd"]} for k in keep}
            for level in ("subclass", "t_type")
        }
        wrong = m["t_type"]["errors_with_right_subclass"]["mean"]
        return {
            "species": species, "n_cells": m["n_cells"], "n_t_types": m["n_t_types"],
            "n_folds": m["n_folds"], "n_repeats": m["n_repeats"], "alpha": m["alpha"],
            "levels": levels, "t_type_errors_with_right_subclass": wrong, "figures": figures,
        }  # fmt: skip

    def save_models(self) -> dict:
        from .evaluation.folds import donor_kfold
        from .models.bundle import card_for, save_model
        from .models.forest import make_forest
        from .models.trusted import store_trust

        saved = {}
        for species in ("mouse", "human"):
            table = self.cells(species)
            label = DEFAULT_LABEL[species]
            features = usable_features(table)
            model = make_forest(self.settings.seed, n_estimators=self.settings.forest_trees).fit(
                table[features], table[label].to_numpy()
            )
            card = card_for(
                model, "rf-raw", species, label, len(table),
                seed=self.settings.seed, trained_by="ephys2tx reproduce",
            )  # fmt: skip
            target = self.out / "models" / f"rf-{species}"
            save_model(target, model, card)
            others = {sp: self.cells(sp) for sp in ("mouse", "human") if sp != species}
            store_trust(
                target, make_forest(self.settings.seed, n_estimators=self.settings.forest_trees),
                model, table, label, species, features, others,
                donor_kfold(self.settings.folds, self.settings.seed), self.settings.seed,
            )  # fmt: skip
            saved[f"rf-{species}"] = str(target.relative_to(self.out))
        return saved


FOREST_RUNS = [  # species, label, inputs, protocol, also in --quick
    ("mouse", "label5", "raw", "grouped", True),
    ("mouse", "label", "raw", "grouped", True),
    ("human", "label", "raw", "grouped", True),
    ("mouse", "label5", "spca", "grouped", False),
    ("human", "label", "spca", "grouped", True),
    ("mouse", "label5", "raw", "seed", False),
    ("human", "label", "raw", "seed", True),
]


TRUST_RUNS = [  # species, label, also in --quick
    ("human", "label", True),
    ("mouse", "label5", False),
]


def _classes(label: str) -> str:
    return "5-class" if label == "label5" else "4-class"


def _sequence_results(bilstm: dict, transfer: dict, transfer_seed: dict | None) -> dict:
    notes = [
        "The transfer study refits every variant at every share of human training donors on "
        "the same donor-grouped human folds; mouse cells are only ever training data. Paired "
        "differences are fold by fold against the human-only BiLSTM, with a t-interval over folds.",
        "The study's protocol (random folds, cells of one donor on both sides) is run with all "
        "training cells, so its figures can be set beside the study's table.",
    ]
    seed = transfer_seed or {"scores": {}, "paired": {}}
    return {
        "scores": {
            **bilstm,
            **{f"transfer_{k}": v for k, v in transfer["scores"].items()},
            **{f"transfer_seed_{k}": v for k, v in seed["scores"].items()},
        },
        "paired": {**transfer["paired"], **seed["paired"]},
        "figures": [
            (v["figure"], f"{v['title']}: mean attention per family and true class")
            for v in bilstm.values()
            if "figure" in v
        ]
        + [tuple(f) for f in transfer["figures"]],
        "learning_curve": transfer["learning_curve"],
        "notes": notes,
    }


BILSTM_RUNS = [  # species, label, protocol, also in --quick
    ("mouse", "label5", "grouped", True),
    ("mouse", "label5", "seed", False),
]  # the human seed-protocol BiLSTM is the human-only variant of the seed transfer step


def reproduce(
    out: Path,
    quick: bool = False,
    seed: int = 0,
    data_dir: str | Path | None = None,
    mirror: str | None = None,
    n_jobs: int = 1,
) -> dict:
    """Run every step (reusing cached ones) and write results.json and report.html."""
    from .report.html import write_report

    settings = StudySettings.make(quick, seed)
    study = Study(out, settings, data_dir, mirror, n_jobs)
    run = study.cache.run
    results: dict = {
        "ephys2tx_version": __version__,
        "quick": quick,
        "settings": asdict(settings),
    }
    results["data"] = run("data", study.data)
    results["embedding"] = {
        sp: run(f"embed_{sp}", lambda sp=sp: study.embed(sp)) for sp in ("mouse", "human")
    }
    results["forest"] = {
        f"rf_{sp}_{lab}_{inp}_{pro}": run(
            f"rf_{sp}_{lab}_{inp}_{pro}", lambda a=(sp, lab, inp, pro): study.forest(*a)
        )
        for sp, lab, inp, pro, in_quick in FOREST_RUNS
        if in_quick or not quick
    }
    results["trust"] = {
        f"{sp}_{lab}": run(f"trust_{sp}_{lab}", lambda a=(sp, lab): study.trust(*a))
        for sp, lab, in_quick in TRUST_RUNS
        if in_quick or not quick
    }
    results["forest_importance"] = {
        "human": run("rf_importance_human", lambda: study.forest_importance("human"))
    }
    bilstm = {
        f"bilstm_{sp}_{lab}_{pro}": run(
            f"bilstm_{sp}_{lab}_{pro}", lambda a=(sp, lab, pro): study.bilstm(*a)
        )
        for sp, lab, pro, in_quick in BILSTM_RUNS
        if in_quick or not quick
    }
    transfer_seed = None if quick else run("transfer_seed", lambda: study.transfer("seed"))
    results["sequence"] = _sequence_results(bilstm, run("transfer", study.transfer), transfer_seed)
    results["reference"] = {
        sp: run(f"reference_{sp}", lambda sp=sp: study.reference(sp)) for sp in ("mouse", "human")
    }
    results["models"] = run("models", study.save_models)
    tmp = study.out / ".results.json.part"
    tmp.write_text(json.dumps(results, indent=2, default=float))
    tmp.replace(study.out / "results.json")
    write_report(results, study.out)
    return results
