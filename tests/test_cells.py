"""Harmonized cell tables on the real public data: counts, labels, units, QC, families."""

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA

from ephys2tx.datasets import labels
from ephys2tx.datasets.cells import ID_COLUMNS, build_cells, usable_features
from ephys2tx.datasets.featuremap import MOUSE_FEATURE_MAP, check_map_units
from ephys2tx.datasets.qc import implausible_features, median_ratios
from ephys2tx.features.families import SCALAR_FAMILIES, SCALAR_FEATURES, family_mask


def test_mouse_table_counts_and_labels(mouse_cells):
    assert len(mouse_cells) == 4217
    assert mouse_cells["specimen_id"].is_unique
    assert set(mouse_cells["label5"]) == set(labels.MOUSE_CLASSES)
    assert set(mouse_cells["label"]) == set(labels.ALIGNED_CLASSES)
    sncg = mouse_cells["label5"] == "Sncg"
    assert sncg.sum() == 234 and (mouse_cells.loc[sncg, "label"] == "Vip").all()
    assert not mouse_cells["subclass"].isin(labels.MOUSE_EXCLUDED_SUBCLASSES).any()
    assert list(mouse_cells.columns[: len(ID_COLUMNS)]) == list(ID_COLUMNS)


def test_mouse_qc_counts_each_reason():
    _, report = build_cells("mouse")
    dropped = report.dropped
    assert dropped["no transcriptomic type"] == 165
    assert dropped["subclass Serpinf1 (outside the study)"] == 47
    assert dropped["subclass Meis2 (outside the study)"] == 1
    assert dropped["subclass L2/3 (outside the study)"] == 1
    assert report.n_input - sum(dropped.values()) == report.n_kept


def test_human_table_keeps_duplicate_once_and_maps_labels(human_cells):
    _, report = build_cells("human")
    assert report.dropped["duplicate specimen in metadata (kept once)"] == 1
    assert human_cells["specimen_id"].is_unique
    assert len(human_cells) == 702 and human_cells["donor"].nunique() == 109
    lamp5 = human_cells["subclass"] == "LAMP5/PAX6/Other"
    assert (human_cells.loc[lamp5, "label"] == "Lamp5").all()
    assert set(human_cells["condition"]) == {"acute", "culture"}
    assert human_cells["label5"].isna().all()


def test_sncg_to_vip_follows_hodge_homology():
    hodge = pd.read_csv(SHARED_DATA / "homology/hodge_taxonomy.csv")
    mouse_subclass = hodge["mouse_cl_for_color"].str.split().str[0]
    for mouse, aligned in labels.MOUSE_TO_ALIGNED.items():
        human_groups = hodge.loc[mouse_subclass == mouse, "level3"].map(labels.HUMAN_TO_ALIGNED)
        # most human clusters homologous to this mouse subclass fall in the aligned group
        assert human_groups.value_counts().idxmax() == aligned, (mouse, human_groups.tolist())


def test_mouse_features_use_canonical_units(mouse_cells):
    check_map_units()
    # tau in s (efeature.csv has ms), ISIs in s, widths in s
    assert 0.005 < mouse_cells["tau"].median() < 0.05
    assert 0.0002 < mouse_cells["width_rheo"].median() < 0.002
    assert 10 < mouse_cells["first_isi_inv_hero"].median() < 200


def test_cross_species_medians_are_plausible(mouse_cells, human_cells):
    ratios = median_ratios(mouse_cells, human_cells)
    assert len(ratios) >= 25
    assert implausible_features(mouse_cells, human_cells) == {}


def test_a_unit_slip_is_caught(mouse_cells, human_cells):
    slipped = mouse_cells.assign(
        tau=mouse_cells["tau"] * 1000, width_rheo=mouse_cells["width_rheo"] * 1000
    )
    assert set(implausible_features(slipped, human_cells)) == {"tau", "width_rheo"}


def test_upstroke_downstroke_ratio_trap(mouse_cells, human_cells):
    """The Gouwens-table rheo ratio is a different quantity (~0.41x); it must not be mapped."""
    source = {e.canonical: e for e in MOUSE_FEATURE_MAP}["upstroke_downstroke_ratio_rheo"]
    assert source.columns == ("upstroke_downstroke_ratio_long_square",)
    gouwens = pd.read_csv(SHARED_DATA / "mouse_gouwens2020/ephys_features_gouwens_w_QC.csv")
    wrong = gouwens["rheo_upstroke_downstroke_ratio"].median()
    ours = mouse_cells["upstroke_downstroke_ratio_rheo"].median()
    human = human_cells["upstroke_downstroke_ratio_rheo"].median()
    assert abs(np.log(ours / human)) < abs(np.log(wrong / human))
    assert 0.3 < wrong / ours < 0.55


def test_families_cover_every_human_feature():
    human = pd.read_csv(SHARED_DATA / "human_lee2023/LeeDalley_ephys_fx.csv", nrows=2)
    assert set(human.columns) - {"specimen_id"} <= set(SCALAR_FEATURES)
    assert len(SCALAR_FEATURES) == len(set(SCALAR_FEATURES))
    mapped = {e.canonical for e in MOUSE_FEATURE_MAP}
    assert mapped <= set(SCALAR_FEATURES)


def test_missing_family_is_masked_not_zero(mouse_cells, human_cells):
    mouse_mask = family_mask(mouse_cells)
    assert not mouse_mask["chirp"].any() and not mouse_mask["adaptation"].any()
    assert (
        mouse_cells[[c for f in SCALAR_FAMILIES if f.name == "chirp" for c in f.columns]]
        .isna()
        .all()
        .all()
    )
    human_mask = family_mask(human_cells)
    assert 0.3 < human_mask["chirp"].mean() < 0.6
    assert (human_cells[usable_features(human_cells)] == 0).mean().max() < 0.6


def test_unknown_species_is_a_clear_error():
    from ephys2tx.errors import Ephys2txError

    with pytest.raises(Ephys2txError, match="unknown species 'rat'"):
        build_cells("rat")
