"""The cross-lab benchmark: the default model on another lab's cells (M1, Scala et al.
2021), as it is, adapted without labels, adapted with some of the lab's mice labelled, and
the lab's own in-domain ceiling.

Rows, all scored on the lab's GABAergic cells (5-class subclass):
- `a`: the default model on the lab's features, as it is (through the crosswalk);
- `b`: adapted without labels; the alignment method is chosen per fold of mice on the
  *other* folds' cells (nested; `selection`), so no scored cell chooses its own method;
- `c<share>`: adapted with the labelled cells of `share` of the lab's mice
  (`fit_lab_model`: joint training or the stack on the lab's own columns, chosen by the
  labelled mice's own folds), scored on the other mice, over `draws` draws of mice;
- `d`: the in-domain ceiling on the shared features, `d-all` on all of the lab's own
  columns: the lab's cells alone, folds grouped by mouse, over `draws` shuffles of the
  mice; the classifier is chosen per outer fold among `CEILING_MODELS` by inner folds of
  the other mice (nested), so the ceiling is not one classifier's.
The `not_interneuron` detector is fitted for each fold of mice on the other mice's cells
(plus the training cells), so a scored cell never trained it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, recall_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PowerTransformer
from sklearn.svm import SVC

from ..datasets.labels import DEFAULT_LABEL
from ..errors import Ephys2txError
from ..models.ensemble import seeded
from ..models.forest import make_forest
from ..models.hierarchy import HierarchyFit, novelty_weights
from ..models.lab import (
    ALIGN_METHODS,
    LAB_FOREST_TREES,
    FeatureShift,
    LabModel,
    align_unlabelled,
    fit_lab_model,
    own_columns,
    stack_columns,
)
from ..models.mapping import hierarchical_card, predict_mapping
from ..models.members import slow_boosting
from ..models.trusted import fit_trust, trust_table
from ..schema import FLAG_SEPARATOR, SET_SEPARATOR, split_joined
from ..trust.interneuron import LAB_SHIFT, NOT_INTERNEURON, m1_detector

LAB_FRACTIONS = (0.1, 0.25)
LAB_DRAWS = 5
MOUSE_FOLDS = 5
# The ceiling's candidates (`ceiling_model`), chosen per outer fold of mice by
# CEILING_INNER_FOLDS inner folds of the other mice.
CEILING_MODELS = ("rf", "hgb", "logreg", "svc")
CEILING_INNER_FOLDS = 4
# The rows, in the order tables and figures show them.
ROW_NAMES = {
    "a": "(a) the Allen model as is",
    "b": "(b) adapted, no labels",
    "c10": "(c) 10% of mice labelled",
    "c10-alone": "(c) 10% of mice, M1 alone (same mice)",
    "c25": "(c) 25% of mice labelled",
    "c25-alone": "(c) 25% of mice, M1 alone (same mice)",
    "d": "(d) M1 alone, shared features (ceiling)",
    "d-all": "(d) M1 alone, all its features",
}


@dataclass
class CrossLabResult:
    """Per row (and draw) the figures; per cell the calls of rows a and b."""

    scores: pd.DataFrame  # one row per (row, draw)
    selection: dict  # the nested choice of the unlabelled method, per fold of mice
    candidates: dict  # each unlabelled method's figures on all cells (for the record only)
    cells: dict[str, pd.DataFrame] = field(default_factory=dict)  # row -> per-cell calls
    notes: dict = field(default_factory=dict)  # lab_shift lines, features, seconds

    def summary(self) -> pd.DataFrame:
        """Mean (and sd over draws) of every figure per row."""
        numeric = self.scores.drop(columns=["draw"]).groupby("row", sort=False)
        mean, sd = numeric.mean(numeric_only=True), numeric.std(numeric_only=True)
        return mean.join(sd.add_suffix("_sd"))


def mouse_folds(donors: pd.Series, n_folds: int = MOUSE_FOLDS, seed: int = 0) -> np.ndarray:
    """Fold number of each cell, grouped by mouse (mice shuffled with `seed`)."""
    mice = np.array(sorted(donors.astype(str).unique()))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(mice))
    fold_of = {mice[i]: k % n_folds for k, i in enumerate(order)}
    return donors.astype(str).map(fold_of).to_numpy()


def ceiling_model(kind: str | tuple[str, BaseEstimator], seed: int = 0) -> BaseEstimator:
    """A class-balanced candidate of the in-domain ceiling, seeded: `rf` the lab forest,
    `hgb` gradient boosting (`members.slow_boosting`), `logreg` / `svc` logistic regression /
    an RBF SVM on median-imputed, Yeo-Johnson-transformed inputs (the lab's features are
    skewed: resistances, currents, rates); or a (name, estimator) pair given by the caller
    (the benchmark adds the default model's own subclass average)."""
    if isinstance(kind, tuple):
        return seeded(kind[1], seed, 1)
    if kind == "rf":
        return make_forest(seed, n_estimators=LAB_FOREST_TREES, n_jobs=1)
    if kind == "hgb":
        return seeded(slow_boosting(), seed, 1)
    transform = [SimpleImputer(strategy="median"), PowerTransformer()]
    if kind == "logreg":
        return make_pipeline(*transform, LogisticRegression(class_weight="balanced", max_iter=5000))
    if kind == "svc":
        return make_pipeline(*transform, SVC(class_weight="balanced", random_state=seed))
    raise Ephys2txError(
        f"unknown ceiling model {kind!r}; choose from {', '.join(CEILING_MODELS)} or give "
        "a (name, estimator) pair"
    )


def _name(kind: str | tuple[str, BaseEstimator]) -> str:
    return kind[0] if isinstance(kind, tuple) else kind


def _fold_calls(kind, X: pd.DataFrame, y: np.ndarray, folds: np.ndarray, seed: int):
    pred = np.empty(len(y), dtype=object)
    for k in np.unique(folds):
        test = folds == k
        model = ceiling_model(kind, seed).fit(X[~test], y[~test])
        pred[test] = model.predict(X[test])
    return pred


def in_domain_ceiling(
    cells: pd.DataFrame, columns: list[str], label: str, seed: int = 0,
    models: tuple = CEILING_MODELS,
) -> tuple[np.ndarray, list[str], dict[str, np.ndarray]]:  # fmt: skip
    """Out-of-fold calls of the lab's own labelled `cells` on `columns` (folds of mice,
    `mouse_folds` with `seed`), the classifier chosen per outer fold by the macro-F1 of
    inner folds of the other mice. Returns the calls, the choice per fold, and each
    candidate's own out-of-fold calls (for the record). `models`: names of `ceiling_model`
    or (name, estimator) pairs."""
    cells = cells.reset_index(drop=True)
    X = cells[columns].astype(float)
    y = cells[label].astype(str).to_numpy()
    donors = cells["donor"].astype(str)
    folds = mouse_folds(donors, MOUSE_FOLDS, seed)
    each = {_name(kind): _fold_calls(kind, X, y, folds, seed) for kind in models}
    calls, chosen = np.empty(len(y), dtype=object), []
    for k in range(MOUSE_FOLDS):
        train = np.flatnonzero(folds != k)
        inner = mouse_folds(donors.iloc[train].reset_index(drop=True), CEILING_INNER_FOLDS, seed)
        Xi, yi = X.iloc[train].reset_index(drop=True), y[train]
        score = {
            _name(kind): f1_score(yi, _fold_calls(kind, Xi, yi, inner, seed), average="macro")
            for kind in models
        }  # fmt: skip
        best = max(score, key=lambda m: round(score[m], 6))  # ties: the first listed
        chosen.append(best)
        calls[folds == k] = each[best][folds == k]  # the same fit as the candidate's own
    return calls, chosen, each


def _calls(
    model, fit: HierarchyFit, calibration: dict, cells: pd.DataFrame, alpha: float, species: str
) -> pd.DataFrame:
    """The mapping table of `cells` under `model` with `calibration` (per level)."""
    tax = fit.taxonomy
    card = hierarchical_card(model, tax, species, 0)
    return predict_mapping(model, card, cells, alpha, calibration).table


def _trust(
    calls: pd.DataFrame,
    cells: pd.DataFrame,
    shift: FeatureShift,
    fit: HierarchyFit,
    reference: pd.DataFrame,
    features: list[str],
    species: str,
    other: dict | None,
    excitatory: np.ndarray,
    weights: np.ndarray | None,
) -> tuple[pd.DataFrame, str | None]:
    """Flags and `confident` of the calls, as `predict` gives them with a training summary
    in the lab's terms, the held-out `not_interneuron` flags added; and the lab_shift line."""
    in_lab = shift.to_lab(reference)
    trust = fit_trust(
        in_lab, species, features, fit.calibrated, other=other, weights=weights,
        shift_label=DEFAULT_LABEL[species],
    ).summary  # fmt: skip
    classes = list(fit.taxonomy.subclasses)
    proba = calls[[f"p_{c}" for c in classes]].to_numpy()
    sets = [split_joined(s, SET_SEPARATOR) for s in calls["subclass_set"]]
    interneurons = cells[~excitatory]
    line = trust.batch_shift.check(interneurons, calls["subclass"].to_numpy()[~excitatory])
    trust.batch_shift = None  # judged above on the held-out detector's interneurons
    table = trust_table(cells, proba, classes, sets, trust)
    flags = [split_joined(f, FLAG_SEPARATOR) for f in table["flags"]]
    flags = [
        [*f, NOT_INTERNEURON] if e and NOT_INTERNEURON not in f else f
        for f, e in zip(flags, excitatory, strict=True)
    ]
    if line is not None:
        flags = [[*f, LAB_SHIFT] for f in flags]
    out = calls.copy()
    out["flags"] = [FLAG_SEPARATOR.join(f) for f in flags]
    out["confident"] = [len(s) == 1 and not f for s, f in zip(sets, flags, strict=True)]
    return out, line


def score_calls(
    calls: pd.DataFrame, cells: pd.DataFrame, classes: list[str], known_t_types: set[str],
    detector_score: np.ndarray,
) -> dict:  # fmt: skip
    """Figures of one row: on the GABAergic cells (subclass, sets, confident, t-type) and on
    the excitatory cells (flagged, confident, AUROC of the detector's score)."""
    gaba = (cells["cell_class"] == "gabaergic").to_numpy()
    exc = (cells["cell_class"] == "excitatory").to_numpy()
    y = cells["label5"].to_numpy(dtype=object)[gaba].astype(str)
    pred = calls["subclass"].to_numpy(dtype=object)[gaba].astype(str)
    out = {
        "n_gaba": int(gaba.sum()),
        "macro_f1": f1_score(y, pred, labels=classes, average="macro", zero_division=0),
        "accuracy": accuracy_score(y, pred),
    }
    recall = recall_score(y, pred, labels=classes, average=None, zero_division=0)
    out.update({f"recall_{c}": r for c, r in zip(classes, recall, strict=True)})
    per_class = f1_score(y, pred, labels=classes, average=None, zero_division=0)
    rarest = pd.Series(y).value_counts().reindex(classes, fill_value=0).idxmin()
    # what the rarest class (M1: Sncg, 13 cells) does to macro-F1: the macro without it
    out["macro_f1_without_rarest"] = float(np.delete(per_class, classes.index(rarest)).mean())
    out["f1_rarest"] = float(per_class[classes.index(rarest)])
    if "subclass_set" in calls and calls["subclass_set"].astype(bool).any():
        sets = [split_joined(s, SET_SEPARATOR) for s in calls["subclass_set"].to_numpy()[gaba]]
        out["coverage"] = float(np.mean([t in s for t, s in zip(y, sets, strict=True)]))
        out["set_size"] = float(np.mean([len(s) for s in sets]))
    if "confident" in calls:
        confident = calls["confident"].to_numpy(bool)
        out["confident"] = float(confident[gaba].mean())
        right = pred == y
        out["confident_accuracy"] = (
            float(right[confident[gaba]].mean()) if confident[gaba].any() else float("nan")
        )
        single = np.array([len(split_joined(s, SET_SEPARATOR)) == 1 for s in calls["subclass_set"]])
        flags = [split_joined(f, FLAG_SEPARATOR) for f in calls["flags"]]
        no_shift = np.array([not [g for g in f if g != "lab_shift"] for f in flags])
        # the calls that would be confident if the batch-wide lab_shift flag did not count
        held = single & no_shift
        out["confident_but_shift"] = float(held[gaba].mean())
        out["confident_but_shift_accuracy"] = (
            float(right[held[gaba]].mean()) if held[gaba].any() else float("nan")
        )
        if exc.any():
            flagged = np.array([NOT_INTERNEURON in f for f in flags])
            out["exc_flagged"] = float(flagged[exc].mean())
            out["exc_confident"] = float(confident[exc].mean())
            out["gaba_flagged"] = float(flagged[gaba].mean())
    if "t_type" in calls:
        truth = cells["t_type"].to_numpy(dtype=object)[gaba]
        known = np.array([t in known_t_types for t in truth])
        if known.any():
            called = calls["t_type"].to_numpy(dtype=object)[gaba]
            out["t_type_cells"] = int(known.sum())
            out["t_type_accuracy"] = float(np.mean(called[known] == truth[known]))
    if exc.any() and gaba.any():
        both = exc | gaba
        out["exc_auroc"] = roc_auc_score(exc[both], np.nan_to_num(detector_score[both]))
    return out


def crosslab_benchmark(
    reference: pd.DataFrame,
    fit: HierarchyFit,
    lab: pd.DataFrame,
    species: str = "mouse",
    other: dict | None = None,
    alpha: float = 0.1,
    fractions: tuple[float, ...] = LAB_FRACTIONS,
    draws: int = LAB_DRAWS,
    seed: int = 0,
    say: Callable[[str], None] = print,
    n_jobs: int = 1,
    ceiling_models: tuple = CEILING_MODELS,
) -> CrossLabResult:
    """Every row on `lab` (a cell table with `cell_class`, `label5`, `t_type`, `donor`),
    given the training cells and the default model fitted on the lab's features (`fit`)."""
    start = time.perf_counter()
    bench = _Bench(reference, fit, lab.reset_index(drop=True), species, other, alpha, seed, say)
    bench.row_a()
    selection, candidates = bench.row_b()
    bench.rows_c(fractions, draws)
    bench.rows_d(draws, n_jobs, ceiling_models)
    bench.notes["seconds"] = round(time.perf_counter() - start, 1)
    return CrossLabResult(pd.DataFrame(bench.rows), selection, candidates, bench.cells, bench.notes)


class _Bench:
    """What every row shares: the lab's cells, their folds of mice, the detector's held-out
    scores, the default model's fit, and the rows recorded so far."""

    def __init__(self, reference, fit, lab, species, other, alpha, seed, say):
        self.reference, self.fit, self.lab, self.species = reference, fit, lab, species
        self.other, self.alpha, self.seed, self.say = other, alpha, seed, say
        self.features = list(fit.features)
        self.classes = list(fit.taxonomy.subclasses)
        self.known = set(fit.taxonomy.t_types)
        self.label = DEFAULT_LABEL[species]
        self.weights = novelty_weights(fit.model, self.features)
        self.folds = mouse_folds(lab["donor"], MOUSE_FOLDS, seed)
        self.gaba = (lab["cell_class"] == "gabaergic").to_numpy()
        self.everyone = np.arange(len(lab))
        self.score = self._detector_scores()
        self.excitatory = np.nan_to_num(self.score) > 0.5
        say(f"detector (held-out mice): {self.excitatory.sum()} of {len(lab)} cells flagged")
        n_excitatory = int((lab["cell_class"] == "excitatory").sum())
        self.rows: list[dict] = []
        self.cells: dict[str, pd.DataFrame] = {}
        self.notes: dict = {"features": self.features, "n_excitatory": n_excitatory}

    def _detector_scores(self) -> np.ndarray:
        """The `not_interneuron` score, per fold of mice fitted on the other mice's cells."""
        lab, score = self.lab, np.full(len(self.lab), np.nan)
        for k in range(MOUSE_FOLDS):
            test = self.folds == k
            det = m1_detector(
                self.species, self.features, self.reference,
                exclude_donors=set(lab.loc[test, "donor"]), seed=self.seed, m1=lab,
            )  # fmt: skip
            if det is not None:
                score[test] = det.score(lab[test])
        return score

    def record(self, row: str, draw: int, calls: pd.DataFrame, cells: pd.DataFrame, idx) -> None:
        figures = score_calls(calls, cells, self.classes, self.known, self.score[idx])
        self.rows.append({"row": row, "draw": draw, **figures})
        self.say(
            f"{row} draw {draw}: macro-F1 {figures['macro_f1']:.3f}, accuracy "
            f"{figures['accuracy']:.3f}, coverage {figures.get('coverage', float('nan')):.3f}"
        )

    def _trusted_calls(self, model, calibration, cells, shift, excitatory):
        """A model's calls on `cells` with the trust columns; and the batch's lab_shift line."""
        calls = _calls(model, self.fit, calibration, cells, self.alpha, self.species)
        return _trust(
            calls, cells, shift, self.fit, self.reference, self.features, self.species,
            self.other, excitatory, self.weights,
        )  # fmt: skip

    def row_a(self) -> None:
        """(a) the default model as it is."""
        identity = FeatureShift.identity(self.features)
        calls, self.notes["lab_shift_a"] = self._trusted_calls(
            self.fit.model, self.fit.calibration, self.lab, identity, self.excitatory
        )
        self.record("a", 0, calls, self.lab, self.everyone)
        self.cells["a"] = calls

    def row_b(self) -> tuple[dict, dict]:
        """(b) without labels: every method on all cells, then the nested choice per fold of
        mice by the other folds' cells. Returns the choice and each method's figures."""
        lab, fit, features = self.lab, self.fit, self.features
        ref_y = self.reference[self.label].to_numpy(dtype=object)
        per_method, candidates = {}, {}
        for method in ALIGN_METHODS:
            shift = align_unlabelled(
                lambda c: fit.model.predict_proba_levels(c.reindex(columns=features))[
                    "subclass"
                ].to_numpy(),
                lab, self.reference, ref_y, self.classes, features, ~self.excitatory, method,
            )  # fmt: skip
            model = LabModel(fit.model, shift)
            per_method[method] = (
                *self._trusted_calls(model, fit.calibration, lab, shift, self.excitatory),
                shift,
            )
            candidates[method] = score_calls(
                per_method[method][0], lab, self.classes, self.known, self.score
            )
        truth = lab["label5"].to_numpy(dtype=object).astype(str)
        selection, assembled = {}, []
        for k in range(MOUSE_FOLDS):
            inner = self.gaba & (self.folds != k)

            def inner_f1(method: str, inner=inner) -> float:
                called = per_method[method][0]["subclass"].to_numpy(dtype=object).astype(str)
                return f1_score(truth[inner], called[inner], average="macro")

            selection[k] = max(ALIGN_METHODS, key=inner_f1)
            assembled.append(per_method[selection[k]][0][self.folds == k])
        calls_b = pd.concat(assembled).loc[self.everyone]
        self.notes["lab_shift_b"] = {m: per_method[m][1] for m in ALIGN_METHODS}
        self.notes["shift_b"] = {m: per_method[m][2].to_dict() for m in ALIGN_METHODS}
        self.record("b", 0, calls_b, lab, self.everyone)
        self.cells["b"] = calls_b
        return selection, candidates

    def rows_c(self, fractions: tuple[float, ...], draws: int) -> None:
        """(c) labelled cells of a share of the mice, scored on the other mice, per draw."""
        lab, label = self.lab, self.label
        gaba_mice = np.array(sorted(lab.loc[self.gaba, "donor"].astype(str).unique()))
        for share in fractions:
            for draw in range(draws):
                rng = np.random.default_rng(self.seed + 100 * draw + int(share * 1000))
                n = max(1, int(round(share * len(gaba_mice))))
                chosen = set(rng.choice(gaba_mice, n, replace=False))
                taken = lab["donor"].astype(str).isin(chosen).to_numpy()
                labels = lab[label].where(self.gaba & taken)
                lab_fit = fit_lab_model(
                    self.fit.model, self.fit.calibration, self.reference, label, lab, labels,
                    lab["donor"], ~self.excitatory, seed=self.seed,
                )  # fmt: skip
                rest = np.flatnonzero(~taken)
                scored = lab.iloc[rest].reset_index(drop=True)
                calls, _ = self._trusted_calls(
                    lab_fit.model, lab_fit.calibration, scored, lab_fit.model.shift,
                    self.excitatory[rest],
                )  # fmt: skip
                row = f"c{int(round(share * 100))}"
                self.record(row, draw, calls, scored, rest)
                for key in ("lab_weight", "reference_mix", "subclass_model"):
                    self.rows[-1][key] = lab_fit.details[key]
                self._lab_alone(f"{row}-alone", draw, taken)

    def _lab_alone(self, row: str, draw: int, taken: np.ndarray) -> None:
        """The same labelled mice without the default model: the stack's forest on all of
        the lab's own columns (the shared features when it has none), scored on the other
        mice's GABAergic cells. What the default model adds to a lab's own labels."""
        columns = stack_columns(self.lab, self.features)
        X = self.lab[columns].astype(float)
        train, test = self.gaba & taken, np.flatnonzero(self.gaba & ~taken)
        y = self.lab.loc[train, self.label].astype(str).to_numpy()
        model = ceiling_model("rf", self.seed).fit(X[train], y)
        calls = pd.DataFrame({"subclass": model.predict(X.iloc[test])})
        self.record(row, draw, calls, self.lab.iloc[test].reset_index(drop=True), test)

    def rows_d(self, draws: int, n_jobs: int, ceiling_models: tuple) -> None:
        """(d) the in-domain ceilings: the lab alone, folds grouped by mouse, nested choice;
        on the shared features (`d`) and on all of the lab's own columns (`d-all`)."""
        g = self.lab[self.gaba].reset_index(drop=True)
        own = own_columns(g)
        self.notes["ceiling_choice"], self.notes["ceiling_each"] = {}, {}
        tasks = [
            (row, columns, draw)
            for row, columns in (("d", self.features), ("d-all", own)) if columns
            for draw in range(draws)
        ]  # fmt: skip
        # independent fits: side by side as threads (`n_jobs`), each on one thread
        ceilings = Parallel(n_jobs=n_jobs, prefer="threads")(
            delayed(in_domain_ceiling)(g, columns, self.label, self.seed + draw, ceiling_models)
            for _, columns, draw in tasks
        )
        for (row, _, draw), (calls, chosen, each) in zip(tasks, ceilings, strict=True):
            self.record(row, draw, pd.DataFrame({"subclass": calls}), g, np.flatnonzero(self.gaba))
            self.notes["ceiling_choice"][f"{row} draw {draw}"] = chosen
            self.notes["ceiling_each"][f"{row} draw {draw}"] = {
                kind: round(f1_score(g[self.label].astype(str), c, average="macro"), 4)
                for kind, c in each.items()
            }  # fmt: skip
        self.notes["own_columns"] = len(own)
