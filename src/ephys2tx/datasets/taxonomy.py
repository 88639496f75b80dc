"""The taxonomy, declared once: subclass -> t-types per species, and human-mouse homology.

The tree is built from a cell table's `t_type` column under its subclass label (`label5`
for mouse, the aligned `label` for human; see `labels.DEFAULT_LABEL`). A t-type with fewer
than `MIN_TTYPE_CELLS` cells is too rare to learn: its cells stay at subclass level, as a
leaf named by the subclass itself (e.g. mouse `Vip Igfbp6 Pltp`, 2 cells, becomes `Vip`).

Homology links come from Hodge et al. 2019 (`homology/hodge_taxonomy.csv`): each human
MTG cluster (`final cluster`) names its homologous mouse cluster of Tasic et al. 2018
(`mouse_cl_for_color`, e.g. `Sst Chodl`). A human t-type of Lee et al. 2023 matches a Hodge
cluster by name (a trailing parenthetical such as `(Chodl)` ignored); a mouse Patch-seq
t-type matches a Tasic cluster when it equals it or starts with it (`Vip Igfbp6` ->
`Vip Igfbp6 Car10`, `Vip Igfbp6 Pltp`; a `_1` replicate suffix ignored).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import Ephys2txError
from .fetch import data_path
from .labels import DEFAULT_LABEL

# The rule: a t-type needs at least this many cells to be learned; rarer ones stay at
# subclass level. 10 leaves 55 mouse t-types (4203 of 4217 cells) and 18 human (607 of 702).
MIN_TTYPE_CELLS = 10
HOMOLOGY_FILE = "homology/hodge_taxonomy.csv"
LEVELS: tuple[str, ...] = ("subclass", "t_type")


@dataclass(frozen=True)
class Taxonomy:
    """Subclass -> t-type tree of one species; leaves are t-types or subclass-level leaves."""

    species: str
    subclasses: tuple[str, ...]
    parent: dict[str, str]  # leaf -> subclass; a subclass-level leaf is its own parent
    # (present only where the subclass has cells of rare t-types)
    n_cells: dict[str, int] = field(default_factory=dict)  # t-type -> cells it was built from
    min_cells: int = MIN_TTYPE_CELLS
    homology: dict[str, list[str]] = field(default_factory=dict)  # t-type -> homologous types

    @property
    def leaves(self) -> list[str]:
        """Leaves in tree order: by subclass, then name."""
        return sorted(self.parent, key=lambda leaf: (self.parent[leaf], leaf))

    @property
    def t_types(self) -> list[str]:
        """The learned t-types (leaves below a subclass, not subclass-level leaves)."""
        return [leaf for leaf in self.leaves if leaf not in self.subclasses]

    def children(self, subclass: str) -> list[str]:
        return [leaf for leaf in self.leaves if self.parent[leaf] == subclass]

    def is_resolved(self, leaf: str) -> bool:
        """True for a learned t-type, False for a leaf that stays at subclass level."""
        return leaf not in self.subclasses

    def leaf_labels(self, t_types: pd.Series, subclasses: pd.Series) -> pd.Series:
        """Each cell's leaf: its t-type when learned under its subclass, else its subclass."""
        learned = pd.Series(
            [self.parent.get(t) == s for t, s in zip(t_types, subclasses, strict=True)],
            index=t_types.index,
        )
        return t_types.where(learned, subclasses)

    def to_dict(self) -> dict:
        return {
            "species": self.species,
            "subclasses": list(self.subclasses),
            "parent": dict(self.parent),
            "n_cells": dict(self.n_cells),
            "min_cells": self.min_cells,
            "homology": {k: list(v) for k, v in self.homology.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> Taxonomy:
        return cls(
            species=d["species"],
            subclasses=tuple(d["subclasses"]),
            parent=dict(d["parent"]),
            n_cells={k: int(v) for k, v in d.get("n_cells", {}).items()},
            min_cells=int(d.get("min_cells", MIN_TTYPE_CELLS)),
            homology={k: list(v) for k, v in d.get("homology", {}).items()},
        )


def build_taxonomy(
    cells: pd.DataFrame,
    species: str,
    min_cells: int = MIN_TTYPE_CELLS,
    homology: dict[str, list[str]] | None = None,
) -> Taxonomy:
    """The tree of a species from its cell table; t-types under `min_cells` stay at subclass."""
    label = DEFAULT_LABEL[species]
    table = cells[cells[label].notna() & cells["t_type"].notna()]
    if table.empty:
        raise Ephys2txError(f"no {species} cells with a t-type and a {label} to build a taxonomy")
    subclass_of = table.groupby("t_type")[label].agg(lambda s: s.mode().iloc[0])
    counts = table.groupby("t_type").size()
    subclasses = tuple(sorted(table[label].unique()))
    learned = {t: subclass_of[t] for t, n in counts.items() if n >= min_cells}
    # a subclass-level leaf exists where some cells of the subclass have a rare t-type
    parent = {s: s for s in subclasses if s in set(subclass_of[counts.index[counts < min_cells]])}
    parent.update(learned)
    links = {t: v for t, v in (homology or {}).items() if t in parent}
    return Taxonomy(
        species=species,
        subclasses=subclasses,
        parent=parent,
        n_cells={str(t): int(n) for t, n in counts.items()},
        min_cells=min_cells,
        homology=links,
    )


def _base_name(name: str) -> str:
    """A cluster name without a trailing `(...)` note or `_N` replicate suffix."""
    name = re.sub(r"\s*\(.*\)\s*$", "", str(name).strip())
    return re.sub(r"_\d+$", "", name)


def homology_links(hodge: pd.DataFrame, species: str, t_types: list[str]) -> dict[str, list[str]]:
    """Each t-type of `species` -> its homologous types of the other species (Hodge names)."""
    inhibitory = hodge[hodge["final cluster"].astype(str).str.startswith("Inh")]
    links: dict[str, set[str]] = {}
    for human, mouse in zip(
        inhibitory["final cluster"], inhibitory["mouse_cl_for_color"], strict=True
    ):
        human_base, mouse_base = _base_name(human), _base_name(mouse)
        for t in t_types:
            if species == "human" and _base_name(t) == human_base:
                links.setdefault(t, set()).add(mouse_base)
            elif species == "mouse" and (t == mouse_base or t.startswith(mouse_base + " ")):
                links.setdefault(t, set()).add(str(human))
    return {k: sorted(v) for k, v in links.items()}


def read_homology(data_dir: str | Path | None = None, mirror: str | None = None) -> pd.DataFrame:
    """The Hodge et al. 2019 homology table."""
    return pd.read_csv(data_path(HOMOLOGY_FILE, data_dir, mirror))
