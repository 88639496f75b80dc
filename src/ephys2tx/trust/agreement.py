"""The one rule that ties a prediction row's columns together, for every model.

Why: a class-conditional (Mondrian) conformal set compares each class only with calibration
cells of that class, so it may leave out the most probable class (a cell whose top
probability is low for a class whose calibration cells are usually called with certainty).
Sets and probabilities stay as they are (the coverage guarantee needs the sets unchanged);
this rule says what the other columns then say.

The rule (docs/guides/trust-columns.md says it in words):
1. `predicted` (for a default model also `subclass`) is the call: the most probable class;
   a default model's `t_type` is a leaf under it.
2. When the prediction set is calibrated (non-empty) and does not hold the call, the row
   carries the flag `set_excludes_call`.
3. `confident` is true exactly when the prediction set is the call alone and no flag is
   raised (so a flagged or excluded call is never confident).
4. `most_specific` is the deepest node of the call that the sets confirm: the t-type call
   when the t-type set is that learned t-type alone; else the subclass call when the
   subclass set is that subclass alone or every t-type of the (non-empty) t-type set lies
   under it; else none. The t-type set lies inside the subclass set. An uncalibrated model
   has no sets: its most specific node is its t-type call when learned, else its subclass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..schema import FLAG_SEPARATOR, SET_SEPARATOR, split_joined

SET_EXCLUDES_CALL = "set_excludes_call"
# `most_specific_level` values
T_TYPE, SUBCLASS, NONE = "t_type", "subclass", "none"


def call_flags(predicted: str, prediction_set: Sequence[str], flags: Sequence[str]) -> list[str]:
    """The cell's flags, plus `set_excludes_call` when a calibrated set lacks the call (2)."""
    out = [f for f in flags if f != SET_EXCLUDES_CALL]
    if len(prediction_set) and predicted not in prediction_set:
        out.append(SET_EXCLUDES_CALL)
    return out


def is_confident(predicted: str, prediction_set: Sequence[str], flags: Sequence[str]) -> bool:
    """Rule 3: the set is the call alone and no flag is raised."""
    return list(prediction_set) == [predicted] and not flags


def most_specific(
    subclass: str,
    t_type: str,
    subclass_set: Sequence[str],
    t_type_set: Sequence[str],
    parent: Mapping[str, str],
    resolved: bool,
    calibrated: bool = True,
) -> tuple[str | None, str]:
    """Rule 4: (node, level) of the deepest node of the call the sets confirm; `parent` maps
    each leaf to its subclass, `resolved` says whether the t-type call is a learned t-type."""
    if not calibrated:
        return (t_type, T_TYPE) if resolved else (subclass, SUBCLASS)
    if resolved and list(t_type_set) == [t_type]:
        return t_type, T_TYPE
    under = len(t_type_set) > 0 and all(parent.get(leaf) == subclass for leaf in t_type_set)
    if list(subclass_set) == [subclass] or under:
        return subclass, SUBCLASS
    return None, NONE


def violations(table: pd.DataFrame, parent: Mapping[str, str] | None = None) -> list[str]:
    """Every way the rows of a predictions table break the rule, one line each (empty: it
    holds). `parent` (leaf -> subclass) checks a default model's t-type columns."""
    out: list[str] = []
    p_cols = [c for c in table.columns if c.startswith("p_")]
    for i, row in enumerate(table.to_dict("records")):
        sid, call = row["specimen_id"], str(row["predicted"])
        pset = split_joined(row.get("prediction_set"), SET_SEPARATOR)
        flags = split_joined(row.get("flags"), FLAG_SEPARATOR)
        said = f"row {i} ({sid!r})"
        if p_cols:
            p = np.array([row[c] for c in p_cols], float)
            if f"p_{call}" in row and row[f"p_{call}"] < np.nanmax(p) - 1e-9:
                out.append(f"{said}: predicted {call} is not the most probable class")
        if (SET_EXCLUDES_CALL in flags) != (bool(pset) and call not in pset):
            out.append(f"{said}: {SET_EXCLUDES_CALL} is {'set' if pset else 'unset'} wrongly")
        if bool(row["confident"]) != is_confident(call, pset, flags):
            out.append(f"{said}: confident={row['confident']} with set {pset} and flags {flags}")
        if parent is None or "t_type" not in row:
            continue
        sub, leaf = str(row["subclass"]), str(row["t_type"])
        sub_set = split_joined(row.get("subclass_set"), SET_SEPARATOR)
        leaf_set = split_joined(row.get("t_type_set"), SET_SEPARATOR)
        if sub != call or parent.get(leaf) != sub:
            out.append(f"{said}: t-type {leaf} does not lie under the call {call}")
        if sub_set != pset:
            out.append(f"{said}: subclass_set {sub_set} is not the prediction set {pset}")
        if any(parent.get(x) not in sub_set for x in leaf_set):
            out.append(f"{said}: t-type set {leaf_set} leaves the subclass set {sub_set}")
        node, level = most_specific(
            sub, leaf, sub_set, leaf_set, parent, leaf not in set(parent.values()), bool(pset)
        )
        shown = row.get("most_specific")
        if shown is None or shown == "" or (isinstance(shown, float) and np.isnan(shown)):
            shown = None
        if (shown, row.get("most_specific_level")) != (node, level):
            out.append(f"{said}: most_specific {shown!r} ({row.get('most_specific_level')}); "
                       f"the rule gives {node!r} ({level})")  # fmt: skip
    return out
