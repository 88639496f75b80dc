"""Predictions of a hierarchical model in the MapMyCells manner: a table and an extended JSON.

Pure computation: both are built from the per-level probabilities and (when the model was
calibrated) the per-level conformal sets; the CLI only writes them.

Per level: `assignment` (subclass: the most probable; t-type: a leaf under the chosen
subclass by the model's rule, level by level as MapMyCells maps; `HierarchicalClassifier.assign`,
`assign_levels`), its probability (the t-type's is
unconditional, so t-type probabilities sum to their subclass's), the runner-up, and the
conformal set. The t-type set lies inside the subclass set: t-types whose subclass is not
in the subclass set are dropped, and when none is left the cell stays at subclass level
(`t_type_set` empty). The subclass set is calibrated at alpha (it is also the trust
columns' `prediction_set`), the t-type set at alpha / 2 before nesting, so the nested t-type
set covers the true t-type with probability >= 1 - 1.5 alpha by the union bound (measured:
docs/results/default-model.md).
`most_specific` is the deepest node of the call that the sets confirm (`trust/agreement.py`,
the one rule for every model's columns).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..datasets.labels import DEFAULT_LABEL
from ..datasets.taxonomy import LEVELS, Taxonomy
from ..schema import SET_SEPARATOR
from ..trust.agreement import most_specific
from ..trust.conformal import MondrianConformal, check_alpha
from ..trust.temperature import Temperature
from ..version import __version__
from .bundle import HIERARCHICAL, HierarchyCard, ModelCard, Provenance, align_features, card_for
from .hierarchy import CONDITION_FEATURE, assign_levels, model_inputs

STAYS_AT_SUBCLASS = "t-type set empty inside the subclass set: stays at subclass level"


def level_alpha(alpha: float, level: str) -> float:
    """A level's conformal level: alpha for the subclass, alpha / 2 for the t-type.

    Why: with both at alpha the nested t-type set covered less than 1 - alpha, with both at
    alpha / 2 the subclass sets grew much wider; this split keeps the subclass set at its own
    alpha and the t-type set close to 1 - alpha (the figures: docs/guides/default-model.md,
    "Sets").
    """
    return alpha if level == "subclass" else alpha / 2


def nest_sets(
    sub_mask: np.ndarray, leaf_mask: np.ndarray, subclasses: list[str], leaves: list[str],
    taxonomy: Taxonomy,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The nesting rule: keep t-types whose subclass is in the subclass set. Returns the
    nested leaf mask and whether each cell's t-type set became empty."""
    owner = np.array([subclasses.index(taxonomy.parent[leaf]) for leaf in leaves])
    nested = leaf_mask & sub_mask[:, owner]
    return nested, ~nested.any(axis=1)


def _ranked(p: np.ndarray, names: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-p, axis=1, kind="stable")
    return names[order], np.take_along_axis(p, order, axis=1)


def _set_strings(mask: np.ndarray, p: np.ndarray, names: np.ndarray) -> list[str]:
    out = []
    for row_mask, row_p in zip(mask, p, strict=True):
        idx = np.flatnonzero(row_mask)
        idx = idx[np.argsort(-row_p[idx], kind="stable")]
        out.append(SET_SEPARATOR.join(names[idx]))
    return out


@dataclass
class Mapping:
    """The MapMyCells-style table and the extended JSON payload of one prediction run."""

    table: pd.DataFrame
    json: dict


def map_cells(
    specimen_ids,
    levels: dict[str, pd.DataFrame],
    taxonomy: Taxonomy,
    sets: dict[str, np.ndarray] | None = None,
    alpha: float | None = None,
    metadata: dict | None = None,
    n_runner_ups: int = 3,
    assignment: tuple[np.ndarray, np.ndarray] | None = None,
) -> Mapping:
    """Table (one row per cell) and JSON (one record per cell, one entry per level).

    `levels` are `predict_proba_levels` output; `sets` the per-level conformal masks
    (before nesting), or None for an uncalibrated model (set columns then stay empty and
    `most_specific` follows the assignment); `assignment` the model's (subclass, t-type) per
    cell (`HierarchicalClassifier.assign`), by default `assign_levels` without a prior.
    """
    if assignment is None:
        assignment = assign_levels(
            levels["t_type"].to_numpy(), list(levels["t_type"].columns), taxonomy
        )
    calls = _level_calls(levels, assignment, sets, taxonomy, n_runner_ups)
    most = [
        most_specific(
            str(calls["subclass"].best[i]),
            str(calls["t_type"].best[i]),
            list(calls["subclass"].in_set(i)),
            list(calls["t_type"].in_set(i)),
            taxonomy.parent,
            taxonomy.is_resolved(calls["t_type"].best[i]),
            calibrated=sets is not None,
        )  # fmt: skip
        for i in range(len(levels["subclass"]))
    ]
    table = _mapping_table(specimen_ids, calls, most)
    payload = {
        "metadata": {
            "package": "ephys2tx",
            "version": __version__,
            "levels": list(LEVELS),
            "alpha": alpha,
            **(metadata or {}),
        },
        "taxonomy_tree": {
            "hierarchy": list(LEVELS),
            "subclass": {s: taxonomy.children(s) for s in taxonomy.subclasses},
            "min_cells_per_t_type": taxonomy.min_cells,
            "homology": taxonomy.homology,
        },
        "results": _mapping_records(specimen_ids, calls, most, taxonomy),
    }
    return Mapping(table, payload)


@dataclass
class _LevelCall:
    """One level's call for every cell: probabilities, the assignment, its runner-ups and
    its (nested) conformal set."""

    names: np.ndarray  # the level's classes (the columns of p)
    p: np.ndarray
    best: np.ndarray  # the assignment of each cell
    runner: list[list[tuple[str, float]]]  # (name, probability) of the next most probable
    mask: np.ndarray | None  # the set, nested for the t-type level; None: uncalibrated
    sets: list[str]  # the set, joined, most probable first

    def in_set(self, i: int) -> np.ndarray:
        return self.names[self.mask[i]] if self.mask is not None else self.names[:0]


def _level_calls(
    levels: dict[str, pd.DataFrame],
    assignment: tuple[np.ndarray, np.ndarray],
    sets: dict[str, np.ndarray] | None,
    taxonomy: Taxonomy,
    n_runner_ups: int,
) -> dict[str, _LevelCall]:
    """Each level's call; the t-type set nested in the subclass set (`nest_sets`)."""
    subclasses, leaves = list(levels["subclass"].columns), list(levels["t_type"].columns)
    masks: dict[str, np.ndarray | None] = {"subclass": None, "t_type": None}
    if sets is not None:
        masks["subclass"] = sets["subclass"]
        masks["t_type"], _ = nest_sets(
            sets["subclass"], sets["t_type"], subclasses, leaves, taxonomy
        )
    calls = {}
    for level, best in zip(LEVELS, assignment, strict=True):
        p = levels[level].to_numpy()
        names = np.asarray(levels[level].columns, dtype=object)
        rank, rank_p = _ranked(p, names)
        runner = [
            [(str(name), float(q)) for name, q in zip(r, rp, strict=True) if name != b][
                :n_runner_ups
            ]
            for r, rp, b in zip(rank, rank_p, best, strict=True)
        ]
        mask = masks[level]
        joined = _set_strings(mask, p, names) if mask is not None else [""] * len(p)
        calls[level] = _LevelCall(names, p, np.asarray(best), runner, mask, joined)
    return calls


def _mapping_table(
    specimen_ids, calls: dict[str, _LevelCall], most: list[tuple[str, str]]
) -> pd.DataFrame:
    """The table `predict` writes: the call, P(subclass), then per level its assignment,
    probability, runner-up and set, then the most specific confirmed node."""
    sub, leaf = calls["subclass"], calls["t_type"]
    n = len(sub.p)
    leaf_idx = np.array([list(leaf.names).index(b) for b in leaf.best], dtype=int)
    table = pd.DataFrame({"specimen_id": np.asarray(specimen_ids)})
    table["predicted"] = sub.best
    for j, cls in enumerate(sub.names):
        table[f"p_{cls}"] = sub.p[:, j]
    table["subclass"] = sub.best
    table["subclass_probability"] = sub.p.max(axis=1)
    table["subclass_runner_up"] = [r[0][0] if r else None for r in sub.runner]
    table["subclass_set"] = sub.sets
    table["t_type"] = leaf.best
    table["t_type_probability"] = leaf.p[np.arange(n), leaf_idx]
    table["t_type_runner_up"] = [r[0][0] if r else None for r in leaf.runner]
    table["t_type_set"] = leaf.sets
    table["most_specific"] = [node for node, _ in most]
    table["most_specific_level"] = [level for _, level in most]
    return table


def _mapping_records(
    specimen_ids, calls: dict[str, _LevelCall], most: list[tuple[str, str]], taxonomy: Taxonomy
) -> list[dict]:
    """The JSON's per-cell records: one entry per level, then the most specific node."""
    results = []
    for i, sid in enumerate(np.asarray(specimen_ids)):
        record: dict = {"cell_id": sid.item() if hasattr(sid, "item") else sid}
        for level, call in calls.items():
            names, best = call.names, call.best[i]
            entry = {
                "assignment": str(best),
                "probability": float(call.p[i, list(names).index(best)]),
                "runner_up_assignment": [name for name, _ in call.runner[i]],
                "runner_up_probability": [q for _, q in call.runner[i]],
                "distribution": {str(k): float(v) for k, v in zip(names, call.p[i], strict=True)},
            }
            if call.mask is not None:
                entry["set"] = [str(x) for x in call.in_set(i)]
                if level == "t_type" and not call.mask[i].any():
                    entry["note"] = STAYS_AT_SUBCLASS
            if level == "t_type":
                entry["resolved"] = bool(taxonomy.is_resolved(best))
            record[level] = entry
        record["most_specific"] = {"node": most[i][0], "level": most[i][1]}
        results.append(record)
    return results


def hierarchical_card(
    model,
    taxonomy: Taxonomy,
    species: str,
    n_train_cells: int,
    provenance: Provenance | None = None,
    settings: dict | None = None,
    temperature: Temperature | None = None,
) -> ModelCard:
    """The card of a fitted hierarchical model: its classes are the subclasses; its
    taxonomy, settings and subclass temperature go in `card.hierarchy`."""
    card = card_for(model, HIERARCHICAL, species, DEFAULT_LABEL[species], n_train_cells, provenance)
    card.classes = list(taxonomy.subclasses)
    card.hierarchy = HierarchyCard(
        taxonomy=taxonomy.to_dict(), leaves=taxonomy.leaves, settings=settings or {},
        subclass_temperature=temperature.temperature if temperature is not None else 1.0,
    )  # fmt: skip
    return card


def card_features(card: ModelCard) -> list[str]:
    """The columns a cell table must carry for a default model (derived inputs excluded)."""
    return [f for f in card.features if f != CONDITION_FEATURE]


def predict_mapping(
    estimator,
    card: ModelCard,
    cells: pd.DataFrame,
    alpha: float = 0.1,
    conformal: dict[str, MondrianConformal] | None = None,
) -> Mapping:
    """Map a cell table with a saved hierarchical model: per-level probabilities, then sets
    from the per-level conformal scores (`conformal`; None or without both levels:
    uncalibrated, no sets).

    Model columns the table lacks count as unmeasured (NaN), as for every model."""
    align_features(cells, card_features(card))  # none of them: a clear error
    taxonomy = Taxonomy.from_dict(card.hierarchy.taxonomy)
    levels = estimator.predict_proba_levels(model_inputs(cells, card.features))
    sets = None
    if conformal and all(level in conformal for level in LEVELS):
        alpha = check_alpha(alpha)
        sets = {
            level: _level_sets(conformal[level], levels[level], alpha, level) for level in LEVELS
        }
    metadata = {
        "model": card.kind,
        "species": card.species,
        "n_train_cells": card.n_train_cells,
        "model_version": card.version,
        "calibrated": sets is not None,
    }
    if card.hierarchy.settings:
        metadata["settings"] = card.hierarchy.settings
    if card.provenance.data_sha256:
        metadata["data_sha256"] = card.provenance.data_sha256
    assignment = estimator.assign(levels["t_type"].to_numpy())
    return map_cells(
        cells["specimen_id"].to_numpy(), levels, taxonomy, sets, alpha if sets else None,
        metadata, assignment=assignment,
    )  # fmt: skip


def _level_sets(
    conformal: MondrianConformal, proba: pd.DataFrame, alpha: float, level: str
) -> np.ndarray:
    """A level's conformal set masks at its alpha (`level_alpha`), columns as `proba`'s."""
    mask = conformal.set_mask(proba[conformal.classes].to_numpy(), level_alpha(alpha, level))
    return mask[:, [conformal.classes.index(c) for c in proba.columns]]
