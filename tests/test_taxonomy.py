"""The taxonomy rule (rare t-types stay at subclass level) and the homology links."""

from __future__ import annotations

import pandas as pd

from ephys2tx.datasets.taxonomy import (
    MIN_TTYPE_CELLS,
    Taxonomy,
    build_taxonomy,
    homology_links,
    read_homology,
)


def _table(counts: dict[tuple[str, str], int]) -> pd.DataFrame:
    rows = [
        {"t_type": t, "label5": s, "label": s} for (s, t), n in counts.items() for _ in range(n)
    ]
    return pd.DataFrame(rows)


def test_rare_t_types_stay_at_subclass_level():
    cells = _table(
        {
            ("Sst", "Sst Chodl"): MIN_TTYPE_CELLS,
            ("Sst", "Sst Rare"): MIN_TTYPE_CELLS - 1,
            ("Vip", "Vip A"): 30,
        }
    )
    tax = build_taxonomy(cells, "mouse")
    assert tax.t_types == ["Sst Chodl", "Vip A"]
    assert tax.parent["Sst Chodl"] == "Sst"
    assert "Sst Rare" not in tax.parent
    leaves = tax.leaf_labels(cells["t_type"], cells["label5"])
    assert set(leaves[cells["t_type"] == "Sst Rare"]) == {"Sst"}
    assert set(leaves[cells["t_type"] == "Sst Chodl"]) == {"Sst Chodl"}
    assert not tax.is_resolved("Sst") and tax.is_resolved("Vip A")
    assert tax.children("Sst") == ["Sst", "Sst Chodl"]
    assert tax.children("Vip") == ["Vip A"]  # no rare Vip t-type: no subclass-level leaf
    assert Taxonomy.from_dict(tax.to_dict()) == tax


def test_real_taxonomies_match_the_rule(mouse_cells, human_cells):
    for cells, species, label, n_expected in (
        (mouse_cells, "mouse", "label5", 55),
        (human_cells, "human", "label", 18),
    ):
        tax = build_taxonomy(cells, species)
        assert len(tax.t_types) == n_expected
        assert all(tax.n_cells[t] >= MIN_TTYPE_CELLS for t in tax.t_types)
        rare = [t for t, n in tax.n_cells.items() if n < MIN_TTYPE_CELLS]
        assert rare and not set(rare) & set(tax.parent)
        assert set(tax.parent.values()) == set(cells[label].dropna())


def test_homology_links_human_and_mouse(human_cells, mouse_cells):
    hodge = read_homology()
    human = homology_links(hodge, "human", sorted(human_cells["t_type"].dropna().unique()))
    assert human["Inh L3-6 SST NPY (Chodl)"] == ["Sst Chodl"]
    mouse = homology_links(hodge, "mouse", sorted(mouse_cells["t_type"].dropna().unique()))
    assert mouse["Sst Chodl"] == ["Inh L3-6 SST NPY"]
    assert "Inh L2-5 PVALB SCUBE3" in mouse["Pvalb Vipr2"]  # chandelier cells
