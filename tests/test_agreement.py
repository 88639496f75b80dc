"""Issue 21 item 1: one rule ties a prediction row's columns together (trust/agreement.py).

A class-conditional (Mondrian) set can leave out the most probable class; the row must then
say so (`set_excludes_call`) and never be confident, and `most_specific` must name no node
the call and the sets do not share."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ephys2tx.datasets.taxonomy import Taxonomy
from ephys2tx.models.mapping import map_cells
from ephys2tx.trust.assess import assess, trust_columns
from ephys2tx.trust.conformal import MondrianConformal

CLASSES = ["Lamp5", "Pvalb"]


def _excluding_conformal() -> MondrianConformal:
    """Pvalb calibration cells are all called with p >= 0.9, Lamp5 ones with p about 0.3:
    a cell at p(Pvalb) = 0.6 is atypical for Pvalb but typical enough for Lamp5."""
    proba = np.r_[np.c_[np.full(50, 0.05), np.full(50, 0.95)],
                  np.c_[np.full(50, 0.3), np.full(50, 0.7)]]  # fmt: skip
    labels = ["Pvalb"] * 50 + ["Lamp5"] * 50
    return MondrianConformal.fit(proba, labels, CLASSES)


def test_a_set_that_excludes_the_call_is_flagged_and_never_confident():
    conformal = _excluding_conformal()
    proba = np.array([[0.4, 0.6], [0.02, 0.98]])
    sets = conformal.predict_set(proba, 0.1)
    assert sets[0] == ["Lamp5"] and sets[1] == ["Pvalb"]  # the case of issue 21
    records = assess(["856015279", "b"], proba, CLASSES, sets, [[], []], np.zeros(2))
    table = trust_columns(records)
    assert records[0].predicted == "Pvalb"
    assert table["flags"].tolist() == ["set_excludes_call", ""]
    assert table["confident"].tolist() == [False, True]


def test_most_specific_names_no_node_outside_the_call():
    tax = Taxonomy("human", ("Lamp5", "Pvalb"),
                   {"Lamp5 a": "Lamp5", "Pvalb a": "Pvalb", "Pvalb b": "Pvalb"})  # fmt: skip
    leaves = ["Lamp5 a", "Pvalb a", "Pvalb b"]
    leaf_p = np.array([[0.4, 0.35, 0.25], [0.1, 0.8, 0.1], [0.0, 0.3, 0.7]])
    levels = {
        "subclass": pd.DataFrame(
            np.c_[leaf_p[:, 0], leaf_p[:, 1:].sum(axis=1)], columns=CLASSES
        ),  # fmt: skip
        "t_type": pd.DataFrame(leaf_p, columns=leaves),
    }
    sets = {  # cell 0: the sets name Lamp5 alone, the call is Pvalb
        "subclass": np.array([[True, False], [False, True], [False, True]]),
        "t_type": np.array([[True, False, False], [False, True, True], [False, True, False]]),
    }
    table = map_cells(["c0", "c1", "c2"], levels, tax, sets, 0.1).table
    assert table["predicted"].tolist() == ["Pvalb", "Pvalb", "Pvalb"]
    # cell 0: no node is both the call and confirmed by the sets; cell 1: the subclass;
    # cell 2: the t-type set is one t-type, but not the t-type call (Pvalb b): the subclass
    assert table["most_specific"].tolist() == [None, "Pvalb", "Pvalb"]
    assert table["most_specific_level"].tolist() == ["none", "subclass", "subclass"]


def test_t_type_names_carry_no_surrounding_spaces(human_cells):
    """A joined set column ("a|b") cannot carry a trailing space back: the public table's
    "Inh L1-4 LAMP5 LCP2 " is stripped when the cell table is built."""
    names = human_cells["t_type"].dropna()
    assert (names == names.str.strip()).all()
    assert "Inh L1-4 LAMP5 LCP2" in set(names)
