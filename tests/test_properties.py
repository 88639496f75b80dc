"""Property-based tests (Hypothesis) of the prediction table, for every model kind.

On random cell tables drawn from both public tables (random subsets of cells, columns
removed, NaNs, values scaled far beyond the training ranges, odd ids) and several alphas:
- the one rule of the trust columns holds (`trust/agreement.py`, docs/guides/trust-columns.md);
- every probability lies in [0, 1], each row's sum to 1, P(t-type) sums to P(subclass);
- the t-type set lies inside the subclass set;
- a cell's row does not change when other cells are in the batch;
- the same input gives the same output;
- ids come back exactly, and through CSV as written (formula-like ones neutralized).

Models are small (few trees, few epochs, a subset of cells) and trained once per session;
examples are few and derandomized, so the run is the same every time. The networks are
`slow`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from properties import models as m

from ephys2tx.datasets.cells import read_cell_table, usable_features
from ephys2tx.files import csv_safe_text, write_user_csv
from ephys2tx.trust.agreement import violations

ALPHAS = (0.05, 0.1, 0.2, 0.5)
FAST = settings(
    max_examples=6,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SLOW = settings(FAST, max_examples=4)
# ids that spreadsheets or parsers treat specially
ODD_IDS = ["007", "0", "1e3", "=1+2", "+SUM(A1)", "-5", "@cmd", "細胞-α", "NA", "null", "a,b",
           'q"uote', " padded ", "😀"]  # fmt: skip


@pytest.fixture(scope="session")
def trained(tmp_path_factory, human_cells, mouse_cells):
    """Model directories by (kind, species), trained on first use."""
    cache: dict[tuple[str, str], object] = {}
    cells = {"human": human_cells, "mouse": mouse_cells}

    def get(kind: str, species: str):
        if (kind, species) not in cache:
            out = tmp_path_factory.mktemp(f"{kind}-{species}")
            if kind == "transfer":
                cache[kind, species] = m.train_transfer(out, human_cells, mouse_cells)
            else:
                train = {"forest": m.train_forest, "bilstm": m.train_bilstm,
                         "reference": m.train_default_model}[kind]  # fmt: skip
                cache[kind, species] = train(out, cells[species], species)
        return cache[kind, species]

    return get


@st.composite
def cell_tables(draw, cells: pd.DataFrame):
    """A random table of real cells: some rows, some feature columns removed, some values
    NaN or scaled far beyond the training range, ids of every odd kind."""
    features = usable_features(cells)
    n = draw(st.integers(1, 8))
    rows = draw(st.lists(st.integers(0, len(cells) - 1), min_size=n, max_size=n, unique=True))
    table = cells.iloc[rows].reset_index(drop=True).copy()
    dropped = draw(st.sets(st.sampled_from(features), max_size=5))
    table = table.drop(columns=sorted(dropped))
    kept = [f for f in features if f not in dropped]
    for _ in range(draw(st.integers(0, 6))):
        i = draw(st.integers(0, n - 1))
        f = draw(st.sampled_from(kept))
        how = draw(st.sampled_from(["nan", "x1000", "x0.001", "negate", "huge"]))
        value = table.at[i, f]
        table.at[i, f] = {
            "nan": np.nan, "x1000": value * 1000, "x0.001": value * 0.001,
            "negate": -value, "huge": 1e12,
        }[how]  # fmt: skip
    plain = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1,
                    max_size=8).filter(lambda s: s.strip())  # fmt: skip
    ids = draw(st.lists(st.one_of(st.sampled_from(ODD_IDS), plain), min_size=n, max_size=n,
                        unique=True))  # fmt: skip
    table["specimen_id"] = pd.Series(ids, dtype=object)
    return table


def check_table(model_dir, table: pd.DataFrame, cells: pd.DataFrame, alpha: float) -> None:
    """Every invariant of one predictions table."""
    assert violations(table, m.taxonomy_parent(model_dir)) == []
    p = m.probability_columns(table)
    assert np.all((p >= 0) & (p <= 1)) and np.allclose(p.sum(axis=1), 1.0, atol=1e-6)
    for column in ("subclass_probability", "t_type_probability", "novelty"):
        if column in table:
            values = table[column].to_numpy(float)
            assert np.all(np.isnan(values) | ((values >= 0) & (values <= 1 + 1e-12)))
    assert table["specimen_id"].tolist() == cells["specimen_id"].tolist()


def check_levels(model_dir, cells: pd.DataFrame, alpha: float) -> None:
    """P(t-type) sums to P(subclass), per cell and subclass (the `--json` records)."""
    parent = m.taxonomy_parent(model_dir)
    for record in m.level_distributions(model_dir, cells, alpha):
        sub = record["subclass"]["distribution"]
        summed = dict.fromkeys(sub, 0.0)
        for leaf, q in record["t_type"]["distribution"].items():
            assert 0.0 <= q <= 1.0
            summed[parent[leaf]] += q
        assert all(abs(summed[s] - sub[s]) < 1e-9 for s in sub)


def check_batch_independence(model_dir, cells: pd.DataFrame, whole: pd.DataFrame, alpha):
    """Each cell alone (and the first half alone) gives the rows it gets in the batch: the
    same call, set, flags and confidence; probabilities equal to float32 precision (the
    networks compute in float32, and batch size changes the order of its sums)."""
    parts = [cells.iloc[[i]] for i in range(min(len(cells), 3))]
    parts.append(cells.iloc[: max(1, len(cells) // 2)])
    for part in parts:
        alone = m.predict(model_dir, part.reset_index(drop=True), alpha)
        together = whole.iloc[part.index].reset_index(drop=True)
        pd.testing.assert_frame_equal(alone, together, check_exact=False, rtol=1e-6, atol=1e-9)


def run_properties(model_dir, cells: pd.DataFrame, alpha: float, levels: bool) -> None:
    whole = m.predict(model_dir, cells, alpha)
    check_table(model_dir, whole, cells, alpha)
    again = m.predict(model_dir, cells.copy(), alpha)
    pd.testing.assert_frame_equal(whole, again)  # the same input, the same output
    check_batch_independence(model_dir, cells, whole, alpha)
    if levels:
        check_levels(model_dir, cells, alpha)


@pytest.mark.parametrize("species", ["human", "mouse"])
@pytest.mark.parametrize("kind", ["forest", "reference"])
def test_prediction_tables_keep_their_invariants(trained, kind, species, human_cells,
                                                 mouse_cells):  # fmt: skip
    cells = {"human": human_cells, "mouse": mouse_cells}[species]
    model_dir = trained(kind, species)

    @FAST
    @given(table=cell_tables(cells), alpha=st.sampled_from(ALPHAS))
    def check(table, alpha):
        run_properties(model_dir, table, alpha, levels=kind == "reference")

    check()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["bilstm", "transfer"])
def test_network_prediction_tables_keep_their_invariants(trained, kind, human_cells):
    model_dir = trained(kind, "human")

    @SLOW
    @given(table=cell_tables(human_cells), alpha=st.sampled_from(ALPHAS))
    def check(table, alpha):
        run_properties(model_dir, table, alpha, levels=False)

    check()


@pytest.mark.slow
def test_mouse_bilstm_keeps_the_invariants(trained, mouse_cells):
    model_dir = trained("bilstm", "mouse")

    @SLOW
    @given(table=cell_tables(mouse_cells), alpha=st.sampled_from(ALPHAS))
    def check(table, alpha):
        run_properties(model_dir, table, alpha, levels=False)

    check()


def test_the_whole_public_tables_keep_the_rule(trained, human_cells, mouse_cells):
    """Every cell of both public tables, every alpha, forest and default model."""
    for species, cells in (("human", human_cells), ("mouse", mouse_cells)):
        for kind in ("forest", "reference"):
            model_dir = trained(kind, species)
            for alpha in ALPHAS:
                table = m.predict(model_dir, cells, alpha)
                assert violations(table, m.taxonomy_parent(model_dir)) == [], (kind, species)


@FAST
@given(ids=st.lists(st.one_of(st.sampled_from(ODD_IDS), st.text(min_size=1, max_size=6)),
                    min_size=1, max_size=6, unique=True))  # fmt: skip
def test_ids_round_trip_through_csv(tmp_path_factory, human_cells, ids):
    """Ids written to a CSV cell table are read back as written; a predictions CSV holds
    each id as written, with a leading ' where a spreadsheet would compute it."""
    ids = [i for i in ids if i.strip() and "\x00" not in i]
    if not ids:
        return
    folder = tmp_path_factory.mktemp("ids")
    table = human_cells.head(len(ids)).copy()
    table["specimen_id"] = ids
    table.to_csv(folder / "cells.csv", index=False)
    read = read_cell_table(folder / "cells.csv")
    assert read["specimen_id"].tolist() == ids
    write_user_csv(read[["specimen_id"]], folder / "out.csv")
    back = pd.read_csv(folder / "out.csv", dtype=str, keep_default_na=False)
    assert back["specimen_id"].tolist() == [csv_safe_text(i) for i in ids]


def test_predict_writes_ids_as_given_and_spreadsheet_safe(trained, human_cells, tmp_path):
    """`predict` reads ids as text and writes formula-like ones with a leading '."""
    from typer.testing import CliRunner

    from ephys2tx.cli import app

    ids = ["007", "=1+2", "-5", "NA", "@SUM(A1)", "細胞"]
    cells = human_cells.head(len(ids)).assign(specimen_id=ids)
    cells.to_csv(tmp_path / "cells.csv", index=False)
    out = tmp_path / "pred.csv"
    model_dir = trained("forest", "human")
    result = CliRunner().invoke(
        app, ["predict", str(model_dir), str(tmp_path / "cells.csv"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    written = pd.read_csv(out, dtype=str, keep_default_na=False)["specimen_id"].tolist()
    assert written == ["007", "'=1+2", "'-5", "NA", "'@SUM(A1)", "細胞"]
