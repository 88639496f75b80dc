"""The splitters make exactly the folds the fold functions of main made (same seeds)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import cross_val_score

from ephys2tx.errors import Ephys2txError
from ephys2tx.evaluation.splits import DonorKFold, SeedProtocol, protocol_splitter

# sha256 of the fold indices made by main's cell_folds before the splitters replaced it
EXPECTED = json.loads((Path(__file__).parent / "data" / "fold_hashes_main.json").read_text())


def _digest(folds) -> str:
    h = hashlib.sha256()
    for f in folds:
        h.update(f"{f.repeat},{f.fold}:".encode())
        h.update(f.train.astype("int64").tobytes())
        h.update(b"|")
        h.update(f.test.astype("int64").tobytes())
        h.update(b";")
    return h.hexdigest()


@pytest.mark.parametrize("case", EXPECTED["cases"], ids=lambda c: "-".join(map(str, c.values())))
def test_splitters_give_the_folds_main_gave(case, mouse_cells, human_cells):
    table = {"mouse": mouse_cells, "human": human_cells}[case["species"]]
    table = table[table[case["label"]].notna()].reset_index(drop=True)
    splitter = protocol_splitter(
        case["protocol"], case["species"], case["n_splits"], case["n_repeats"], case["seed"]
    )
    folds = splitter.cell_folds(table, case["label"])
    assert len(folds) == case["n_folds"] == splitter.get_n_splits()
    assert _digest(folds) == case["sha256"]


def test_splitters_work_as_scikit_learn_cv(human_cells):
    table = human_cells[human_cells["label"].notna()].reset_index(drop=True)
    X = table[["tau", "input_resistance"]].to_numpy()
    y, donors = table["label"].to_numpy(), table["donor"].to_numpy()
    cv = DonorKFold(3, 2, seed=0)
    for train, test in cv.split(X, y, donors):
        assert not set(donors[train]) & set(donors[test])
    scores = cross_val_score(
        RandomForestClassifier(10, random_state=0), np.nan_to_num(X), y, groups=donors, cv=cv
    )
    assert len(scores) == cv.get_n_splits() == 6
    assert SeedProtocol("mouse", 5, 4).get_n_splits() == 4


def test_too_few_donors_and_unknown_protocols_are_clear_errors():
    with pytest.raises(Ephys2txError, match="only 2 donors for 3"):
        DonorKFold(3, 1).folds([0, 1, 0, 1], ["a", "a", "b", "b"])
    with pytest.raises(Ephys2txError, match="unknown protocol"):
        protocol_splitter("random", "human")
