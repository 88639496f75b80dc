"""Harmonized cell tables: one row per cell, canonical features, aligned labels, QC counts.

The table's columns and labels are declared in `ephys2tx.schema` (ID_COLUMNS, SPECIES and
check_species are imported here for the callers that read them from this module).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..console import console
from ..errors import Ephys2txError, one_line
from ..features.families import SCALAR_FEATURES
from ..files import atomic_write, check_out_file, csv_safe
from ..schema import FEATURE_DTYPE, ID_COLUMNS, SPECIES, check_species
from . import labels
from .crosswalk import ID_ALIASES, Crosswalk, recognize, to_canonical
from .featuremap import EFEATURE, GOUWENS, map_mouse_features
from .fetch import data_path


@dataclass
class QCReport:
    """Why cells were dropped, with a count per reason; the order is the order of the rules."""

    species: str
    n_input: int = 0
    dropped: Counter = field(default_factory=Counter)
    n_kept: int = 0

    def drop(self, table: pd.DataFrame, mask: pd.Series | np.ndarray, reason: str) -> pd.DataFrame:
        mask = np.asarray(mask, bool)
        if mask.any():
            self.dropped[reason] += int(mask.sum())
        return table.loc[~mask]

    def as_dict(self) -> dict:
        return {
            "species": self.species,
            "n_input": self.n_input,
            "dropped": dict(self.dropped),
            "n_kept": self.n_kept,
        }


def _read_csv(name: str, data_dir: str | Path | None, mirror: str | None) -> pd.DataFrame:
    return pd.read_csv(data_path(name, data_dir, mirror), low_memory=False)


def _session_id(file_names: pd.Series) -> pd.Series:
    return file_names.str.extract(r"ses-(\d+)", expand=False).astype("Int64")


def _finish(cells: pd.DataFrame, report: QCReport) -> pd.DataFrame:
    for col in SCALAR_FEATURES:
        if col not in cells.columns:
            cells[col] = np.nan  # a feature this species' table never has: missing, not zero
    cells = report.drop(
        cells, cells[SCALAR_FEATURES].isna().all(axis=1), "no electrophysiology features"
    )
    report.n_kept = len(cells)
    cells = cells[list(ID_COLUMNS) + SCALAR_FEATURES].reset_index(drop=True)
    cells[SCALAR_FEATURES] = cells[SCALAR_FEATURES].astype(FEATURE_DTYPE)
    return cells


def build_mouse_cells(
    data_dir: str | Path | None = None, mirror: str | None = None
) -> tuple[pd.DataFrame, QCReport]:
    """Mouse VISp cells of Gouwens et al. 2020: metadata joined to both feature tables."""
    meta = _read_csv("mouse_gouwens2020/20200711_patchseq_metadata_mouse.csv", data_dir, mirror)
    efeature = _read_csv("mouse_gouwens2020/efeature.csv", data_dir, mirror)
    gouwens = _read_csv("mouse_gouwens2020/ephys_features_gouwens_w_QC.csv", data_dir, mirror)
    report = QCReport("mouse", n_input=len(meta))

    efeature.index = _session_id(efeature["ID"])
    gouwens.index = _session_id(gouwens["filename"])
    session = meta["ephys_session_id"].astype("Int64")
    tables = {
        EFEATURE: efeature.reindex(session).reset_index(drop=True),
        GOUWENS: gouwens.reindex(session).reset_index(drop=True),
    }
    features = map_mouse_features(tables)

    t_type = meta["T-type Label"]
    subclass = t_type.str.split().str[0]
    cells = pd.DataFrame(
        {
            "specimen_id": meta["cell_specimen_id"].astype("int64"),
            "species": "mouse",
            "donor": meta["donor_id"].astype(str),
            "t_type": t_type,
            "subclass": subclass,
            "label": subclass.map(labels.MOUSE_TO_ALIGNED),
            "label5": subclass.where(subclass.isin(labels.MOUSE_CLASSES)),
            "condition": "acute",
        }
    )
    cells = pd.concat([cells, features], axis=1)
    cells = report.drop(cells, cells["t_type"].isna(), "no transcriptomic type")
    for name in labels.MOUSE_EXCLUDED_SUBCLASSES:
        cells = report.drop(
            cells, cells["subclass"] == name, f"subclass {name} (outside the study)"
        )
    cells = report.drop(cells, cells["label5"].isna(), "other subclass")
    cells = report.drop(cells, cells["specimen_id"].duplicated(), "duplicate specimen")
    return _finish(cells, report), report


def build_human_cells(
    data_dir: str | Path | None = None, mirror: str | None = None
) -> tuple[pd.DataFrame, QCReport]:
    """Human neocortical GABAergic cells of Lee et al. 2023, with revised subclass labels."""
    fx = _read_csv("human_lee2023/LeeDalley_ephys_fx.csv", data_dir, mirror)
    meta = _read_csv("human_lee2023/LeeDalley_manuscript_metadata_v2.csv", data_dir, mirror)
    report = QCReport("human", n_input=len(fx))

    meta = meta.rename(columns=lambda c: c.strip())
    n_meta_dups = int(meta["specimen_id_x"].duplicated().sum())
    meta = meta.drop_duplicates("specimen_id_x")
    fx = fx.assign(specimen_id=fx["specimen_id"].astype("int64"))
    fx = report.drop(fx, fx["specimen_id"].duplicated(), "duplicate specimen")
    joined = fx.merge(meta, how="left", left_on="specimen_id", right_on="specimen_id_x")
    if n_meta_dups:
        report.dropped["duplicate specimen in metadata (kept once)"] += n_meta_dups
    subclass = joined["Revised_subclass_label"]
    cells = pd.DataFrame(
        {
            "specimen_id": joined["specimen_id"],
            "species": "human",
            "donor": joined["Donor"].astype("string"),
            # stripped: one name ends in a space ("Inh L1-4 LAMP5 LCP2 "), which a joined
            # set column ("a|b") cannot carry back
            "t_type": joined["Transcriptomic_type"].str.strip(),
            "subclass": subclass,
            "label": subclass.map(labels.HUMAN_TO_ALIGNED),
            "label5": pd.Series(np.nan, index=joined.index, dtype=object),
            "condition": joined["condition"],
        }
    )
    feature_cols = [c for c in fx.columns if c in SCALAR_FEATURES]
    cells = pd.concat([cells, joined[feature_cols]], axis=1)
    cells = report.drop(cells, cells["donor"].isna(), "not in the metadata")
    cells = report.drop(cells, cells["label"].isna(), "no subclass label")
    return _finish(cells, report), report


def build_cells(
    species: str, data_dir: str | Path | None = None, mirror: str | None = None
) -> tuple[pd.DataFrame, QCReport]:
    """The harmonized cell table of one species and its QC report."""
    builder = {"mouse": build_mouse_cells, "human": build_human_cells}[check_species(species)]
    return builder(data_dir, mirror)


def other_species_cells(
    species: str, data_dir: str | Path | None = None, mirror: str | None = None
) -> dict[str, pd.DataFrame]:
    """The public cells of every species but `species` (e.g. for the species fingerprint)."""
    return {s: build_cells(s, data_dir, mirror)[0] for s in SPECIES if s != check_species(species)}


def read_cell_table(path: str | Path, feature_map: Crosswalk | None = None) -> pd.DataFrame:
    """Read a Parquet, CSV or TSV cell table; a missing, unreadable or malformed one is a clear error.

    Feature columns must be numbers or empty: a text value, a comma decimal or ±inf is
    reported with its column and row, never turned into a silent NaN. A table of another
    pipeline (no canonical features, columns of a known pipeline) or any table given with
    `feature_map` goes through the crosswalk, which prints one summary line.
    """
    path = Path(path)
    if path.exists() and not path.is_file():
        raise Ephys2txError(f"cell table {path} is not a regular file; give a .parquet or .csv")
    if not path.is_file():
        raise Ephys2txError(
            f"cell table {path} not found; write one with `ephys2tx cells SPECIES --out FILE`"
        )
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv", ".tsv"):
        raise Ephys2txError(f"cell table {path} must be .parquet, .csv or .tsv")
    try:
        if suffix == ".parquet":
            table = pd.read_parquet(path)
        else:
            sep = "\t" if suffix == ".tsv" else ","
            table = pd.read_csv(path, sep=sep, low_memory=False)
            ids = "specimen_id" if "specimen_id" in table.columns else None
            ids = ids or next((c for c in table.columns if _id_alias(c)), None)
            if ids is not None:  # ids are names: "007" and "NA" stay as written
                table[ids] = pd.read_csv(
                    path, sep=sep, usecols=[ids], dtype=str, keep_default_na=False,
                    na_values=[""],
                )[ids]  # fmt: skip
    except pd.errors.EmptyDataError as exc:
        raise Ephys2txError(
            f"cell table {path} is empty; give a table with one row per cell"
        ) from exc
    except Exception as exc:  # pyarrow / parser errors: a damaged or mislabelled file
        raise Ephys2txError(
            f"cannot read cell table {path} ({one_line(exc)}); the file is damaged "
            f"or not a {suffix[1:]} file: write it again"
        ) from exc
    if feature_map is not None or not any(c in SCALAR_FEATURES for c in table.columns):
        table = _crosswalked(table, path, feature_map)
    if "specimen_id" not in table.columns:
        alias = next((c for c in table.columns if _id_alias(c)), None)
        if alias is not None:
            table = table.rename(columns={alias: "specimen_id"})
    if "specimen_id" not in table.columns:
        columns = list(table.columns)
        hint = ""
        if len(columns) == 1 and any(s in str(columns[0]) for s in (";", "\t", "|")):
            hint = " (it looks separated by ';', tab or '|': write it with commas)"
        raise Ephys2txError(
            f"cell table {path} has no `specimen_id` column{hint}; add one (one row per cell)"
        )
    if table.empty:
        raise Ephys2txError(f"cell table {path} has no rows; give one row per cell")
    row_offset = 2 if suffix != ".parquet" else 1
    check_unique_ids(table, f"cell table {path}", row_offset)
    for column in [c for c in SCALAR_FEATURES if c in table.columns]:
        table[column] = _numeric_column(table[column], column, path, row_offset)
    return table


def _id_alias(column: object) -> bool:
    return " ".join(str(column).lower().split()) in ID_ALIASES


def _crosswalked(table: pd.DataFrame, path: Path, feature_map: Crosswalk | None) -> pd.DataFrame:
    """The table through `feature_map`, or through the known pipeline its columns match;
    unchanged when no pipeline matches (the usual errors follow)."""
    if table.empty:
        return table
    if feature_map is None and recognize(table.columns) is None:
        return table
    cells, report = to_canonical(table, feature_map, source=path.name)
    console.print(report.summary(), highlight=False)
    return cells


def check_unique_ids(table: pd.DataFrame, source: str, row_offset: int = 1) -> None:
    """Every cell has a `specimen_id`, and no two rows share one (predictions are keyed by it).

    `row_offset` turns a row index into the number a user sees (2 for a CSV line).
    """
    where = "line" if row_offset == 2 else "row"
    ids = table["specimen_id"]
    blank = ids.isna().to_numpy() | (ids.astype(str).str.strip() == "").to_numpy()
    if blank.any():
        rows = np.flatnonzero(blank)
        raise Ephys2txError(
            f"{source}: `specimen_id` is empty on {where} {rows[0] + row_offset} "
            f"({len(rows)} such row(s)); give every cell an id"
        )
    repeated = ids.astype(str).duplicated(keep=False).to_numpy()
    if repeated.any():
        rows = np.flatnonzero(repeated)
        first = ids.astype(str).iloc[rows[0]]
        same = rows[ids.astype(str).iloc[rows].to_numpy() == first] + row_offset
        raise Ephys2txError(
            f"{source}: specimen_id {first} appears on {where}s "
            f"{', '.join(map(str, same[:5]))}{' ...' if len(same) > 5 else ''} "
            f"({int(repeated.sum())} rows share an id); give each cell one row and its own id"
        )


def _numeric_column(values: pd.Series, column: str, path: Path, row_offset: int) -> pd.Series:
    """A feature column as floats; the first bad value is an error with its row (CSV line)."""
    where = "line" if row_offset == 2 else "row"
    if values.dtype == bool or not (
        pd.api.types.is_numeric_dtype(values) or values.dtype == object or values.dtype == "string"
    ):
        raise Ephys2txError(
            f"cell table {path}: column `{column}` holds {values.dtype} values, not numbers"
        )
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    bad = numbers.isna() & values.notna() & (values.astype(str).str.strip() != "")
    if bad.any():
        k = int(np.flatnonzero(bad.to_numpy())[0])
        text = str(values.iloc[k])
        hint = " (use a decimal point, not a comma)" if "," in text else ""
        raise Ephys2txError(
            f"cell table {path}: column `{column}`, {where} {k + row_offset} holds {text!r}, "
            f"not a number{hint}; fix it or leave the cell empty for a missing value "
            f"({int(bad.sum())} such value(s) in this column)"
        )
    infinite = np.isinf(numbers.to_numpy())
    if infinite.any():
        k = int(np.flatnonzero(infinite)[0])
        raise Ephys2txError(
            f"cell table {path}: column `{column}`, {where} {k + row_offset} is "
            f"{numbers.iloc[k]}; a feature must be finite: leave the cell empty for a missing value"
        )
    # scikit-learn's trees compute in float32: a larger magnitude would turn into inf there
    largest = float(np.finfo(np.float32).max)
    huge = np.abs(numbers.to_numpy()) > largest
    if huge.any():
        k = int(np.flatnonzero(huge)[0])
        raise Ephys2txError(
            f"cell table {path}: column `{column}`, {where} {k + row_offset} is "
            f"{numbers.iloc[k]:g}, too large for a feature (at most {largest:.3g}"
            "); check its units, or leave the cell empty for a missing value"
        )
    return numbers


def check_table_out(path: str | Path, option: str = "--out") -> Path:
    """A cell table's output path, checked before any work: .parquet or .csv, writable."""
    path = Path(path)
    if path.suffix not in (".parquet", ".csv"):
        raise Ephys2txError(f"{option} {path} must end in .parquet or .csv")
    return check_out_file(path, option)


def write_cell_table(cells: pd.DataFrame, path: str | Path) -> Path:
    """Write Parquet or CSV by suffix, atomically: a failed write (full disk) leaves no part."""
    path = check_table_out(path, "output")

    def write(tmp: Path) -> None:
        if path.suffix == ".parquet":
            cells.to_parquet(tmp, index=False)
        else:
            csv_safe(cells).to_csv(tmp, index=False)  # spreadsheet-safe text cells

    try:
        atomic_write(path, write)
    except OSError as exc:
        raise Ephys2txError(
            f"cannot write {path} ({exc.strerror or one_line(exc)}); free some space or "
            "choose another folder"
        ) from exc
    return path


# QC rule for features: a feature measured in fewer than this share of a species' cells
# carries too little to learn from (e.g. human `adp_v_last_rheo` is 29%, chirp 44%: kept).
FEATURE_MIN_COVERAGE = 0.2


def usable_features(cells: pd.DataFrame, min_coverage: float = FEATURE_MIN_COVERAGE) -> list[str]:
    """Canonical features measured in at least `min_coverage` of the cells, in family order."""
    return [f for f in SCALAR_FEATURES if f in cells and cells[f].notna().mean() >= min_coverage]


def read_id_list(path: str | Path) -> list[int]:
    """Specimen ids from a headerless list (one per line) or a CSV's `specimen_id` column.

    A first line that is not an integer is a header; then the `specimen_id` column is used,
    else the first. A malformed id is an error naming its line, never silently dropped.
    """
    import csv

    path = Path(path)
    if not path.is_file():
        raise Ephys2txError(
            f"exclusion list {path} not found; give a file of specimen ids (one per line)"
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise Ephys2txError(f"cannot read exclusion list {path} ({exc}); give a text file") from exc
    rows = [(n, row) for n, row in enumerate(csv.reader(text.splitlines()), 1) if any(row)]
    if not rows:
        raise Ephys2txError(
            f"exclusion list {path} is empty; put one specimen id per line (or a `specimen_id` "
            "column), or drop --exclude-ids"
        )
    column = 0
    first = [c.strip() for c in rows[0][1]]
    if not _is_int(first[0]):
        names = [c.lower() for c in first]
        column = names.index("specimen_id") if "specimen_id" in names else 0
        rows = rows[1:]
    ids, bad = [], []
    for n, row in rows:
        value = row[column].strip() if column < len(row) else ""
        if _is_int(value):
            ids.append(int(value))
        else:
            bad.append((n, value))
    if bad:
        line, value = bad[0]
        raise Ephys2txError(
            f"exclusion list {path}: {len(bad)} malformed specimen id(s), e.g. {value!r} on line "
            f"{line}; specimen ids are integers"
        )
    if not ids:
        raise Ephys2txError(
            f"exclusion list {path} lists no specimen ids under its header; one id per line"
        )
    return ids


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True
