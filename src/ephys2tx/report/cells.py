"""Per-cell report cards: typed records built from predictions, pure computation, no I/O.

A card holds what a person needs to judge one call: the probabilities and the prediction
set, the flags, the cell's most telling features beside the training cells of the
predicted class and the runner-up, its nearest training cells, and (recordings) the
rheobase and hero sweeps. `cell_page.py` draws the cards; nothing here draws.

Features shown: among the features the cell has measured, those that best separate the
training cells of the predicted class from those of the runner-up, scored by
|2·AUROC − 1| (0: the two classes overlap fully, 1: no overlap). The score is
model-agnostic, so every model kind gets the same view.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu

from ..errors import Ephys2txError
from ..features.families import FAMILIES, FAMILY_OF_FEATURE, FEATURE_UNITS
from ..recordings.sweeps import Sweep
from ..schema import FLAG_SEPARATOR, SET_SEPARATOR, split_joined

N_FEATURES = 6  # features drawn per card
N_NEIGHBOURS = 5
MIN_CLASS_CELLS = 5  # training cells of each class a feature needs to be scored
TRAINING_COLUMNS = ("specimen_id", "donor", "t_type", "subclass")


@dataclass(frozen=True)
class Neighbour:
    """One of a cell's nearest training cells, as the model's neighbour search found it."""

    specimen_id: str
    donor: str
    t_type: str
    subclass: str
    distance: float


@dataclass(frozen=True)
class FeatureComparison:
    """A feature of the cell beside the training cells' values of two classes."""

    name: str
    unit: str
    family: str
    value: float
    separation: float  # |2·AUROC − 1| between the two classes' training cells
    by_class: dict[str, np.ndarray]  # class -> that class's measured training values


@dataclass
class CellCard:
    """Everything the report shows for one cell; None means "not available for this model"."""

    specimen_id: str
    probabilities: dict[str, float]  # class -> probability, in the model's class order
    prediction_set: list[str] | None = None  # most probable first
    confident: bool | None = None
    novelty: float | None = None
    flags: list[str] | None = None  # codes of the flag vocabulary
    features: dict[str, float] = field(default_factory=dict)  # the model's features, NaN kept
    comparisons: list[FeatureComparison] = field(default_factory=list)
    neighbours: list[Neighbour] | None = None
    sweeps: dict[str, Sweep] = field(default_factory=dict)  # "rheobase"/"hero" -> sweep
    sweeps_note: str | None = None  # why a sweep is not drawn
    source: str | None = None  # the recording file, when the cell came from one

    @property
    def ranked(self) -> list[tuple[str, float]]:
        """(class, probability), most probable first."""
        return sorted(self.probabilities.items(), key=lambda kv: -kv[1])

    @property
    def predicted(self) -> str:
        return self.ranked[0][0]

    @property
    def runner_up(self) -> str | None:
        ranked = self.ranked
        return ranked[1][0] if len(ranked) > 1 else None

    @property
    def n_measured(self) -> int:
        return int(sum(np.isfinite(v) for v in self.features.values()))


# --- flags in words -----------------------------------------------------------------------
FLAG_SENTENCES = {
    "few_features": "Too few of the model's features were measured for a reliable call.",
    "missing_family": "No feature of the family “{detail}” was measured (protocol not run, "
    "or its analysis failed), although most of the model's training cells have it.",
    "out_of_range": "{detail} lies far beyond the range of the model's training cells: "
    "check its unit and the recording.",
    "species_mismatch": "The cell's species (its table, recording metadata or feature "
    "distribution) disagrees with the species the model was trained on.",
    "novel": "Its novelty (with a calibrated model: together with how unsure the call is) is "
    "above the level only 5% of the model's training cells reach: it may be a type, area or "
    "rig the model has not seen.",
    "set_excludes_call": "The conformal set at this alpha leaves out the most probable class: "
    "its calibration cells were called with more certainty than this cell, so the call is "
    "unsure (see the trust-columns guide).",
}


def flag_sentence(code: str, values: Mapping[str, float] | None = None) -> str:
    """A fixed sentence per flag code; `name:detail` codes fill in their detail (and, given
    the cell's values, an out-of-range feature's value)."""
    name, _, detail = code.partition(":")
    template = FLAG_SENTENCES.get(name)
    if template is None:
        return f"Flag “{code}” (no description for this code)."
    if name == "missing_family" and detail in FAMILIES:
        detail = FAMILIES[detail].title
    if name == "out_of_range" and values and np.isfinite(values.get(detail, np.nan)):
        detail = f"{detail} = {values[detail]:.4g} {FEATURE_UNITS.get(detail, '')}".rstrip()
    return template.format(detail=detail)


# --- reading the prediction columns -------------------------------------------------------
def _split(value, separator: str) -> list[str]:
    if isinstance(value, list | tuple | np.ndarray):
        return [str(v) for v in value]
    return split_joined(value, separator)


def _as_bool(value) -> bool | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _as_float(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def probability_columns(predictions: pd.DataFrame) -> dict[str, str]:
    """class -> its `p_<Class>` column, in table order."""
    columns = {c[2:]: c for c in predictions.columns if c.startswith("p_")}
    if not columns:
        raise Ephys2txError(
            "the predictions have no p_<Class> columns; pass the table `predict` writes"
        )
    return columns


# --- choosing the features ----------------------------------------------------------------
def separation_scores(
    training: pd.DataFrame, label: str, features: Sequence[str], a: str, b: str
) -> pd.Series:
    """|2·AUROC − 1| of each feature between training classes a and b (NaN: too few cells)."""
    is_a, is_b = training[label] == a, training[label] == b
    scores = {}
    for name in features:
        x_a = training.loc[is_a, name].dropna().to_numpy(float)
        x_b = training.loc[is_b, name].dropna().to_numpy(float)
        if len(x_a) < MIN_CLASS_CELLS or len(x_b) < MIN_CLASS_CELLS:
            scores[name] = np.nan
            continue
        auc = mannwhitneyu(x_a, x_b).statistic / (len(x_a) * len(x_b))
        scores[name] = abs(2 * auc - 1)
    return pd.Series(scores, dtype=float)


class _ClassValues:
    """Reference values per (feature, class) and separation scores per class pair, computed
    once and shared by every card (the arrays are not copied per card)."""

    def __init__(self, training: pd.DataFrame, label: str, features: Sequence[str]):
        self.training, self.label = training, label
        self.features = [f for f in features if f in training.columns]
        self._values: dict[tuple[str, str], np.ndarray] = {}
        self._scores: dict[frozenset, pd.Series] = {}

    def values(self, feature: str, cls: str) -> np.ndarray:
        key = (feature, cls)
        if key not in self._values:
            rows = self.training[self.label] == cls
            self._values[key] = self.training.loc[rows, feature].dropna().to_numpy(float)
        return self._values[key]

    def scores(self, a: str, b: str) -> pd.Series:
        key = frozenset((a, b))
        if key not in self._scores:
            self._scores[key] = separation_scores(self.training, self.label, self.features, a, b)
        return self._scores[key]

    def comparisons(
        self, values: Mapping[str, float], a: str, b: str | None, n: int
    ) -> list[FeatureComparison]:
        if b is None:
            return []
        scores = self.scores(a, b)
        measured = [f for f in scores.index if np.isfinite(values.get(f, np.nan))]
        ranked = scores[measured].dropna().sort_values(ascending=False, kind="stable")
        return [
            FeatureComparison(
                name=name,
                unit=FEATURE_UNITS.get(name, ""),
                family=FAMILY_OF_FEATURE.get(name, "other"),
                value=float(values[name]),
                separation=float(score),
                by_class={a: self.values(name, a), b: self.values(name, b)},
            )
            for name, score in ranked.head(n).items()
        ]


def _neighbours(
    training: pd.DataFrame, indices: np.ndarray, distances: np.ndarray
) -> list[Neighbour]:
    out = []
    for i, d in zip(indices, distances, strict=True):
        if i < 0 or not np.isfinite(d):  # a search may pad with -1 / inf
            continue
        row = training.iloc[int(i)]
        out.append(
            Neighbour(
                specimen_id=str(row["specimen_id"]),
                donor=str(row.get("donor", "")),
                t_type=str(row.get("t_type", "")),
                subclass=str(row.get("subclass", "")),
                distance=float(d),
            )
        )
    return out


def build_cards(
    predictions: pd.DataFrame,
    cells: pd.DataFrame,
    features: Sequence[str],
    training: pd.DataFrame | None = None,
    label: str = "label",
    neighbour_indices: np.ndarray | None = None,
    neighbour_distances: np.ndarray | None = None,
    sweeps: Mapping[int, tuple[Mapping[str, Sweep], str | None]] | None = None,
    n_features: int = N_FEATURES,
    n_neighbours: int = N_NEIGHBOURS,
) -> list[CellCard]:
    """One card per row of `predictions` (row i describes row i of `cells`).

    `predictions` is the table `predict` writes: specimen_id, predicted, p_<Class>, and,
    when the model is calibrated, prediction_set, confident, novelty and
    flags (joined as `schema` says); a column that is absent leaves its part of the card None.
    `training` is the model's training cell table (specimen_id, donor, t_type, subclass,
    the `label` column and the features); `neighbour_indices`/`neighbour_distances`
    (cells x k) point into its rows. `sweeps` maps a row number to its sweeps to draw
    and the reason any is missing (what `features.key_sweeps.key_sweeps` returns).
    """
    if len(predictions) != len(cells):
        raise Ephys2txError(
            f"{len(predictions)} predictions for {len(cells)} cells; pass the cell table "
            "the predictions were made from"
        )
    if (neighbour_indices is None) != (neighbour_distances is None):
        raise ValueError("neighbour indices and distances come together")
    p_columns = probability_columns(predictions)
    if training is not None:
        missing = [c for c in (*TRAINING_COLUMNS, label) if c not in training.columns]
        if missing:
            raise Ephys2txError(
                f"the training cell table lacks {', '.join(missing)}; pass the model's "
                "training cells (a harmonized cell table)"
            )
        training = training.reset_index(drop=True)
        class_values = _ClassValues(training, label, features)
    cell_values = cells.reindex(columns=list(features)).to_numpy(float)
    cards = []
    for row, pred in enumerate(predictions.to_dict("records")):
        probabilities = {cls: float(pred[col]) for cls, col in p_columns.items()}
        values = dict(zip(features, cell_values[row].tolist(), strict=True))
        card = CellCard(
            specimen_id=str(pred.get("specimen_id", cells["specimen_id"].iloc[row])),
            probabilities=probabilities,
            prediction_set=_split(pred["prediction_set"], SET_SEPARATOR)
            if "prediction_set" in pred
            else None,
            confident=_as_bool(pred["confident"]) if "confident" in pred else None,
            novelty=_as_float(pred["novelty"]) if "novelty" in pred else None,
            flags=_split(pred["flags"], FLAG_SEPARATOR) if "flags" in pred else None,
            features=values,
        )
        if sweeps and row in sweeps:
            drawn, card.sweeps_note = sweeps[row]
            card.sweeps = dict(drawn)
        if "file" in cells.columns and isinstance(cells["file"].iloc[row], str):
            card.source = cells["file"].iloc[row]
        if training is not None:
            card.comparisons = class_values.comparisons(
                values, card.predicted, card.runner_up, n_features
            )
            if neighbour_indices is not None:
                card.neighbours = _neighbours(
                    training,
                    np.asarray(neighbour_indices[row])[:n_neighbours],
                    np.asarray(neighbour_distances[row], float)[:n_neighbours],
                )
        cards.append(card)
    return cards
