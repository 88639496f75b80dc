"""The label map: native subclass names to the aligned 4-class and mouse 5-class labels."""

from __future__ import annotations

from ..errors import Ephys2txError

ALIGNED_CLASSES: tuple[str, ...] = ("Lamp5", "Pvalb", "Sst", "Vip")
MOUSE_CLASSES: tuple[str, ...] = ("Lamp5", "Pvalb", "Sncg", "Sst", "Vip")

# Mouse Sncg types are homologous to human VIP-subclass types (Hodge et al. 2019, the
# `mouse_cl_for_color` column of hodge_taxonomy.csv); tests check this against the table.
MOUSE_TO_ALIGNED: dict[str, str] = {
    "Lamp5": "Lamp5",
    "Pvalb": "Pvalb",
    "Sncg": "Vip",
    "Sst": "Sst",
    "Vip": "Vip",
}
# Lee et al. 2023 `Revised_subclass_label`; LAMP5/PAX6/Other is the Lamp5-homologous group.
HUMAN_TO_ALIGNED: dict[str, str] = {
    "LAMP5/PAX6/Other": "Lamp5",
    "PVALB": "Pvalb",
    "SST": "Sst",
    "VIP": "Vip",
}
# Mouse subclasses outside the four GABAergic groups studied; counted, then dropped.
MOUSE_EXCLUDED_SUBCLASSES: tuple[str, ...] = ("Serpinf1", "Meis2", "L2/3")

LABEL_COLUMNS: dict[str, tuple[str, ...]] = {"label": ALIGNED_CLASSES, "label5": MOUSE_CLASSES}
DEFAULT_LABEL: dict[str, str] = {"mouse": "label5", "human": "label"}


def check_label(species: str, label: str) -> str:
    """A label column that exists for the species."""
    if label not in LABEL_COLUMNS:
        raise Ephys2txError(f"unknown label {label!r}; choose one of: {', '.join(LABEL_COLUMNS)}")
    if species == "human" and label == "label5":
        raise Ephys2txError("human cells have no 5-class label (no Sncg); use --labels label")
    return label
