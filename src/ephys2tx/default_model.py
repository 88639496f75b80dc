"""The default model out of the box: trained from the public tables on first use, cached
in the data directory, keyed by the data checksums, the settings and the package version.

No weights are downloaded: the model is fitted here from the pinned public tables (after
`ephys2tx fetch`, or read from a mirror) and reused while those stay the same.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from .datasets.cells import (
    build_cells,
    check_species,
    other_species_cells,
    usable_features,
)
from .datasets.fetch import data_path, resolve_data_dir
from .datasets.labels import DEFAULT_LABEL
from .datasets.sources import DATA_FILES
from .datasets.taxonomy import (
    HOMOLOGY_FILE,
    Taxonomy,
    build_taxonomy,
    homology_links,
    read_homology,
)
from .errors import Ephys2txError
from .evaluation.hierarchy import HierarchyEvaluation, evaluate_hierarchy, t_type_confusion
from .evaluation.splits import DonorKFold, donor_kfold
from .files import atomic_write, atomic_write_text
from .models.bundle import ModelCard, Provenance, load_model, read_card
from .models.hierarchy import (
    CONDITION_FEATURE,
    HierarchicalClassifier,
    HierarchyFit,
    HierarchySettings,
    fit_hierarchy,
    model_inputs,
    novelty_weights,
)
from .models.mapping import card_features, hierarchical_card
from .models.members import boosting, forest, logistic, slow_boosting, small_tree_boosting, svc
from .models.trusted import CALIBRATION_FOLDS, check_trainable, fit_trust, load_trust, save_trained
from .report.hierarchy_figures import t_type_confusion_png, t_type_f1_png
from .threads import limit
from .trust.calibrate import Calibration
from .trust.interneuron import m1_detector
from .version import __version__

CACHE_FOLDER = "default-models"
# Models on a subset of the default features (a lab's table that measures only some), in a
# folder of their own under CACHE_FOLDER, keyed by the feature set.
SUBSET_FOLDER = "subsets"
# A subset model needs at least this many features to be worth training.
MIN_SUBSET_FEATURES = 3
# A table "has" a model input when it measures it in at least this share of the share of
# training cells that do (see `measured_inputs`).
SUBSET_RELATIVE_COVERAGE = 0.5
# Bumped when what a cached model holds changes (2: the subclass temperature; 3: skops
# files, see models/bundle.py; 4: the `not_interneuron` detector and the `lab_shift` null;
# 5: t-type names stripped of surrounding spaces; 6: the typed card and per-level
# calibration.json, model-directory format 3), so older caches are retrained.
CACHE_FORMAT = 6
# The folders of the data directory each species' cell table is built from.
# (The mouse model also reads the pinned M1 cells of Scala et al. 2021 for its
# `not_interneuron` detector; they are not training cells, so they stay out of the key.)
SPECIES_SOURCES = {"mouse": ("mouse_gouwens2020/",), "human": ("human_lee2023/",)}
# The settings chosen on seed-100 folds (benchmarks/select_subclass.py for the subclass
# average, benchmarks/select_default_model.py for the t-type level; docs/research/default-model.md).
DEFAULT_SETTINGS: dict[str, HierarchySettings] = {
    "mouse": HierarchySettings(
        subclass=(
            ("rf", forest()),
            ("hgb", boosting()),
            ("logreg1", logistic(C=1.0)),
            ("svc", svc()),
        ),
        t_type=(
            ("rf", forest()),
            ("hgb-t", small_tree_boosting()),
            ("logreg1", logistic(C=1.0)),
            ("svc", svc()),
        ),
    ),
    "human": HierarchySettings(
        subclass=(("rf", forest()), ("hgb-slow", slow_boosting()), ("logreg", logistic(C=0.1))),
        t_type=(("rf", forest()), ("svc", svc())),
        learned_first=True,
    ),
}
EXTRA_INPUTS: dict[str, list[str]] = {"mouse": [], "human": [CONDITION_FEATURE]}
# Wall time of a first-use fit on 2 cores, rounded, for the message that announces it
# (measured by benchmarks/bench_default_model.py: docs/results/default-model.md).
FIRST_USE_SECONDS = {"mouse": 60, "human": 30}


def data_files(species: str) -> list[str]:
    """The pinned files a species' default model is trained from."""
    prefixes = SPECIES_SOURCES[check_species(species)]
    names = [n for n in DATA_FILES if n.startswith(prefixes)]
    return sorted(n for n in names if n.endswith(".csv")) + [HOMOLOGY_FILE]


def data_checksums(species: str, data_dir=None, mirror=None) -> dict[str, str]:
    """sha256 of each data file used: the pinned one, once `data_path` has checked the local
    copy against it (fetched from the mirror when absent; an edited copy is refused)."""
    for name in data_files(species):
        data_path(name, data_dir, mirror)
    return {name: DATA_FILES[name].sha256 for name in data_files(species)}


def cache_key(
    species: str,
    checksums: dict[str, str],
    settings: HierarchySettings | None = None,
    features: list[str] | None = None,
) -> str:
    """Key of a cached model: data checksums, settings (each member's class and parameters),
    package version and, for a model on a subset of the default features, that feature set
    (in any order)."""
    settings = settings if settings is not None else DEFAULT_SETTINGS[species]
    payload = {
        "species": species,
        "data": checksums,
        "settings": settings.describe(),
        "version": __version__,
        "format": CACHE_FORMAT,
    }
    if features is not None:  # absent for the default model, so its key is unchanged
        payload["features"] = sorted(set(features))
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def default_training_cells(
    species: str, data_dir=None, mirror=None, exclude: set[int] | None = None
) -> pd.DataFrame:
    """A species' labelled cells (minus excluded specimens), as the default model sees them."""
    cells, _ = build_cells(species, data_dir, mirror)
    cells = cells[cells[DEFAULT_LABEL[species]].notna()]
    if exclude:
        cells = cells[~cells["specimen_id"].isin(exclude)]
    return cells.reset_index(drop=True)


def train_default_model(
    species: str,
    cells: pd.DataFrame,
    data_dir=None,
    mirror=None,
    settings: HierarchySettings | None = None,
    seed: int = 0,
    n_jobs: int | None = None,
    features: list[str] | None = None,
) -> tuple[HierarchyFit, ModelCard]:
    """Fit and calibrate a default model on `cells`; return it with its model card.

    `features`: train on only these of the default inputs (a lab's table that measures
    some of them), rather than on all. `n_jobs` folds are fitted side by side, as threads
    (None or -1: the thread policy's count); each fold on one thread, the final fit on all."""
    settings = settings if settings is not None else DEFAULT_SETTINGS[species]
    check_trainable(cells, DEFAULT_LABEL[species])
    default = usable_features(cells) + EXTRA_INPUTS[species]
    if features is not None:
        unknown = sorted(set(features) - set(default))
        if unknown:
            raise Ephys2txError(
                f"{', '.join(unknown)}: not input(s) of the {species} default model; a "
                "subset model is trained on some of its inputs only"
            )
    features = default if features is None else [f for f in default if f in set(features)]
    t_types = sorted(cells["t_type"].dropna().unique())
    links = homology_links(read_homology(data_dir, mirror), species, t_types)
    cv = donor_kfold(CALIBRATION_FOLDS, seed)
    with limit() as threads:
        n_jobs = threads if n_jobs is None or n_jobs < 1 else min(n_jobs, threads)
        fit = fit_hierarchy(cells, species, features, cv, settings, seed, n_jobs, homology=links)
    provenance = Provenance(seed=seed, data_sha256=data_checksums(species, data_dir, mirror))
    card = hierarchical_card(
        fit.model,
        fit.taxonomy,
        species,
        len(cells),
        provenance,
        settings.describe(),
        fit.temperature,
    )
    card.hierarchy.oof_macro_f1 = fit.oof_macro_f1
    card.hierarchy.oof_folds = f"{CALIBRATION_FOLDS} donor-grouped folds, seed {seed}"
    card.hierarchy.subset = len(features) < len(default)
    return fit, card


def fit_default_model_on(
    species: str, cells: pd.DataFrame, features: list[str], seed: int = 0, n_jobs: int = 1
) -> HierarchyFit:
    """The default model (default settings) on `features` only, calibrated on
    donor-grouped out-of-fold probabilities."""
    with limit(1):
        return fit_hierarchy(
            cells, species, features, donor_kfold(CALIBRATION_FOLDS, seed),
            DEFAULT_SETTINGS[species], seed, n_jobs,
        )  # fmt: skip


def fit_from_model_dir(model_dir: Path, n_cells: int, seed: int = 0) -> HierarchyFit | None:
    """A cached default model directory as the `HierarchyFit` it was saved from (model,
    taxonomy, per-level calibration, temperature, out-of-fold top probabilities), or None
    when it lacks any of them, or was fitted with another seed or on another number of
    cells than `n_cells`: then the caller fits one itself."""
    model, card = load_model(model_dir)
    tree = card.hierarchy
    if tree is None or card.n_train_cells != n_cells or card.provenance.seed != seed:
        return None
    levels = {"subclass": list(model.subclasses_), "t_type": list(model.taxonomy.leaves)}
    trust = load_trust(model_dir, levels)
    top = trust.top_probability
    if not trust.calibrated or top is None or len(top) != n_cells:
        return None
    calibrated = Calibration(trust.conformal, trust.temperature, top, {})
    taxonomy = Taxonomy.from_dict(tree.taxonomy)
    return HierarchyFit(model, taxonomy, list(card.features), calibrated, tree.oof_macro_f1)


def default_model_for_lab(
    species: str, lab: pd.DataFrame, features: list[str], cells: pd.DataFrame, seed: int = 0,
    n_jobs: int = 1, data_dir=None, mirror=None, say: Callable[[str], None] = print,
) -> HierarchyFit:  # fmt: skip
    """The default model on the lab's features: the cached model `predict` uses for this
    table (`subset_for_table`; trained there on first use) when it is the same fit (the
    same feature set and seed, default settings), else one fitted here."""
    subset = subset_for_table(species, lab, data_dir, mirror)
    same = set(subset if subset is not None else default_inputs(species, data_dir, mirror))
    if same == set(features):
        path = cached_default_model(species, data_dir, mirror, say, n_jobs, features=subset)
        fit = fit_from_model_dir(path, len(cells), seed)
        if fit is not None:
            return fit
        say(f"the cached model in {path} is not this fit (seed or cells differ, or older cache)")
    say(f"fitting the {species} default model on the lab's {len(features)} features")
    return fit_default_model_on(species, cells, features, seed, n_jobs)


def save_default_model(
    model_dir: Path, fit: HierarchyFit, card: ModelCard, cells: pd.DataFrame, seed: int = 0,
    data_dir=None, mirror=None,
) -> Path:  # fmt: skip
    """Fit the default model's trust (as for every model, plus the `not_interneuron` detector
    and the batch-wide `lab_shift` null) and save it with the model; the directory appears
    only when complete."""
    features = card_features(card)
    other = other_species_cells(card.species, data_dir, mirror)
    with limit():
        trust = fit_trust(
            cells, card.species, features, fit.calibrated, other=other, seed=seed,
            weights=novelty_weights(fit.model, features),
            interneuron=m1_detector(card.species, features, cells, data_dir, mirror, seed=seed),
            shift_label=card.label, folds=CALIBRATION_FOLDS,
        )  # fmt: skip
    return save_trained(model_dir, fit.model, card, trust)


def cached_default_model(
    species: str,
    data_dir=None,
    mirror=None,
    say: Callable[[str], None] = print,
    n_jobs: int | None = None,
    features: list[str] | None = None,
) -> Path:
    """The cached default model directory of a species, trained now if absent, stale or
    damaged (the cache holds only what the public tables give again).

    `features`: the model on only these of the default inputs, cached under a key of that
    set (see `subset_for_table`). One process trains in a cache folder at a time (a file
    lock per species); the others say they wait, then use its model. Under the lock,
    temporary folders of a killed trainer and models of other keys are removed; a usable
    model of the current key is never removed, so no reader sees it disappear."""
    checksums = data_checksums(species, data_dir, mirror)
    key = cache_key(species, checksums, features=features)
    root = resolve_data_dir(data_dir) / CACHE_FOLDER
    target = root / f"{species}-{key[:16]}"
    keep = target.name  # models of other keys (older data, settings or version) are stale
    if features is not None:  # subsets of the same data and version are kept side by side
        keep = f"{species}-{cache_key(species, checksums)[:8]}-"
        root = root / SUBSET_FOLDER
        target = root / f"{keep}{key[:16]}"
    what = f"{species} default model" + (
        f" on {len(features)} features" if features is not None else ""
    )
    if _usable(target) is None:
        say(f"using the cached {what} in {target}")
        return target
    root.mkdir(parents=True, exist_ok=True)
    with _trainer_lock(root / f".{species}.lock", what, say):
        _remove_stale(root, species, keep)
        problem = _usable(target)
        if problem is None:  # trained by the process we waited for
            say(f"using the cached {what} in {target}")
            return target
        why = "on first use"
        if target.exists():  # damaged: set aside, then train it again rather than stop the user
            why = f"again: the cached one is unreadable ({problem})"
            _discard(target, root, species)
        say(f"training the {what} {why} (about {FIRST_USE_SECONDS[species]} s); cached in {target}")
        start = time.perf_counter()
        cells = default_training_cells(species, data_dir, mirror)
        fit, card = train_default_model(
            species, cells, data_dir, mirror, n_jobs=n_jobs, features=features
        )
        card.train_seconds = round(time.perf_counter() - start, 1)
        save_default_model(target, fit, card, cells, data_dir=data_dir, mirror=mirror)
    return target


def _usable(target: Path) -> str | None:
    """None if `target` holds a readable model, else why not."""
    if not target.is_dir():
        return "absent"
    try:
        load_model(target)
    except Ephys2txError as err:
        return str(err)
    return None


@contextmanager
def _trainer_lock(path: Path, what: str, say: Callable[[str], None]) -> Iterator[None]:
    """Hold the training lock of a cache folder; say once when another process holds it."""
    from filelock import FileLock, Timeout

    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        say(f"waiting for another ephys2tx process that is training the {what}")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _remove_stale(root: Path, species: str, keep: str) -> None:
    """Remove (holding the lock) what no process can still need: temporary folders of a
    trainer that was killed (only the lock holder writes them) and models whose name does
    not start with `keep`, which are first renamed out of the way."""
    for path in root.glob(f".{species}-*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in root.glob(f"{species}-*"):
        if not path.name.startswith(keep) and path.is_dir():
            _discard(path, root, species)


def _discard(path: Path, root: Path, species: str) -> None:
    """Rename `path` to a temporary name (readers stop finding it at once), then delete it."""
    trash = Path(tempfile.mkdtemp(prefix=f".{species}-", dir=root))
    try:
        path.rename(trash / "old")
    except OSError:
        pass
    shutil.rmtree(trash, ignore_errors=True)


def default_inputs(species: str, data_dir=None, mirror=None) -> dict[str, float]:
    """The inputs of a species' default default model (as `train_default_model` chooses them),
    each with the share of training cells that measure it."""
    cells = default_training_cells(species, data_dir, mirror)
    condition = model_inputs(cells, [CONDITION_FEATURE])[CONDITION_FEATURE]
    cells = cells.assign(**{CONDITION_FEATURE: condition})
    inputs = usable_features(cells) + EXTRA_INPUTS[species]
    return {f: float(cells[f].notna().mean()) for f in inputs}


def measured_inputs(table: pd.DataFrame, inputs: dict[str, float]) -> list[str]:
    """The model inputs a cell table has. A feature counts when the table measures it in at
    least SUBSET_RELATIVE_COVERAGE of the share of training cells that do (at least half
    the cells for a feature every training cell has; a quarter for one half of them have):
    a column that is there but mostly empty counts as absent, while a batch that misses a
    feature about as often as the training cells do keeps it."""
    X = model_inputs(table, list(inputs))
    return [
        f for f, share in inputs.items()
        if X[f].notna().mean() >= max(SUBSET_RELATIVE_COVERAGE * share, 1e-9)
    ]  # fmt: skip


def subset_for_table(species: str, table: pd.DataFrame, data_dir=None, mirror=None):
    """The features a subset model should use for `table`, or None when the table has all of
    the default model's inputs (then the default model is used)."""
    return subset_of_inputs(species, table, default_inputs(species, data_dir, mirror))


def subset_of_inputs(species: str, table: pd.DataFrame, inputs: dict[str, float]):
    """As `subset_for_table`, given the default model's `inputs` (`default_inputs`)."""
    had = measured_inputs(table, inputs)
    if len(had) == len(inputs):
        return None
    if len(had) < MIN_SUBSET_FEATURES:
        names = list(inputs)
        shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
        raise Ephys2txError(
            f"the cells measure {len(had)} of the {species} default model's {len(inputs)} "
            f"features ({', '.join(had) or 'none'}); at least {MIN_SUBSET_FEATURES} are "
            f"needed (canonical names such as {shown}; map another pipeline's columns with "
            "--feature-map FILE)"
        )
    return had


def default_model_for_table(
    species: str,
    table: pd.DataFrame,
    data_dir=None,
    mirror=None,
    say: Callable[[str], None] = print,
    n_jobs: int | None = None,
) -> Path:
    """The default model for a cell table: the default one when the table measures all its
    inputs, else one trained on exactly the inputs it measures (cached per feature set, not
    the default with the rest left NaN)."""
    inputs = default_inputs(species, data_dir, mirror)
    subset = subset_of_inputs(species, table, inputs)
    return default_model_for_subset(species, subset, inputs, data_dir, mirror, say, n_jobs)


def default_model_for_subset(
    species: str,
    subset: list[str] | None,
    inputs: dict[str, float],
    data_dir=None,
    mirror=None,
    say: Callable[[str], None] = print,
    n_jobs: int | None = None,
) -> Path:
    """The cached default model on `subset` of its `inputs` (None: all of them). Says which,
    with the subset's own out-of-fold macro-F1 on the training cells."""
    target = cached_default_model(species, data_dir, mirror, say, n_jobs, features=subset)
    if subset is not None:
        card = read_card(target)
        f1 = card.hierarchy.oof_macro_f1
        score = f"{f1:.3f}" if isinstance(f1, float) else "not recorded"
        say(
            f"the cells measure {len(subset)} of the {species} default model's {len(inputs)} "
            f"features: predicting with the model trained on those {len(subset)} (out-of-fold "
            f"subclass macro-F1 {score} on {card.n_train_cells} training cells, "
            f"{card.hierarchy.oof_folds or 'donor-grouped folds'})"
        )
    return target


def evaluate_default_model(
    species: str,
    splitter: DonorKFold = DonorKFold(),
    alpha: float = 0.1,
    n_jobs: int = 1,
    settings: HierarchySettings | None = None,
    data_dir=None,
    mirror=None,
) -> HierarchyEvaluation:
    """The default model on donor-grouped folds of a species (both levels); the model's
    seed is the splitter's."""
    cells = default_training_cells(species, data_dir, mirror)
    label = DEFAULT_LABEL[species]
    taxonomy = build_taxonomy(cells, species)
    features = usable_features(cells) + EXTRA_INPUTS[species]
    settings = settings if settings is not None else DEFAULT_SETTINGS[species]
    seed = splitter.seed
    model = HierarchicalClassifier(taxonomy, seed=seed, n_jobs=1, **settings.params())
    folds = splitter.cell_folds(cells, label)
    result = evaluate_hierarchy(
        model, cells, label, folds, features, taxonomy, alpha, n_jobs, seed=seed
    )
    result.metrics.update(
        species=species, label=label, seed=seed, n_folds=splitter.n_splits,
        n_repeats=splitter.n_repeats,
        n_cells=len(cells), n_donors=int(cells["donor"].nunique()), settings=settings.describe(),
        n_t_types=len(taxonomy.t_types), min_cells_per_t_type=taxonomy.min_cells,
    )  # fmt: skip
    return result


def write_default_model_evaluation(out: Path, result: HierarchyEvaluation, species: str) -> Path:
    """metrics.json, predictions.csv, fold_scores.csv and the two figures in `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "metrics.json", json.dumps(result.metrics, indent=2))
    atomic_write(out / "predictions.csv", lambda p: result.predictions.to_csv(p, index=False))
    atomic_write(out / "fold_scores.csv", lambda p: result.scores.to_csv(p, index=False))
    m = result.metrics["t_type"]
    title = (
        f"{species} t-types (donor-grouped {result.metrics['n_folds']}x"
        f"{result.metrics['n_repeats']}): accuracy {m['accuracy']['mean']:.3f}, "
        f"macro-F1 {m['macro_f1']['mean']:.3f}"
    )
    counts = t_type_confusion(result.predictions, result.taxonomy)
    t_type_confusion_png(counts, result.taxonomy, out / "t_type_confusion.png", title)
    t_type_f1_png(result.metrics["per_t_type"], out / "t_type_f1_vs_cells.png", title)
    return out
