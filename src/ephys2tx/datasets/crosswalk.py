"""Feature crosswalks: another pipeline's columns as canonical IPFX features.

The correspondences are declared once, in the package file `crosswalks.csv` (one row per
pipeline, canonical feature and their column, with the unit conversion or formula, how the
definitions differ and a grade). A lab's own pipeline comes as a map file of the same fields
(`Crosswalk.read`). Pure computation: the only file read is the map itself.

Grades: `exact` (same definition and unit after conversion), `approximate` (the same
quantity, defined or measured differently: used, and said so), `none` (documented, not used).
"""

from __future__ import annotations

import ast
import csv
import difflib
import functools
import io
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import Ephys2txError
from ..features.families import FEATURE_UNITS
from ..schema import ID_COLUMNS

CROSSWALK_FILE = "crosswalks.csv"
GRADES: tuple[str, ...] = ("exact", "approximate", "none")
USED_GRADES: tuple[str, ...] = ("exact", "approximate")
FIELDS: tuple[str, ...] = (
    "pipeline", "canonical", "theirs", "their_unit", "formula", "grade", "differs",
)  # fmt: skip
REQUIRED_FIELDS: tuple[str, ...] = ("canonical", "theirs")
ID_TARGET = "specimen_id"
# Id columns recognized in any table when it has no `specimen_id` (compared case- and
# space-insensitively); a pipeline's own id column is a `specimen_id` row of its crosswalk.
ID_ALIASES: tuple[str, ...] = ("cell id", "cell_id", "cell", "cell name", "cell_name")
# Every numeric column of a crosswalked table is also kept as it is, under this prefix
# ("own:Latency (ms)"): the canonical models ignore them, a lab model fitted with the lab's
# labels may use them (`models/lab.py`), since a lab's model can use all of its own columns.
OWN_PREFIX = "own:"
PIPELINE_TITLES: dict[str, str] = {
    "berens": "the Berens lab extractor (Scala et al. 2019, 2021)",
    "efel": "eFEL (Blue Brain Project)",
}
# A known pipeline is recognized in a table without canonical features when at least this
# many of the columns its crosswalk uses are there (the most found wins): enough to tell
# pipelines apart, tolerant of a lab that keeps only some columns.
RECOGNIZE_MIN = 3


@dataclass(frozen=True)
class Plausible:
    """Where the median magnitude of a feature in one canonical unit lies, and the units a
    table off that range was likely written in (name, factor to the canonical unit)."""

    low: float
    high: float
    likely: tuple[tuple[str, float], ...] = ()


# One plausible range per canonical unit, for the median |value| of a column (zeros left
# out). Two units are split by scale: AP widths ("s (AP)"; a width in ms would pass as the
# seconds of a latency) and differences of voltages ("mV (difference)": the slow trough is a
# fraction of a mV, where a potential in V would pass). Dimensionless ("1") and "rad" are
# not checked. The Allen tables of both species lie inside every range (a test checks).
PLAUSIBLE_RANGES: dict[str, Plausible] = {
    "mV": Plausible(5.0, 300.0, (("V", 1e3),)),
    "mV (difference)": Plausible(0.05, 300.0, (("V", 1e3),)),
    "MOhm": Plausible(5.0, 5000.0, (("GOhm", 1e3), ("kOhm", 1e-3), ("Ohm", 1e-6))),
    "GOhm": Plausible(1e-3, 10.0, (("MOhm", 1e-3),)),
    "s": Plausible(1e-3, 3.0, (("ms", 1e-3), ("µs", 1e-6))),
    "s (AP)": Plausible(2e-5, 5e-3, (("ms", 1e-3), ("µs", 1e-6))),
    "pA": Plausible(0.5, 1e4, (("nA", 1e3), ("A", 1e12))),
    "Hz": Plausible(0.05, 2000.0, (("kHz", 1e3),)),
    "Hz/pA": Plausible(1e-4, 20.0, (("Hz/nA", 1e-3),)),
    "mV/ms": Plausible(0.05, 5000.0, (("mV/s", 1e-3),)),
    "mV*s": Plausible(1e-3, 100.0, (("mV*ms", 1e-3),)),
}


def plausible_scale(feature: str) -> str:
    """The key of PLAUSIBLE_RANGES a canonical feature is checked against: its unit, or
    "s (AP)" for AP widths and "mV (difference)" for voltage differences."""
    unit = FEATURE_UNITS[feature]
    if unit == "s" and feature.startswith("width"):
        return "s (AP)"
    if unit == "mV" and "deltav" in feature:
        return "mV (difference)"
    return unit


@dataclass(frozen=True)
class Correspondence:
    """One row of a crosswalk: their column (or formula) as one canonical feature."""

    pipeline: str
    canonical: str  # "" for a `none` row with no IPFX counterpart
    theirs: str
    their_unit: str = ""
    formula: str = "x"
    grade: str = "approximate"
    differs: str = ""

    @property
    def used(self) -> bool:
        return self.grade in USED_GRADES and bool(self.canonical)

    def columns(self) -> list[str]:
        """Their columns the formula reads: `theirs` first, then each {name}."""
        return [self.theirs] + [c for c in _braced(self.formula) if c != self.theirs]


@dataclass
class CrosswalkReport:
    """What `to_canonical` did: the pipeline, canonical <- theirs, what was left out."""

    pipeline: str
    title: str
    source: str
    n_columns: int
    id_column: str
    mapped: dict[str, str] = field(default_factory=dict)  # canonical -> their column
    grades: dict[str, str] = field(default_factory=dict)  # canonical -> exact/approximate
    formulas: dict[str, str] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)  # their columns not used
    passthrough: list[str] = field(default_factory=list)
    not_finite: dict[str, int] = field(default_factory=dict)  # values the formula made NaN
    absent: list[str] = field(default_factory=list)  # a given map's columns not in the table
    recognized: bool = False

    def summary(self) -> str:
        """One line: which pipeline, how many columns were mapped and left out."""
        verb = "recognized" if self.recognized else "applied"
        n_used = self.n_columns - len(self.left_out)  # ids, features, formula inputs, labels
        exact = sum(g == "exact" for g in self.grades.values())
        shown = ", ".join(self.left_out[:6]) + (" ..." if len(self.left_out) > 6 else "")
        text = (
            f"{verb} {self.title} in {self.source}: mapped {n_used} of {self.n_columns} "
            f"columns to {len(self.mapped)} canonical features ({exact} exact, "
            f"{len(self.mapped) - exact} approximate), {len(self.left_out)} left out"
        )
        if self.left_out:
            text += f": {shown}"
        if self.absent:
            text += f"; not in the table: {', '.join(self.absent)}"
        if self.not_finite:
            bad = ", ".join(f"{k} ({v})" for k, v in self.not_finite.items())
            text += f"; not finite after conversion, left missing: {bad}"
        return text

    def as_dict(self) -> dict:
        return {
            "pipeline": self.pipeline,
            "source": self.source,
            "id_column": self.id_column,
            "mapped": self.mapped,
            "grades": self.grades,
            "left_out": self.left_out,
            "not_finite": self.not_finite,
        }


@dataclass(frozen=True)
class Crosswalk:
    """The correspondences of one pipeline."""

    pipeline: str
    rows: tuple[Correspondence, ...]
    title: str = ""
    origin: str = CROSSWALK_FILE

    @property
    def label(self) -> str:
        return self.title or PIPELINE_TITLES.get(self.pipeline, f"the {self.pipeline} pipeline")

    @property
    def id_columns(self) -> list[str]:
        return [r.theirs for r in self.rows if r.canonical == ID_TARGET]

    @property
    def feature_rows(self) -> list[Correspondence]:
        return [r for r in self.rows if r.canonical != ID_TARGET]

    def match(self, columns: Iterable[str]) -> int:
        """How many of the columns this crosswalk uses are in `columns`."""
        names = {_norm(c) for r in self.feature_rows if r.used for c in r.columns()}
        return len(names & {_norm(c) for c in columns})

    @classmethod
    def read(cls, path: str | Path) -> Crosswalk:
        """A lab's own feature map (.csv, or .yaml/.yml) with the crosswalk's fields."""
        return read_feature_map(path)


def _norm(name: object) -> str:
    return " ".join(str(name).lower().split())


def _braced(formula: str) -> list[str]:
    return re.findall(r"\{([^{}]+)\}", formula)


# --- formulas: x, {their column}, numbers, + - * / ** and parentheses; nothing else ----------

_BINARY: dict[type, Callable] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable] = {ast.USub: operator.neg, ast.UAdd: operator.pos}


def parse_formula(formula: str) -> tuple[ast.Expression, list[str]]:
    """The checked syntax tree of a formula and the columns its names stand for (x first).

    Raises ValueError with a short reason for anything but arithmetic on x, {columns} and
    numbers."""
    text = (formula or "x").strip()
    columns = _braced(text)
    for k, name in enumerate(dict.fromkeys(columns)):
        text = text.replace("{" + name + "}", f"_c{k}")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"formula {formula!r} is not arithmetic ({exc.msg})") from None
    names = ["x"] + [f"_c{k}" for k in range(len(dict.fromkeys(columns)))]
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in names:
            raise ValueError(
                f"formula {formula!r} names {node.id!r}; use x for the column and "
                "{column name} for another column"
            )
        if isinstance(node, ast.Constant) and (
            isinstance(node.value, bool) or not isinstance(node.value, int | float)
        ):
            raise ValueError(f"formula {formula!r} holds {node.value!r}, not a number")
        allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Load)
        allowed += tuple(_BINARY) + tuple(_UNARY)
        if not isinstance(node, allowed):
            raise ValueError(
                f"formula {formula!r} uses {type(node).__name__}; only + - * / ** and "
                "parentheses on x, {columns} and numbers"
            )
    return tree, list(dict.fromkeys(columns))


def evaluate_formula(formula: str, x: np.ndarray, others: dict[str, np.ndarray] | None = None):
    """The formula on float arrays (x = their column, {name} = others[name])."""
    tree, columns = parse_formula(formula)
    env = {"x": np.asarray(x, float)}
    for k, name in enumerate(columns):
        env[f"_c{k}"] = np.asarray((others or {})[name], float)

    def run(node):
        if isinstance(node, ast.Expression):
            return run(node.body)
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](run(node.left), run(node.right))
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](run(node.operand))
        if isinstance(node, ast.Constant):
            return float(node.value)
        return env[node.id]

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.asarray(run(tree), float) * np.ones_like(env["x"])


# --- reading crosswalks -------------------------------------------------------------------


def _rows_from_records(
    records: list[tuple[int, dict]], origin: str, where: str, default_pipeline: str
) -> list[Correspondence]:
    rows = []
    for n, record in records:
        record = {str(k).strip(): ("" if v is None else str(v).strip()) for k, v in record.items()}
        missing = [f for f in REQUIRED_FIELDS if not record.get(f)]
        grade = (record.get("grade") or "approximate").lower()
        if grade not in GRADES:
            raise Ephys2txError(
                f"feature map {origin}, {where} {n}: grade {record.get('grade')!r} is not one "
                f"of {', '.join(GRADES)}"
            )
        if missing and not (grade == "none" and record.get("theirs")):
            raise Ephys2txError(
                f"feature map {origin}, {where} {n}: no {' or '.join(missing)}; every row "
                "names the canonical feature and their column (fields: "
                f"{', '.join(FIELDS)})"
            )
        canonical = record.get("canonical", "")
        if canonical and canonical != ID_TARGET and canonical not in FEATURE_UNITS:
            close = difflib.get_close_matches(canonical, list(FEATURE_UNITS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise Ephys2txError(
                f"feature map {origin}, {where} {n}: {canonical!r} is not a canonical "
                f"feature{hint}; use a feature name of the IPFX tables (ephys2tx.features.families)"
            )
        formula = record.get("formula") or "x"
        try:
            parse_formula(formula)
        except ValueError as exc:
            raise Ephys2txError(f"feature map {origin}, {where} {n}: {exc}") from None
        rows.append(
            Correspondence(
                record.get("pipeline") or default_pipeline, canonical, record["theirs"],
                record.get("their_unit", ""), formula, grade, record.get("differs", ""),
            )
        )  # fmt: skip
    return rows


def _check_unique(rows: list[Correspondence], origin: str) -> None:
    seen: dict[tuple[str, str], str] = {}
    for row in rows:
        if not row.used and row.canonical != ID_TARGET:
            continue
        key = (row.pipeline, row.canonical)
        if key in seen:
            raise Ephys2txError(
                f"feature map {origin}: {row.canonical!r} is mapped twice for {row.pipeline} "
                f"(from {seen[key]!r} and {row.theirs!r}); keep one row per canonical feature"
            )
        seen[key] = row.theirs


def _csv_records(text: str) -> list[tuple[int, dict]]:
    """CSV rows as (line number, record); lines starting with # are comments."""
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1)]
    kept = [(n, line) for n, line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not kept:
        return []
    reader = csv.DictReader(io.StringIO("\n".join(line for _, line in kept)))
    records = []
    for (n, _), record in zip(kept[1:], reader, strict=False):
        if None in record:
            raise ValueError(f"line {n} has more fields than the header")
        records.append((n, record))
    header = reader.fieldnames or []
    unknown = [h for h in header if h.strip() not in FIELDS]
    if unknown:
        raise ValueError(f"unknown column(s) {', '.join(unknown)}; the fields are {FIELDS}")
    return records


def parse_crosswalk_csv(text: str, origin: str, default_pipeline: str = "") -> list[Correspondence]:
    """The rows of a crosswalk CSV (the package file, or a lab's map)."""
    try:
        records = _csv_records(text)
    except (ValueError, csv.Error) as exc:
        raise Ephys2txError(f"feature map {origin}: {exc}; write it as CSV with a header") from exc
    if not records:
        raise Ephys2txError(
            f"feature map {origin} has no rows; give one row per feature (fields: "
            f"{', '.join(FIELDS)})"
        )
    rows = _rows_from_records(records, origin, "line", default_pipeline)
    _check_unique(rows, origin)
    return rows


def known_crosswalks() -> dict[str, Crosswalk]:
    """The crosswalks shipped with the package, by pipeline."""
    return dict(_package_crosswalks())


@functools.cache
def _package_crosswalks() -> dict[str, Crosswalk]:
    text = resources.files(__package__).joinpath(CROSSWALK_FILE).read_text(encoding="utf-8")
    rows = parse_crosswalk_csv(text, CROSSWALK_FILE)
    pipelines = dict.fromkeys(r.pipeline for r in rows)
    return {
        p: Crosswalk(p, tuple(r for r in rows if r.pipeline == p), PIPELINE_TITLES.get(p, ""))
        for p in pipelines
    }


def read_feature_map(path: str | Path) -> Crosswalk:
    """A lab's feature map: CSV or YAML with the crosswalk's fields; errors are one line."""
    path = Path(path)
    if not path.is_file():
        raise Ephys2txError(
            f"feature map {path} not found; give a .csv or .yaml file with the fields "
            f"{', '.join(FIELDS)}"
        )
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".yaml", ".yml"):
        raise Ephys2txError(f"feature map {path} must be .csv, .yaml or .yml")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise Ephys2txError(f"cannot read feature map {path} ({exc}); give a text file") from exc
    if suffix == ".csv":
        rows = parse_crosswalk_csv(text, str(path), default_pipeline=path.stem)
    else:
        rows = _yaml_rows(text, path)
    pipelines = sorted({r.pipeline for r in rows})
    if len(pipelines) > 1:
        raise Ephys2txError(
            f"feature map {path} holds several pipelines ({', '.join(pipelines)}); give one "
            "pipeline per map"
        )
    return Crosswalk(pipelines[0], tuple(rows), f"the feature map {path.name}", str(path))


def _yaml_rows(text: str, path: Path) -> list[Correspondence]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" near line {where.line + 1}" if where is not None else ""
        raise Ephys2txError(f"feature map {path} is not valid YAML{line}; fix its syntax") from exc
    pipeline = path.stem
    if isinstance(data, dict):
        pipeline = str(data.get("pipeline") or pipeline)
        data = data.get("features")
    if not isinstance(data, list) or not data or not all(isinstance(d, dict) for d in data):
        raise Ephys2txError(
            f"feature map {path}: expected a list of features (or `features:` under a "
            "`pipeline:`), each with canonical, theirs and optionally formula, grade"
        )
    rows = _rows_from_records(list(enumerate(data, 1)), str(path), "feature", pipeline)
    _check_unique(rows, str(path))
    return rows


# --- applying a crosswalk -----------------------------------------------------------------


def recognize(columns: Iterable[str]) -> Crosswalk | None:
    """The known pipeline whose column names best match `columns`, or None."""
    columns = list(columns)
    scored = [(cw.match(columns), cw) for cw in known_crosswalks().values()]
    scored = [(n, cw) for n, cw in scored if n >= RECOGNIZE_MIN]
    return max(scored, key=lambda nc: nc[0])[1] if scored else None


def _find(columns: list[str], name: str) -> str | None:
    """The table's column that is `name`, compared case- and space-insensitively."""
    if name in columns:
        return name
    wanted = _norm(name)
    return next((c for c in columns if _norm(c) == wanted), None)


def _id_column(df: pd.DataFrame, crosswalk: Crosswalk, source: str) -> str:
    columns = [str(c) for c in df.columns]
    for name in [ID_TARGET, *crosswalk.id_columns, *ID_ALIASES]:
        found = _find(columns, name)
        if found is not None:
            return found
    raise Ephys2txError(
        f"{source} has no id column (`specimen_id`, or one of: "
        f"{', '.join(crosswalk.id_columns + list(ID_ALIASES))}); add `specimen_id` "
        "(one row per cell)"
    )


def _numbers(values: pd.Series, column: str, source: str) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    bad = numbers.isna() & values.notna() & (values.astype(str).str.strip() != "")
    if bad.any():
        k = int(np.flatnonzero(bad.to_numpy())[0])
        raise Ephys2txError(
            f"{source}: column `{column}`, data row {k + 1} holds {str(values.iloc[k])!r}, not a "
            f"number ({int(bad.sum())} such value(s)); fix it or leave the cell empty"
        )
    return numbers.to_numpy()


def check_plausible(cells: pd.DataFrame, source: str, origin: dict[str, str] | None = None):
    """Refuse a canonical feature whose values are implausible for its unit, naming the unit
    the values were likely written in (the median |value|, zeros left out, is checked)."""
    origin = origin or {}
    for feature in [c for c in cells.columns if c in FEATURE_UNITS]:
        scale = plausible_scale(feature)
        rule = PLAUSIBLE_RANGES.get(scale)
        values = np.abs(pd.to_numeric(cells[feature], errors="coerce").to_numpy(float))
        values = values[np.isfinite(values) & (values > 0)]
        if rule is None or not len(values):
            continue
        median = float(np.median(values))
        if rule.low <= median <= rule.high:
            continue
        unit = FEATURE_UNITS[feature]
        likely = [n for n, f in rule.likely if rule.low <= median * f <= rule.high]
        hint = (
            f"it looks like {likely[0]}: convert it to {unit}"
            if likely
            else f"check its unit ({unit} expected)"
        )
        came = f" (from `{origin[feature]}`)" if feature in origin else ""
        raise Ephys2txError(
            f"{source}: `{feature}`{came} has median magnitude {median:.4g}, implausible in "
            f"{unit} (expected {rule.low:g} to {rule.high:g}); {hint}, in the table or in the "
            "feature map's formula"
        )


def to_canonical(
    df: pd.DataFrame, crosswalk: Crosswalk | None = None, source: str = "the cell table"
) -> tuple[pd.DataFrame, CrosswalkReport]:
    """Canonical cells from a table of another pipeline's features.

    With `crosswalk=None` the pipeline is recognized from the column names (an error when
    none matches). Returns `specimen_id` (str, as in the file), the canonical features the
    used rows give, and any canonical id/label columns the table already had; the report
    says what was mapped and left out."""
    columns = [str(c) for c in df.columns]
    recognized = crosswalk is None
    if crosswalk is None:
        crosswalk = recognize(columns)
        if crosswalk is None:
            known = ", ".join(cw.label for cw in known_crosswalks().values())
            raise Ephys2txError(
                f"{source} has no canonical features and its columns match no known pipeline "
                f"({known}); give a map of its columns with --feature-map FILE"
            )
    id_column = _id_column(df, crosswalk, source)
    ids = df[id_column]
    cells = pd.DataFrame({ID_TARGET: ids.map(lambda v: str(v).strip() if pd.notna(v) else v)})
    cells.index = df.index
    report = CrosswalkReport(
        crosswalk.pipeline, crosswalk.label, source, len(columns), id_column,
        recognized=recognized,
    )  # fmt: skip
    for row in crosswalk.feature_rows:
        if not row.used:
            continue
        found = [_find(columns, c) for c in row.columns()]
        if any(f is None for f in found):
            if not recognized:  # a map given for this table: say which of its rows found nothing
                report.absent += [c for c, f in zip(row.columns(), found, strict=True) if f is None]
            continue
        if row.canonical in df.columns and row.canonical not in found:
            raise Ephys2txError(
                f"{source} already has `{row.canonical}` and the map also makes it from "
                f"`{row.theirs}`; drop one of the two"
            )
        x = _numbers(df[found[0]], found[0], source)
        others = {c: _numbers(df[f], f, source) for c, f in zip(row.columns(), found, strict=True)}
        values = evaluate_formula(row.formula, x, others)
        made_bad = ~np.isfinite(values) & np.isfinite(x)
        if made_bad.any():
            report.not_finite[row.canonical] = int(made_bad.sum())
        cells[row.canonical] = np.where(np.isfinite(values), values, np.nan)
        report.mapped[row.canonical] = found[0]
        report.grades[row.canonical] = row.grade
        report.formulas[row.canonical] = row.formula
    if not report.mapped:
        raise Ephys2txError(
            f"{source}: none of the columns of {crosswalk.label} is in the table; check the "
            "column names against the map"
        )
    for column in columns:  # canonical id/label columns and canonical features pass through
        keep = (column in ID_COLUMNS and column != ID_TARGET) or column in FEATURE_UNITS
        if keep and column not in cells.columns:
            cells[column] = df[column]
            report.passthrough.append(column)
    used = {id_column, *report.mapped.values(), *report.passthrough}
    for row in crosswalk.feature_rows:
        if row.used and row.canonical in report.mapped:
            used |= {_find(columns, c) for c in row.columns()}
    report.left_out = [c for c in columns if c not in used]
    check_plausible(cells, source, report.mapped)
    own = {
        OWN_PREFIX + c: pd.to_numeric(df[c], errors="coerce").astype(float)
        for c in columns
        if c != id_column and c not in cells.columns
    }  # fmt: skip
    own = {k: v for k, v in own.items() if v.notna().any()}  # text columns are not features
    cells = pd.concat([cells, pd.DataFrame(own, index=cells.index)], axis=1)
    return cells.reset_index(drop=True), report
