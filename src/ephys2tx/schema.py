"""The cell table: one row per cell, whatever made it (public tables, extraction, the
simulator). Its identity columns, species, label columns and classes are declared here once,
at the bottom layer, so every layer above reads the same facts.

Feature columns follow the ID columns: the canonical scalar features of
`features.families.SCALAR_FEATURES`, as FEATURE_DTYPE, NaN where not measured.
"""

from __future__ import annotations

from .errors import Ephys2txError

SPECIES: tuple[str, ...] = ("mouse", "human")
SPECIES_LATIN: dict[str, str] = {"mouse": "Mus musculus", "human": "Homo sapiens"}

# Identity and label columns, in table order. `specimen_id` is the Allen integer id for
# public cells and the recording's file name for extracted cells; `label` is the aligned
# 4-class label, `label5` the mouse 5-class one (NaN for human), `condition` acute/culture.
ID_COLUMNS: tuple[str, ...] = (
    "specimen_id",
    "species",
    "donor",
    "t_type",
    "subclass",
    "label",
    "label5",
    "condition",
)
FEATURE_DTYPE = "float64"

# Predictions tables (`predict`): list-valued cells are joined into one string, sets most
# probable first ("Sst|Vip"), flags in their fixed vocabulary ("novel; out_of_range:tau").
SET_SEPARATOR = "|"
FLAG_SEPARATOR = "; "


def split_joined(text: object, separator: str) -> list[str]:
    """The items of a joined cell (`SET_SEPARATOR` or `FLAG_SEPARATOR`); empty or NaN: []."""
    if not isinstance(text, str):
        return []
    return [item.strip() for item in text.split(separator.strip()) if item.strip()]


ALIGNED_CLASSES: tuple[str, ...] = ("Lamp5", "Pvalb", "Sst", "Vip")
MOUSE_CLASSES: tuple[str, ...] = ("Lamp5", "Pvalb", "Sncg", "Sst", "Vip")

# Mouse Sncg types are homologous to human VIP-subclass types (Hodge et al. 2019, the
# `mouse_cl_for_color` column of hodge_taxonomy.csv); tests check this against the table.
# The other names are the aligned classes themselves (also the human subclass names).
MOUSE_TO_ALIGNED: dict[str, str] = {
    "Lamp5": "Lamp5",
    "Pvalb": "Pvalb",
    "Sncg": "Vip",
    "Sst": "Sst",
    "Vip": "Vip",
}

LABEL_COLUMNS: dict[str, tuple[str, ...]] = {"label": ALIGNED_CLASSES, "label5": MOUSE_CLASSES}
DEFAULT_LABEL: dict[str, str] = {"mouse": "label5", "human": "label"}
# The subclasses a species' cells carry: its default label's classes.
SUBCLASSES: dict[str, tuple[str, ...]] = {sp: LABEL_COLUMNS[DEFAULT_LABEL[sp]] for sp in SPECIES}


def check_species(species: str) -> str:
    """A species the cell tables know."""
    if species not in SPECIES:
        raise Ephys2txError(f"unknown species {species!r}; choose one of: {', '.join(SPECIES)}")
    return species


def species_from_text(text: object) -> str | None:
    """'mouse' or 'human' from a free-text name ('Mus musculus', 'Human', 'mouse'), else None."""
    name = str(text).strip().lower()
    for species in SPECIES:
        if species in name or SPECIES_LATIN[species].lower() in name:
            return species
    return None


def check_label(species: str, label: str) -> str:
    """A label column that exists for the species."""
    if label not in LABEL_COLUMNS:
        raise Ephys2txError(f"unknown label {label!r}; choose one of: {', '.join(LABEL_COLUMNS)}")
    if species == "human" and label == "label5":
        raise Ephys2txError("human cells have no 5-class label (no Sncg); use --labels label")
    return label
