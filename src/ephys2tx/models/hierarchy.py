"""The hierarchical default model: subclass, then t-type, consistent across levels.

P(t-type) = P(subclass) x P(t-type | subclass), so the t-type distribution sums to the
subclass distribution by construction. P(subclass) comes from its own model (the strongest
one we found); P(t-type | subclass) from one classifier per subclass or from a flat t-type
model renormalized within each subclass. Which is which was chosen on seed-100 folds
(`benchmarks/select_default_model.py`); the defaults are that choice.

P(subclass) is temperature-scaled (`subclass_temperature`, fitted by `fit_hierarchy` on the
donor-grouped out-of-fold subclass probabilities the conformal calibration computes anyway)
and P(t-type | subclass) is kept, so the levels stay consistent. Why: the class-balanced
average is underconfident, and one temperature fixes it about as well as vector scaling or
Dirichlet calibration, which change calls and lost macro-F1 (`benchmarks/select_calibration.py`;
the figures: docs/research/default-model.md#calibration).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.metrics import f1_score

from ..datasets.labels import DEFAULT_LABEL
from ..datasets.taxonomy import LEVELS, Taxonomy, build_taxonomy
from ..errors import Ephys2txError
from ..trust.calibrate import Calibration, OutOfFold, calibrate
from ..trust.conformal import MondrianConformal, out_of_fold_proba
from ..trust.temperature import Temperature
from .ensemble import describe_members, seeded, soft_vote
from .forest import make_forest

T_TYPE_MODELS = ("per-subclass", "flat")
# A derived input: 1 for cultured human slices, 0 for acute, NaN when unknown.
CONDITION_FEATURE = "condition_culture"


class QuantileBins(TransformerMixin, BaseEstimator):
    """Each column replaced by its unweighted quantile bin (NaN stays NaN).

    Why: with class weights, HistGradientBoosting computes weighted percentiles to bin every
    column, which took over half of its fit time here; given at most `max_bins` distinct
    values it bins them as they are, so this gives it the unweighted quantile bins it uses
    without class weights, at a fraction of the cost (class weights still weight the fit).
    """

    def __init__(self, n_bins: int = 255):
        self.n_bins = n_bins

    def fit(self, X, y=None) -> QuantileBins:
        X = np.asarray(X, float)
        levels = np.linspace(0, 1, self.n_bins + 1)[1:-1]
        self.edges_ = [
            np.unique(np.nanquantile(col, levels)) if np.isfinite(col).any() else np.array([])
            for col in X.T
        ]
        return self

    def transform(self, X) -> np.ndarray:
        X = np.asarray(X, float)
        out = np.full_like(X, np.nan)
        for j, edges in enumerate(self.edges_):
            known = ~np.isnan(X[:, j])
            out[known, j] = np.searchsorted(edges, X[known, j], side="right")
        return out


def model_inputs(cells: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """The model's input columns; the derived condition input is computed when asked for."""
    X = cells.reindex(columns=[f for f in features if f != CONDITION_FEATURE])
    if CONDITION_FEATURE in features:
        condition = cells["condition"] if "condition" in cells else pd.Series(np.nan, cells.index)
        X[CONDITION_FEATURE] = condition.map({"culture": 1.0, "acute": 0.0}).astype(float)
    return X[features]


def _aligned(proba: np.ndarray, seen: list, columns: list[str]) -> np.ndarray:
    """Probabilities over `columns`; a class not seen in training gets 0."""
    out = np.zeros((proba.shape[0], len(columns)))
    index = {c: i for i, c in enumerate(columns)}
    for j, cls in enumerate(seen):
        out[:, index[str(cls)]] = proba[:, j]
    return out


Members = tuple[tuple[str, BaseEstimator], ...]  # an ensemble: (name, estimator) pairs


@dataclass(frozen=True)
class HierarchySettings:
    """What a hierarchical model is made of: the members of the subclass average (None:
    the t-type model summed up the tree) and of the t-type model, each average the mean of
    its members' probabilities; whether one t-type model is fitted per subclass or one flat
    one (`T_TYPE_MODELS`); and the t-type decision rule (`assign_levels`)."""

    subclass: Members | None
    t_type: Members
    t_type_model: str = "per-subclass"
    learned_first: bool = False
    t_type_beta: float = 0.0

    def params(self) -> dict:
        """`HierarchicalClassifier`'s keyword arguments for these settings."""
        subclass = soft_vote(self.subclass) if self.subclass else None
        return {
            "subclass_estimator": subclass,
            "t_type_estimator": soft_vote(self.t_type),
            **self._rule(),
        }

    def describe(self) -> dict:
        """The settings as JSON (each member's class and parameters): a model card's record
        and a cache key, which changes whenever a member or parameter does."""
        subclass = describe_members(self.subclass) if self.subclass else None
        return {"subclass": subclass, "t_type": describe_members(self.t_type), **self._rule()}

    def _rule(self) -> dict:
        return {
            "t_type_model": self.t_type_model,
            "learned_first": self.learned_first,
            "t_type_beta": self.t_type_beta,
        }


@dataclass(eq=False, repr=False)  # the parameters as fields: scikit-learn's __init__, written once
class HierarchicalClassifier(ClassifierMixin, BaseEstimator):
    """Subclass then t-type; `fit(X, leaves)` where leaves are `Taxonomy` leaf labels.

    `classes_` are the taxonomy's leaves seen in training and `predict_proba` their
    distribution, so it cross-validates like any classifier; `predict_proba_levels` gives
    both levels. `subclass_estimator` models P(subclass) (None: the t-type model summed up
    the tree); `t_type_estimator` (None: a forest) models the t-types, once per subclass
    (`t_type_model` per-subclass) or once for all (flat). Both are cloned when fitted, with
    `seed` and `n_jobs` set inside them (`ensemble.seeded`; None keeps their own).
    `subclass_temperature` rescales P(subclass) (`Temperature`) and each subclass's t-types
    with it; 1 leaves the fitted probabilities as they are (it is set after fitting, see
    `fit_hierarchy`). `t_type_beta` and `learned_first` set the t-type decision rule
    (`assign`); they change calls, never probabilities.
    """

    taxonomy: Taxonomy | None = None
    subclass_estimator: BaseEstimator | None = None
    t_type_model: str = "per-subclass"
    t_type_estimator: BaseEstimator | None = None
    seed: int | None = None
    n_jobs: int | None = None
    subclass_temperature: float = 1.0
    t_type_beta: float = 0.0
    learned_first: bool = False

    def _fresh(self, estimator: BaseEstimator | None) -> BaseEstimator:
        """A clone of `estimator` (None: `make_forest`) with this model's seed and threads."""
        template = make_forest(n_jobs=1) if estimator is None else estimator
        return seeded(template, self.seed, self.n_jobs)

    def fit(self, X: pd.DataFrame, y) -> HierarchicalClassifier:
        tax = self.taxonomy
        if tax is None:
            raise Ephys2txError("HierarchicalClassifier needs a taxonomy (build_taxonomy)")
        if self.t_type_model not in T_TYPE_MODELS:
            raise Ephys2txError(f"unknown t_type_model; choose one of {', '.join(T_TYPE_MODELS)}")
        leaves = np.asarray(y, dtype=object)
        unknown = sorted(set(leaves) - set(tax.parent))
        if unknown:
            raise Ephys2txError(f"labels outside the taxonomy: {', '.join(unknown[:5])}")
        subclass = np.array([tax.parent[leaf] for leaf in leaves], dtype=object)
        self.subclasses_ = list(tax.subclasses)
        seen = set(leaves)  # leaves without training cells get no column
        self.classes_ = np.array([leaf for leaf in tax.leaves if leaf in seen], dtype=object)
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.leaf_prior_ = leaf_shares(leaves, [str(c) for c in self.classes_])
        self.subclass_estimator_ = None
        if self.subclass_estimator is not None:
            self.subclass_estimator_ = self._fresh(self.subclass_estimator).fit(X, subclass)
        self.flat_estimator_ = None
        self.per_subclass_ = {}
        if self.t_type_model == "flat" or self.subclass_estimator is None:
            self.flat_estimator_ = self._fresh(self.t_type_estimator).fit(X, leaves)
        if self.t_type_model == "per-subclass":
            for s in self.subclasses_:
                mask = subclass == s
                seen = np.unique(leaves[mask])
                if len(seen) > 1:
                    model = self._fresh(self.t_type_estimator)
                    with warnings.catch_warnings():  # svc's inner 5 folds on rare t-types
                        warnings.filterwarnings("ignore", "The least populated class")
                        self.per_subclass_[s] = model.fit(X[mask], leaves[mask])
                elif len(seen) == 1:
                    self.per_subclass_[s] = str(seen[0])  # one leaf: certain given s
        return self

    def _leaf_given_subclass(self, X: pd.DataFrame) -> np.ndarray:
        leaves = [str(c) for c in self.classes_]
        parent = self.taxonomy.parent
        out = np.zeros((len(X), len(leaves)))
        if self.t_type_model == "flat":
            flat = _aligned(
                self.flat_estimator_.predict_proba(X), self.flat_estimator_.classes_, leaves
            )
            for s in self.subclasses_:
                cols = [i for i, leaf in enumerate(leaves) if parent[leaf] == s]
                if not cols:
                    continue
                total = flat[:, cols].sum(axis=1, keepdims=True)
                # no mass on this subclass's leaves: spread evenly over them
                fallback = np.full((1, len(cols)), 1.0 / len(cols))
                out[:, cols] = np.where(
                    total > 0, flat[:, cols] / np.maximum(total, 1e-300), fallback
                )
            return out
        for s in self.subclasses_:
            model = self.per_subclass_.get(s)
            if model is None:  # subclass absent from training: no leaf, no mass
                continue
            elif isinstance(model, str):
                out[:, leaves.index(model)] = 1.0
            else:
                out += _aligned(model.predict_proba(X), model.classes_, leaves)
        return out

    def predict_proba_levels(self, X: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """{'subclass': cells x subclasses, 't_type': cells x leaves}; rows sum to 1 and the
        t-type columns of a subclass sum to its subclass probability."""
        X = X[list(self.feature_names_in_)]
        leaves = [str(c) for c in self.classes_]
        parent = self.taxonomy.parent
        if self.subclass_estimator_ is None and self.t_type_model == "flat":
            leaf_p = _aligned(
                self.flat_estimator_.predict_proba(X), self.flat_estimator_.classes_, leaves
            )
        else:
            if self.subclass_estimator_ is not None:
                est = self.subclass_estimator_
                sub_p = _aligned(est.predict_proba(X), est.classes_, self.subclasses_)
            else:
                flat = _aligned(
                    self.flat_estimator_.predict_proba(X), self.flat_estimator_.classes_, leaves
                )
                sub_p = sum_to_subclass(flat, leaves, parent, self.subclasses_)
            owner = [self.subclasses_.index(parent[leaf]) for leaf in leaves]
            leaf_p = sub_p[:, owner] * self._leaf_given_subclass(X)
        sub_p = sum_to_subclass(leaf_p, leaves, parent, self.subclasses_)
        temperature = getattr(self, "subclass_temperature", 1.0)  # models saved before it: 1
        if temperature != 1.0:
            leaf_p, sub_p = rescale_subclass(leaf_p, sub_p, leaves, parent, self.subclasses_,
                                             Temperature(temperature))  # fmt: skip
        index = X.index
        return {
            LEVELS[0]: pd.DataFrame(sub_p, index=index, columns=self.subclasses_),
            LEVELS[1]: pd.DataFrame(leaf_p, index=index, columns=leaves),
        }

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """The leaf (t-type level) distribution, columns = `classes_`."""
        return self.predict_proba_levels(X)[LEVELS[1]].to_numpy()

    def assign(self, leaf_p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(subclass, t-type) per cell from the leaf distribution (columns = `classes_`),
        under this model's t-type rule (`assign_levels`; models saved before it: argmax)."""
        return assign_levels(
            leaf_p, [str(c) for c in self.classes_], self.taxonomy,
            getattr(self, "leaf_prior_", None), getattr(self, "t_type_beta", 0.0),
            getattr(self, "learned_first", False),
        )  # fmt: skip

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The assigned leaf (`assign`), which lies under the most probable subclass."""
        return self.assign(self.predict_proba(X))[1]


def novelty_weights(model, features: list[str]) -> np.ndarray | None:
    """Impurity importances (mean 1) of the forest inside the subclass average, over
    `features`, for the novelty distance; None when the average holds no forest."""
    est = model.subclass_estimator_
    members = [est] if hasattr(est, "feature_importances_") else getattr(est, "estimators_", [])
    forest = next((m for m in members if hasattr(m, "feature_importances_")), None)
    if forest is None:
        return None
    importance = dict(zip(forest.feature_names_in_, forest.feature_importances_, strict=True))
    w = np.array([importance.get(f, 0.0) for f in features])
    return w / w.sum() * len(features)


def sum_to_subclass(
    leaf_p: np.ndarray, leaves: list[str], parent: dict[str, str], subclasses: list[str]
) -> np.ndarray:
    """Sum a leaf distribution up the tree to its subclasses."""
    out = np.zeros((leaf_p.shape[0], len(subclasses)))
    for j, leaf in enumerate(leaves):
        out[:, subclasses.index(parent[leaf])] += leaf_p[:, j]
    return out


def rescale_subclass(
    leaf_p: np.ndarray, sub_p: np.ndarray, leaves: list[str], parent: dict[str, str],
    subclasses: list[str], recalibration,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Recalibrate P(subclass) and keep P(t-type | subclass): returns (leaf, subclass)
    probabilities, still consistent (a subclass that had no mass spreads its new mass evenly
    over its leaves)."""
    owner = np.array([subclasses.index(parent[leaf]) for leaf in leaves])
    new_sub = recalibration.apply(sub_p)
    n_children = np.bincount(owner, minlength=len(subclasses))[owner]
    held = sub_p[:, owner]
    conditional = np.where(held > 0, leaf_p / np.where(held > 0, held, 1.0), 1.0 / n_children)
    new_sub = new_sub * np.isin(np.arange(len(subclasses)), owner)  # no leaf seen: no mass
    new_sub /= new_sub.sum(axis=1, keepdims=True)
    return new_sub[:, owner] * conditional, new_sub


def subclass_out_of_fold(
    model: HierarchicalClassifier, X: pd.DataFrame, leaves, groups, cv, n_jobs: int = 1
) -> tuple[np.ndarray, list[str]]:
    """Donor-grouped out-of-fold P(subclass) of `model`'s settings (before any temperature)
    and the subclass labels, columns = `model.taxonomy.subclasses`. Only the subclass model is
    refitted when there is one: P(t-type | subclass) does not change P(subclass)."""
    tax = model.taxonomy
    leaves = np.asarray(leaves, dtype=object)
    subclass = np.array([tax.parent[leaf] for leaf in leaves], dtype=object).astype(str)
    subclasses = list(tax.subclasses)
    if model.subclass_estimator is not None:
        base = seeded(model.subclass_estimator, model.seed, 1)
        oof = out_of_fold_proba(base, X, subclass, groups, cv, n_jobs=n_jobs)
        return _aligned(oof, sorted(set(subclass)), subclasses), subclass
    oof = out_of_fold_proba(
        clone(model).set_params(subclass_temperature=1.0), X, leaves, groups, cv, n_jobs=n_jobs
    )
    seen = sorted(set(leaves.astype(str)))
    leaf_p = _aligned(oof, seen, tax.leaves)
    return sum_to_subclass(leaf_p, tax.leaves, tax.parent, subclasses), subclass


def assign_levels(
    leaf_p: np.ndarray,
    leaves: list[str],
    taxonomy: Taxonomy,
    prior: np.ndarray | None = None,
    beta: float = 0.0,
    learned_first: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Level by level, as MapMyCells does: the most probable subclass, then the leaf under it
    with the highest P(t) / prior(t)^beta (`prior`: each leaf's share of the training cells,
    per leaf or per cell and leaf; beta > 0 favours rare t-types, < 0 common ones; beta 0 is
    the most probable leaf). That leaf may be the subclass-level leaf (the cell is most
    likely of a rarer t-type); `learned_first` takes the best learned t-type of the subclass
    instead, when it has one. The leaf always lies under the chosen subclass, and the
    subclass never depends on beta. Returns (subclass, leaf) per cell."""
    subclasses = list(taxonomy.subclasses)
    sub_p = sum_to_subclass(leaf_p, leaves, taxonomy.parent, subclasses)
    best_sub = np.asarray(subclasses, dtype=object)[sub_p.argmax(axis=1)]
    owner = np.array([taxonomy.parent[leaf] for leaf in leaves], dtype=object)
    score = np.asarray(leaf_p, float)
    if beta != 0.0:
        if prior is None:
            raise Ephys2txError("a prior-corrected t-type rule needs the training leaf shares")
        prior = np.broadcast_to(np.asarray(prior, float), score.shape)
        score = score / np.maximum(prior, 1e-6) ** beta
    score = score / np.maximum(score.max(axis=1, keepdims=True), 1e-300)  # into [0, 1]
    if learned_first:
        unresolved = np.array([not taxonomy.is_resolved(leaf) for leaf in leaves])
        score = score - 2.0 * unresolved[None, :]  # below every learned leaf of the subclass
    score = np.where(owner[None, :] == best_sub[:, None], score, -np.inf)
    return best_sub, np.asarray(leaves, dtype=object)[score.argmax(axis=1)]


def leaf_shares(leaves, columns: list[str]) -> np.ndarray:
    """Each leaf's share of the training cells `leaves`, in the order of `columns`."""
    counts = pd.Series(np.asarray(leaves, dtype=object).astype(str)).value_counts()
    return np.array([counts.get(c, 0) for c in columns], float) / max(len(leaves), 1)


@dataclass
class HierarchyFit:
    """A fitted hierarchical model, its taxonomy and (given a splitter) its calibration:
    per-level conformal scores and the subclass temperature (also set on the model)."""

    model: HierarchicalClassifier
    taxonomy: Taxonomy
    features: list[str]
    calibrated: Calibration | None = None  # None without a splitter
    # macro-F1 of the out-of-fold subclass calls (the same folds), None without a splitter
    oof_macro_f1: float | None = None

    @property
    def calibration(self) -> dict[str, MondrianConformal]:
        """The per-level conformal scores ({} when uncalibrated)."""
        return self.calibrated.conformal if self.calibrated is not None else {}

    @property
    def temperature(self) -> Temperature:
        return self.calibrated.temperature if self.calibrated is not None else Temperature()

    @property
    def top_probability(self) -> np.ndarray | None:
        """Each training cell's out-of-fold top subclass probability (temperature applied)."""
        return self.calibrated.top_probability if self.calibrated is not None else None


def hierarchy_out_of_fold(
    model: HierarchicalClassifier, X: pd.DataFrame, leaves, labels, groups, cv, n_jobs: int = 1
) -> OutOfFold:
    """Donor-grouped out-of-fold P(subclass) and P(t-type) of `model`'s settings; a subclass
    temperature rescales both levels together (`rescale_subclass`), so they stay consistent."""
    taxonomy = model.taxonomy
    subclasses = list(taxonomy.subclasses)
    oof = out_of_fold_proba(model, X, leaves, groups, cv, n_jobs=n_jobs)
    order = [sorted(taxonomy.leaves).index(leaf) for leaf in taxonomy.leaves]
    leaf_p = oof[:, order]
    sub_p = sum_to_subclass(leaf_p, taxonomy.leaves, taxonomy.parent, subclasses)

    def rescale(proba: dict[str, np.ndarray], temperature: Temperature) -> dict[str, np.ndarray]:
        leaf, sub = rescale_subclass(
            proba["t_type"], proba["subclass"], taxonomy.leaves, taxonomy.parent, subclasses,
            temperature,
        )  # fmt: skip
        return {"subclass": sub, "t_type": leaf}

    return OutOfFold(
        {"subclass": sub_p, "t_type": leaf_p},
        {"subclass": np.asarray(labels).astype(str), "t_type": np.asarray(leaves).astype(str)},
        {"subclass": subclasses, "t_type": list(taxonomy.leaves)},
        rescale,
    )


def fit_hierarchy(
    cells: pd.DataFrame,
    species: str,
    features: list[str],
    cv=None,
    settings: HierarchySettings | None = None,
    seed: int = 0,
    n_jobs: int = 1,
    homology: dict[str, list[str]] | None = None,
) -> HierarchyFit:
    """Build the taxonomy, fit the hierarchical model on all cells and, given a donor-grouped
    splitter `cv`, fit the subclass temperature and calibrate conformal sets per level on
    the same out-of-fold probabilities (`trust.calibrate`)."""
    label = DEFAULT_LABEL[species]
    cells = cells[cells[label].notna()].reset_index(drop=True)
    taxonomy = build_taxonomy(cells, species, homology=homology)
    leaves = taxonomy.leaf_labels(cells["t_type"], cells[label]).to_numpy(dtype=object)
    X = model_inputs(cells, features)
    # folds run in parallel with one-core models; the final fit uses n_jobs inside the forest
    params = settings.params() if settings is not None else {}
    model = HierarchicalClassifier(taxonomy, seed=seed, n_jobs=1, **params)
    calibrated, oof_macro_f1 = None, None
    if cv is not None:
        labels = cells[label].astype(str).to_numpy()
        donors = cells["donor"].to_numpy()
        calibrated = calibrate(hierarchy_out_of_fold(model, X, leaves, labels, donors, cv, n_jobs))
        subclasses = list(taxonomy.subclasses)
        called = np.asarray(subclasses, dtype=object)[calibrated.scaled["subclass"].argmax(axis=1)]
        oof_macro_f1 = float(f1_score(labels, called, labels=subclasses, average="macro"))
    model.set_params(n_jobs=n_jobs).fit(X, leaves)
    fit = HierarchyFit(model, taxonomy, list(features), calibrated, oof_macro_f1)
    model.set_params(subclass_temperature=fit.temperature.temperature)
    return fit
