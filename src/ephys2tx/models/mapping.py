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

from ..datasets.taxonomy import LEVELS, Taxonomy
from ..schema import SET_SEPARATOR
from ..trust.agreement import most_specific
from ..trust.conformal import MondrianConformal, check_alpha
from ..version import __version__
from .bundle import ModelCard, align_features
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
    subclasses = list(levels["subclass"].columns)
    leaves = list(levels["t_type"].columns)
    sub_p = levels["subclass"].to_numpy()
    leaf_p = levels["t_type"].to_numpy()
    sub_names = np.asarray(subclasses, dtype=object)
    leaf_names = np.asarray(leaves, dtype=object)
    n = len(sub_p)

    if assignment is None:
        assignment = assign_levels(leaf_p, leaves, taxonomy)
    best_sub, best_leaf = assignment
    best_leaf_idx = np.array([leaves.index(leaf) for leaf in best_leaf], dtype=int)

    sub_rank, sub_rank_p = _ranked(sub_p, sub_names)
    # runner-up t-type: the most probable other leaf
    leaf_rank, leaf_rank_p = _ranked(leaf_p, leaf_names)
    leaf_runner = [
        [(str(name), float(q)) for name, q in zip(r, rp, strict=True) if name != best][
            :n_runner_ups
        ]
        for r, rp, best in zip(leaf_rank, leaf_rank_p, best_leaf, strict=True)
    ]
    sub_runner = [
        [(str(name), float(q)) for name, q in zip(r, rp, strict=True) if name != best][
            :n_runner_ups
        ]
        for r, rp, best in zip(sub_rank, sub_rank_p, best_sub, strict=True)
    ]

    if sets is not None:
        sub_mask = sets["subclass"]
        leaf_mask, emptied = nest_sets(sub_mask, sets["t_type"], subclasses, leaves, taxonomy)
        sub_sets = _set_strings(sub_mask, sub_p, sub_names)
        leaf_sets = _set_strings(leaf_mask, leaf_p, leaf_names)
    else:
        sub_mask = leaf_mask = None
        emptied = np.zeros(n, bool)
        sub_sets = leaf_sets = [""] * n

    most, most_level = [], []
    for i in range(n):
        node, level = most_specific(
            str(best_sub[i]), str(best_leaf[i]),
            list(sub_names[sub_mask[i]]) if sets is not None else [],
            list(leaf_names[leaf_mask[i]]) if sets is not None else [],
            taxonomy.parent, taxonomy.is_resolved(best_leaf[i]), calibrated=sets is not None,
        )  # fmt: skip
        most.append(node)
        most_level.append(level)

    table = pd.DataFrame({"specimen_id": np.asarray(specimen_ids)})
    table["predicted"] = best_sub
    for j, cls in enumerate(subclasses):
        table[f"p_{cls}"] = sub_p[:, j]
    table["subclass"] = best_sub
    table["subclass_probability"] = sub_p.max(axis=1)
    table["subclass_runner_up"] = [r[0][0] if r else None for r in sub_runner]
    table["subclass_set"] = sub_sets
    table["t_type"] = best_leaf
    table["t_type_probability"] = leaf_p[np.arange(n), best_leaf_idx]
    table["t_type_runner_up"] = [r[0][0] if r else None for r in leaf_runner]
    table["t_type_set"] = leaf_sets
    table["most_specific"] = most
    table["most_specific_level"] = most_level

    results = []
    for i, sid in enumerate(np.asarray(specimen_ids)):
        record: dict = {"cell_id": sid.item() if hasattr(sid, "item") else sid}
        for level, names, p, best, runner, mask in (
            ("subclass", sub_names, sub_p, best_sub, sub_runner, sub_mask),
            ("t_type", leaf_names, leaf_p, best_leaf, leaf_runner, leaf_mask),
        ):
            entry = {
                "assignment": str(best[i]),
                "probability": float(p[i, list(names).index(best[i])]),
                "runner_up_assignment": [name for name, _ in runner[i]],
                "runner_up_probability": [q for _, q in runner[i]],
                "distribution": {str(k): float(v) for k, v in zip(names, p[i], strict=True)},
            }
            if mask is not None:
                entry["set"] = [str(x) for x in names[mask[i]]]
                if level == "t_type" and emptied[i]:
                    entry["note"] = STAYS_AT_SUBCLASS
            if level == "t_type":
                entry["resolved"] = bool(taxonomy.is_resolved(best[i]))
            record[level] = entry
        record["most_specific"] = {"node": most[i], "level": most_level[i]}
        results.append(record)

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
        "results": results,
    }
    return Mapping(table, payload)


def card_features(card: ModelCard) -> list[str]:
    """The columns a cell table must carry for a default model (derived inputs excluded)."""
    return [f for f in card.features if f != CONDITION_FEATURE]


def predict_mapping(estimator, card: ModelCard, cells: pd.DataFrame, alpha: float = 0.1) -> Mapping:
    """Map a cell table with a saved default model: per-level probabilities, then sets.

    Model columns the table lacks count as unmeasured (NaN), as for every model."""
    align_features(cells, card_features(card))  # none of them: a clear error
    taxonomy = Taxonomy.from_dict(card.extra["taxonomy"])
    levels = estimator.predict_proba_levels(model_inputs(cells, card.features))
    sets = None
    stored = card.extra.get("conformal") or {}
    if all(level in stored for level in LEVELS):
        alpha = check_alpha(alpha)
        sets = {}
        for level in LEVELS:
            conformal = MondrianConformal.from_dict(stored[level])
            proba = levels[level][conformal.classes].to_numpy()
            mask = conformal.set_mask(proba, level_alpha(alpha, level))
            order = [conformal.classes.index(c) for c in levels[level].columns]
            sets[level] = mask[:, order]
    metadata = {
        "model": card.kind,
        "species": card.species,
        "n_train_cells": card.n_train_cells,
        "model_version": card.version,
        "calibrated": sets is not None,
        **{k: card.extra[k] for k in ("settings", "data_sha256") if k in card.extra},
    }
    assignment = estimator.assign(levels["t_type"].to_numpy())
    return map_cells(
        cells["specimen_id"].to_numpy(), levels, taxonomy, sets, alpha if sets else None,
        metadata, assignment=assignment,
    )  # fmt: skip
