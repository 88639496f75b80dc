"""The steps of a study. Each reads cells from the study's source, writes its files under
DIR/ and returns a typed record (`report.results`); `Study.run` caches them by settings.

The same steps run the reproduction (public cells) and the demo (SYNTHETIC cells); the
`evaluate`/`train` commands call the step functions below the class on their own options.
"""

from __future__ import annotations

import copy
import shutil
import warnings
from pathlib import Path

import pandas as pd

from ..datasets.cells import SPECIES, usable_features
from ..datasets.labels import DEFAULT_LABEL
from ..evaluation.crossval import CVResult
from ..evaluation.splits import Splitter
from ..evaluation.transfer_study import StudyResult, cross_validate_attention, run_transfer_study
from ..models import recipes
from ..report.results import (
    CrossLabRun,
    DefaultModelRun,
    Embedding,
    Figure,
    ForestRun,
    Importance,
    NetworkRun,
    PairedDifference,
    Scores,
    SpeciesData,
    TransferStudy,
    TrustRun,
    classes_name,
)
from .cache import StepCache
from .outputs import write_attention, write_evaluation, write_study, write_trust
from .settings import StudySettings
from .sources import PublicCells, SyntheticCells

DEFAULT_MODEL_ALPHA = 0.1  # conformal level of the default model's sets in the report
TRUST_ALPHA = 0.1


# --- step functions the commands share --------------------------------------------------
def cross_validate_network(
    model, table: pd.DataFrame, label: str, splitter: Splitter, n_jobs: int = 1, progress=True
) -> tuple[CVResult, pd.DataFrame | None]:
    """A BiLSTM on a splitter's folds: out-of-fold predictions and attention weights."""
    folds = splitter.cell_folds(table, label)
    return cross_validate_attention(model, table, label, folds, progress=progress, n_jobs=n_jobs)


def transfer_study(
    human: pd.DataFrame,
    variants: dict[str, object],
    splitter: Splitter,
    fractions: tuple[float, ...],
    n_jobs: int = 1,
) -> StudyResult:
    """Every variant at every share of human training donors on the splitter's human folds."""
    features = usable_features(human)
    forests = {name: features for name in variants if name.startswith("rf")}
    folds = splitter.cell_folds(human, "label")
    return run_transfer_study(
        human, variants, folds, fractions, "label", forests, splitter.seed, n_jobs=n_jobs
    )


def paired_records(study: StudyResult, protocol: str) -> list[PairedDifference]:
    """The study's paired differences against the human-only BiLSTM as records."""
    return [
        PairedDifference(
            variant=row["variant"],
            baseline=row["baseline"],
            fraction=float(row["fraction"]),
            protocol=protocol,
            mean=float(row["mean_diff"]),
            ci95=[float(row["ci95_low"]), float(row["ci95_high"])],
            n=int(row["n"]),
            n_folds_better=int(row["n_folds_better"]),
        )
        for row in study.paired().to_dict(orient="records")
    ]


# --- the study ----------------------------------------------------------------------------
class Study:
    """The steps of a study, sharing its cells, settings and output folders."""

    def __init__(
        self,
        out: Path,
        settings: StudySettings,
        source: PublicCells | SyntheticCells,
        n_jobs: int = 1,
    ):
        self.out = Path(out)
        self.settings = settings
        self.source = source
        self.n_jobs = n_jobs  # folds of a network fitted at once; results do not depend on it
        self.cache = StepCache(self.out, settings)
        self.figures = self.out / "figures"
        self.figures.mkdir(parents=True, exist_ok=True)

    @property
    def synthetic(self) -> bool:
        return self.source.synthetic

    def cells(self, species: str) -> pd.DataFrame:
        return self.source.cells(species)

    def for_lanes(self) -> Study:
        """A copy for worker processes (`schedule.run_steps`): one job per step, and the cells
        read once here rather than once per step."""
        for species in SPECIES:
            self.cells(species)
        lane = copy.copy(self)
        lane.n_jobs = 1
        return lane

    def _figure(self, source: Path, name: str, caption: str, move: bool = False) -> Figure:
        """Copy (or move) a PNG an evaluation wrote into figures/ under `name`."""
        target = self.figures / name
        if move:
            source.replace(target)
        else:
            shutil.copyfile(source, target)
        return Figure(target.name, caption)

    # --- steps ---------------------------------------------------------------------------
    def data(self) -> tuple[dict[str, SpeciesData], dict]:
        return self.source.prepare(self.out, self.cache)

    def embed(self, species: str) -> Embedding:
        from ..report.figures import embedding_png
        from ..representations.embedding import embed_cells

        table = self.cells(species)
        label = DEFAULT_LABEL[species]
        # a synthetic cohort is smaller than UMAP's neighbourhood, which UMAP shrinks itself
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "n_neighbors is larger", UserWarning)
            emb = embed_cells(table, usable_features(table), label, self.settings.seed)
        title = f"{species}: sPCA → UMAP"
        png = embedding_png(emb.coords, self.figures / f"umap_{species}.png", title)
        caption = f"{species}: per-family sPCA then UMAP ({len(emb.coords)} cells)"
        return Embedding(species=species, **emb.summary(), figure=Figure(png.name, caption))

    def forest(self, species: str, label: str, inputs: str, protocol: str) -> ForestRun:
        from ..evaluation.run import evaluate

        table = self.cells(species)
        s = self.settings
        result, metrics = evaluate(
            recipes.forest(s.seed, inputs, s.forest_trees),
            table,
            species,
            label,
            usable_features(table),
            s.forest_splitter(protocol, species),
            description=f"forest {species} {label} {inputs} {protocol}",
            model=f"rf-{inputs}",
        )
        run = ForestRun(species, label, inputs, protocol, Scores.from_metrics(metrics), None)
        folder = self.out / "rf" / run.key
        write_evaluation(folder, result, metrics, f"{species} {label}: forest ({inputs})")
        where = "donor-grouped folds" if protocol == "grouped" else f"{protocol} protocol"
        run.figure = self._figure(
            folder / "confusion_matrix.png", f"confusion_{run.key}.png",
            f"{run.title}, {where}", move=True,
        )  # fmt: skip
        return run

    def trust(self, species: str, label: str) -> TrustRun:
        """How far to trust a call: the forest with calibration nested in each outer fold."""
        from ..evaluation.trust import evaluate_trust

        table = self.cells(species)
        table = table[table[label].notna()].reset_index(drop=True)
        s = self.settings
        splitter = s.nested_splitter()
        others = {sp: self.cells(sp) for sp in SPECIES if sp != species}
        evaluation = evaluate_trust(
            recipes.forest(s.seed, trees=s.forest_trees), table, label,
            splitter.cell_folds(table, label), species, usable_features(table), TRUST_ALPHA,
            others, seed=s.seed, description=f"forest {species} {label}, nested calibration",
        )  # fmt: skip
        name = f"trust_{species}_{label}"
        title = f"forest, {species} {classes_name(label)}"
        summary = write_trust(self.out / "trust" / name, evaluation, title)
        figures = [
            self._figure(self.out / "trust" / name / source, f"{name}_{source}", caption)
            for source, caption in [
                (
                    "reliability.png",
                    f"{title}: accuracy against top-class probability, out of fold",
                ),
                ("accuracy_vs_called.png", f"{title}: accuracy of the calls made, surest first"),
            ]
        ]
        typed = ("alpha", "coverage", "coverage_per_class", "mean_set_size", "share_confident")
        typed += ("confident_accuracy", "ece", "ece_unscaled")
        drawn = ("reliability", "accuracy_by_share_called")
        return TrustRun(
            species=species, label=label, title=title, **{k: summary[k] for k in typed},
            n_folds=splitter.n_splits, n_repeats=splitter.n_repeats, figures=figures,
            details={k: v for k, v in summary.items() if k not in typed + drawn},
        )  # fmt: skip

    def importance(self, species: str) -> Importance:
        from ..evaluation.importance import family_permutation_importance
        from ..report.figures import family_importance_png

        table = self.cells(species)
        label = DEFAULT_LABEL[species]
        s = self.settings
        folds = s.importance_splitter().cell_folds(table, label)
        table_imp = family_permutation_importance(
            recipes.forest(s.seed, trees=s.forest_trees), table, label, usable_features(table),
            folds[: s.importance_folds], s.importance_repeats, s.seed,
        )  # fmt: skip
        table_imp.to_csv(self.out / f"rf_family_importance_{species}.csv", index=False)
        png = family_importance_png(
            table_imp,
            self.figures / f"rf_importance_{species}.png",
            f"{species}: forest, permutation importance per family",
        )
        figure = Figure(png.name, f"{species} forest: permutation importance per family")
        if not (table_imp["mean"].abs() > 0).any():  # an empty bar chart reads as a bug
            figure = None  # drawn, but left out of the report (a note says why)
        return Importance(species, table_imp.to_dict(orient="records"), figure)

    def bilstm(self, species: str, label: str, protocol: str) -> NetworkRun:
        s = self.settings
        table = self.cells(species)
        result, attention = cross_validate_network(
            recipes.bilstm(s.network, s.seed),
            table,
            label,
            s.network_splitter(protocol, species),
            self.n_jobs,
        )
        metrics = result.summary(
            model="bilstm", species=species, label=label, protocol=protocol, seed=s.seed
        )
        name = f"bilstm_{species}_{label}_{protocol}"
        write_evaluation(self.out / "bilstm" / name, result, metrics, f"{species} {label}: BiLSTM")
        title = f"BiLSTM {species} {classes_name(label)}"
        run = NetworkRun(name, title, Scores.from_metrics(metrics), f"bilstm_{species}_{label}")
        if protocol == "grouped":
            png = write_attention(
                self.figures, f"attention_{name}", attention,
                f"{species}: BiLSTM attention per family",
            )  # fmt: skip
            (self.figures / f"attention_{name}.csv").replace(self.out / f"attention_{name}.csv")
            run.figure = Figure(png.name, f"{title}: mean attention per family and true class")
        return run

    def transfer(self, protocol: str = "grouped") -> TransferStudy:
        """The transfer study: a learning curve on donor-grouped folds, or (`seed`) the
        study's random folds with all training cells, to set beside its table."""
        s = self.settings
        human, mouse = self.cells("human"), self.cells("mouse")
        grouped = protocol == "grouped"
        splitter = s.transfer_splitter(protocol)
        fractions = s.transfer_fractions if grouped else (1.0,)
        variants = recipes.transfer_variants(
            s.network,
            s.seed,
            mouse,
            usable_features(human),
            s.transfer_methods,
            s.transfer_baselines,
        )
        study = transfer_study(human, variants, splitter, fractions, self.n_jobs)
        name = "transfer" if grouped else f"transfer_{protocol}"
        out = self.out / name
        context = {"protocol": protocol, "n_folds": splitter.n_splits}
        write_study(study, out, {**context, "n_repeats": splitter.n_repeats})
        figures = []
        if grouped:
            sources = [("learning_curve.png", "human macro-F1 against the share of human "
                        "training donors (test folds unchanged)")]  # fmt: skip
            sources += [
                (f"attention_by_class_{n}.png", f"{n}: attention per family")
                for n in study.attention
            ]
            figures = [
                self._figure(out / f, f"{name}_{f}", caption, move=True) for f, caption in sources
            ]
        top = max(fractions)
        scores = {
            variant: NetworkRun(
                name=variant,
                title=f"{variant} (human 4-class, all training donors)",
                scores=Scores.from_metrics(
                    result.summary(model=variant, species="human", label="label", protocol=protocol)
                ),
                published={"bilstm_human": "transfer_human_only"}.get(
                    variant, "transfer_best" if variant.startswith("transfer") else ""
                ),
            )
            for (variant, fraction), result in study.results.items()
            if fraction == top
        }
        curve = study.learning_curve().to_dict(orient="records")
        return TransferStudy(protocol, scores, paired_records(study, protocol), figures, curve)

    def default_model(self, species: str) -> DefaultModelRun:
        """The hierarchical default model per level on the shared folds, with its figures."""
        from ..default_model import evaluate_default_model, write_default_model_evaluation

        s = self.settings
        source = self.source
        result = evaluate_default_model(
            species, s.nested_splitter(), DEFAULT_MODEL_ALPHA, self.n_jobs,
            data_dir=getattr(source, "data_dir", None), mirror=getattr(source, "mirror", None),
        )  # fmt: skip
        target = write_default_model_evaluation(
            self.out / "default-model" / species, result, species
        )
        figures = [
            self._figure(
                target / f"{name}.png",
                f"default_model_{species}_{name}.png",
                f"{species} default model: {caption}",
            )  # fmt: skip
            for name, caption in (
                ("t_type_confusion", "t-type confusion matrix grouped by subclass"),
                ("t_type_f1_vs_cells", "t-type F1 against the t-type's number of cells"),
            )
        ]
        m = result.metrics
        keep = ("accuracy", "macro_f1", "balanced_accuracy", "coverage", "mean_set_size")
        levels = {
            level: {k: {"mean": m[level][k]["mean"], "sd": m[level][k]["sd"]} for k in keep}
            for level in ("subclass", "t_type")
        }
        return DefaultModelRun(
            species=species, n_cells=m["n_cells"], n_t_types=m["n_t_types"],
            n_folds=m["n_folds"], n_repeats=m["n_repeats"], alpha=m["alpha"], levels=levels,
            t_type_errors_with_right_subclass=m["t_type"]["errors_with_right_subclass"]["mean"],
            subclass_ece=m["subclass"]["ece"], subclass_ece_unscaled=m["subclass"]["ece_unscaled"],
            figures=figures,
        )  # fmt: skip

    def crosslab(self) -> CrossLabRun:
        """Another lab's cells: the mouse reference on the M1 cells of Scala et al. 2021, as
        it is, adapted without labels, with 25% of the mice labelled, and M1 alone."""
        from .crosslab import crosslab_figure, run_crosslab

        source = self.source
        result = run_crosslab(
            self.settings.seed, self.settings.crosslab_draws, (0.25,), self.n_jobs,
            getattr(source, "data_dir", None), getattr(source, "mirror", None), say=lambda _: None,
        )  # fmt: skip
        target = self.out / "crosslab"
        png = crosslab_figure(result, target / "crosslab.png")
        summary = result.summary()
        keep = [c for c in summary.columns if not c.endswith("_sd")]
        rows = {
            str(r): {k: float(v) for k, v in summary.loc[r, keep].items() if v == v}
            for r in summary.index
        }
        first = result.scores.iloc[0]
        return CrossLabRun(
            n_gaba=int(first["n_gaba"]), n_excitatory=int(result.notes.get("n_excitatory", 0)),
            features=list(result.notes["features"]), rows=rows,
            selection={str(k): v for k, v in result.selection.items()},
            lab_shift=result.notes.get("lab_shift_a"), draws=self.settings.crosslab_draws,
            seconds=float(result.notes["seconds"]),
            figure=self._figure(png, "crosslab.png", "Another lab's cells (M1): the rows of "
                                "the cross-lab benchmark"),
        )  # fmt: skip

    def save_models(self) -> dict[str, str]:
        """Forests of both species (with what `predict` needs to say how far to trust a
        call, when `store_trust`), plus the human networks when `save_networks`."""
        from ..evaluation.splits import donor_kfold
        from ..models.bundle import Provenance, card_for
        from ..models.trusted import fit_flat_trust, save_trained
        from ..threads import limit

        s = self.settings
        trained_by = "ephys2tx demo" if self.synthetic else "ephys2tx reproduce"
        # never use a model of synthetic cells on real cells: its card says so
        provenance = Provenance(seed=s.seed, trained_by=trained_by, synthetic=self.synthetic)
        saved = {}

        def save(name: str, model, kind: str, species: str, label: str, n: int, trust=None):
            """Write one model directory with its trust (None: none); it appears only when
            complete."""
            card = card_for(model, kind, species, label, n, provenance)
            target = self.out / "models" / name
            save_trained(target, model, card, trust)
            saved[name] = str(target.relative_to(self.out))

        for species in SPECIES:
            table = self.cells(species)
            label = DEFAULT_LABEL[species]
            features = usable_features(table)
            model = recipes.forest(s.seed, trees=s.forest_trees)
            with limit():
                model.fit(table[features], table[label].to_numpy())
            trust = None
            if s.store_trust:
                others = {sp: self.cells(sp) for sp in SPECIES if sp != species}
                with limit():
                    trust = fit_flat_trust(
                        recipes.forest(s.seed, trees=s.forest_trees), model, table, label,
                        species, features, other=others, cv=donor_kfold(s.folds, s.seed),
                        seed=s.seed,
                    )  # fmt: skip
            save(f"rf-{species}", model, "rf-raw", species, label, len(table), trust)
        if s.save_networks:
            human = self.cells("human")
            y = human["label"].to_numpy()
            networks = {"bilstm-human": ("bilstm", recipes.bilstm(s.network, s.seed))}
            for method in s.transfer_methods:
                model = recipes.transfer(s.network, s.seed, self.cells("mouse"), method)
                networks[f"transfer-{method}-human"] = (f"transfer-{method}", model)
            for name, (kind, model) in networks.items():
                with limit():
                    model.fit(human, y)
                save(name, model, kind, "human", "label", len(human))
        return saved
