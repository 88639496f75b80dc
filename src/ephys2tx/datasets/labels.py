"""The public sources' subclass names and how they map to the cell table's labels.

The table's own label facts (classes, label columns, Sncg -> Vip) live in `ephys2tx.schema`;
they are imported here for the callers that read them from this module.
"""

from __future__ import annotations

from ..schema import (
    ALIGNED_CLASSES,
    DEFAULT_LABEL,
    LABEL_COLUMNS,
    MOUSE_CLASSES,
    MOUSE_TO_ALIGNED,
    check_label,
)

__all__ = [
    "ALIGNED_CLASSES",
    "DEFAULT_LABEL",
    "HUMAN_TO_ALIGNED",
    "LABEL_COLUMNS",
    "MOUSE_CLASSES",
    "MOUSE_EXCLUDED_SUBCLASSES",
    "MOUSE_TO_ALIGNED",
    "check_label",
]

# Lee et al. 2023 `Revised_subclass_label`; LAMP5/PAX6/Other is the Lamp5-homologous group.
HUMAN_TO_ALIGNED: dict[str, str] = {
    "LAMP5/PAX6/Other": "Lamp5",
    "PVALB": "Pvalb",
    "SST": "Sst",
    "VIP": "Vip",
}
# Mouse subclasses outside the four GABAergic groups studied; counted, then dropped.
MOUSE_EXCLUDED_SUBCLASSES: tuple[str, ...] = ("Serpinf1", "Meis2", "L2/3")
