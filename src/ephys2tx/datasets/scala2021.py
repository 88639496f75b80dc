"""Labels of another lab's cells: the mouse motor cortex Patch-seq of Scala et al. 2021.

The metadata file (`m1_patchseq_meta_data.csv`, tab-separated, berenslab/mini-atlas) gives
each cell's `RNA family`, its mouse and its Tasic 2018 t-types (`ALM/VISp top-3`, with
bootstrap percentages). Here they become the cell table's label columns, so the cross-lab
benchmark and `adapt --labels` read them like any other labels:

- `subclass` / `label5`: the GABAergic families (Pvalb, Sst, Vip, Lamp5, Sncg) as they are;
  `label` the aligned 4-class label (Sncg -> Vip, as everywhere);
- `cell_class`: `gabaergic`, `excitatory` (IT, ET, CT, NP) or `low_quality`;
- `donor`: the `Mouse` column;
- `t_type`: the first `ALM/VISp top-3` entry when its bootstrap share is at least
  `T_TYPE_MIN_SHARE` (and, given `known_t_types`, when the reference knows it), else NaN.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import Ephys2txError
from ..schema import MOUSE_CLASSES, MOUSE_TO_ALIGNED

METADATA_FILE = "mouse_scala2021/m1_patchseq_meta_data.csv"
FEATURES_FILE = "mouse_scala2021/m1_patchseq_ephys_features.csv"
EXCITATORY_FAMILIES: tuple[str, ...] = ("IT", "ET", "CT", "NP")
LOW_QUALITY = "low quality"
# The share of bootstrap runs that must agree on the first t-type for it to count as the
# cell's t-type (the rule: at least half).
T_TYPE_MIN_SHARE = 50.0
CELL_CLASSES: tuple[str, ...] = ("gabaergic", "excitatory", "low_quality")
_ENTRY = re.compile(r"^\s*(?P<name>.+?)\s*\((?P<share>[0-9.]+)%\)\s*$")


def first_t_type(entry: object) -> tuple[str | None, float]:
    """The first t-type of an `ALM/VISp top-3` entry and its bootstrap share in percent
    ('Sst Calb2 Pdlim5 (62.0%), ...' -> ('Sst Calb2 Pdlim5', 62.0)); (None, NaN) if empty."""
    if not isinstance(entry, str) or not entry.strip():
        return None, float("nan")
    match = _ENTRY.match(entry.split(", ")[0])
    if match is None:
        return None, float("nan")
    return match["name"], float(match["share"])


def cell_class(family: object) -> str | None:
    """`gabaergic`, `excitatory` or `low_quality` for an `RNA family` value (None: unknown)."""
    if family in MOUSE_CLASSES:
        return "gabaergic"
    if family in EXCITATORY_FAMILIES:
        return "excitatory"
    if family == LOW_QUALITY:
        return "low_quality"
    return None


def read_metadata(path: str | Path) -> pd.DataFrame:
    """The raw metadata table (tab-separated), one row per cell, indexed by nothing."""
    try:
        meta = pd.read_csv(path, sep="\t")
    except (OSError, ValueError) as exc:
        raise Ephys2txError(
            f"cannot read the M1 metadata {path} ({exc}); run `ephys2tx fetch`"
        ) from exc
    missing = {"Cell", "Mouse", "RNA family", "ALM/VISp top-3"} - set(meta.columns)
    if missing:
        raise Ephys2txError(
            f"{path} lacks the column(s) {', '.join(sorted(missing))}; is it the tab-separated "
            "m1_patchseq_meta_data.csv of berenslab/mini-atlas?"
        )
    return meta


def labels_table(meta: pd.DataFrame, known_t_types: set[str] | None = None) -> pd.DataFrame:
    """Per cell: specimen_id (= `Cell`), donor, cell_class, subclass, label5, label, t_type,
    t_type_share. `known_t_types`: t-types outside it get no t_type (NaN)."""
    family = meta["RNA family"]
    klass = family.map(cell_class)
    gaba = klass.eq("gabaergic")
    parsed = meta["ALM/VISp top-3"].map(first_t_type)
    name = parsed.map(lambda p: p[0])
    share = parsed.map(lambda p: p[1]).astype(float)
    keep = gaba & name.notna() & (share >= T_TYPE_MIN_SHARE)
    if known_t_types is not None:
        keep &= name.isin(known_t_types)
    subclass = family.where(gaba)
    return pd.DataFrame(
        {
            "specimen_id": meta["Cell"].astype(str),
            "donor": meta["Mouse"].astype(str),
            "cell_class": klass,
            "subclass": subclass,
            "label5": subclass,
            "label": subclass.map(MOUSE_TO_ALIGNED),
            "t_type": name.where(keep),
            "t_type_share": share.where(gaba, np.nan),
        }
    )


def m1_cells(
    data_dir=None, mirror=None, known_t_types: set[str] | None = None
) -> tuple[pd.DataFrame, str]:
    """The M1 cells as a cell table (every cell: GABAergic, excitatory, low quality): the
    features through the recognized crosswalk, the labels above. Returns (cells, the
    crosswalk's one-line summary). The files come from the data directory or the mirror."""
    from .crosswalk import to_canonical
    from .fetch import data_path

    features = pd.read_csv(data_path(FEATURES_FILE, data_dir, mirror))
    cells, report = to_canonical(features, source=Path(FEATURES_FILE).name)
    labels = labels_table(read_metadata(data_path(METADATA_FILE, data_dir, mirror)), known_t_types)
    cells = labels.merge(cells, on="specimen_id", how="inner", validate="one_to_one")
    cells.insert(1, "species", "mouse")
    return cells.reset_index(drop=True), report.summary()
