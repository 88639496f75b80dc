"""results.json as typed records: the one module that writes and reads it.

The study (`ephys2tx.study`) builds these records; the report (`report.html`) reads them.
Sections keyed by a name (`forest`, `trust`, ...) hold one record per key; the key is made
from the record (`.key`), never taken apart again. `SCHEMA_VERSION` changes whenever a
record changes shape, and a file of another version is refused with a clear error.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..errors import Ephys2txError
from ..files import atomic_write_text

SCHEMA_VERSION = 5  # 3: the default model's subclass ECE; 4: another lab's cells; 5: names (published, baseline, default_model)
T = TypeVar("T")


def classes_name(label: str) -> str:
    """How a label column reads in titles: `label5` is the mouse 5-class label."""
    return "5-class" if label == "label5" else "4-class"


@dataclass(frozen=True)
class Figure:
    """A PNG under the study's figures/ folder and what it shows."""

    file: str
    caption: str


@dataclass
class Scores:
    """One model's cross-validated scores: the summary of its metrics.json."""

    model: str
    species: str
    label: str
    protocol: str
    n_cells: int
    n_folds: int
    n_repeats: int
    macro_f1: dict  # mean, sd, ci95 [low, high], n (folds)
    accuracy: dict  # mean, sd
    per_class_f1: dict[str, float]
    n_features: int | None = None

    @classmethod
    def from_metrics(cls, metrics: dict) -> Scores:
        """The brief of a metrics.json dict (`evaluation.metrics.summarize`)."""
        return cls(
            model=str(metrics.get("model", "")),
            species=str(metrics.get("species", "")),
            label=str(metrics.get("label", "")),
            protocol=str(metrics.get("protocol", "")),
            n_cells=int(metrics["n_cells"]),
            n_folds=int(metrics["n_folds"]),
            n_repeats=int(metrics["n_repeats"]),
            macro_f1={k: metrics["macro_f1"][k] for k in ("mean", "sd", "ci95", "n")},
            accuracy={k: metrics["accuracy"][k] for k in ("mean", "sd")},
            per_class_f1=dict(metrics["per_class_f1"]),
            n_features=metrics.get("n_features"),
        )


@dataclass
class SpeciesData:
    """Cells of one species after QC (public tables or the extracted synthetic cohort)."""

    species: str
    n_input: int
    dropped: dict[str, int]
    n_kept: int
    n_donors: int
    n_features: int
    labels: dict[str, int]
    labels5: dict[str, int]
    extraction_errors: list[dict] = field(default_factory=list)


@dataclass
class Embedding:
    """sPCA → UMAP of one species, with silhouette per class in the sPCA space."""

    species: str
    silhouette: dict[str, float]
    families: dict
    n_cells: int
    n_dropped_incomplete: int
    figure: Figure


@dataclass
class ForestRun:
    """The forest cross-validated on one species, label, input and protocol."""

    species: str
    label: str
    inputs: str  # raw or spca
    protocol: str  # grouped or seed
    scores: Scores
    figure: Figure

    @property
    def key(self) -> str:
        return f"rf_{self.species}_{self.label}_{self.inputs}_{self.protocol}"

    @property
    def published(self) -> str:
        """Key of the study's reported figure (`report.published.REPORTED`)."""
        return f"rf_{self.species}_{self.label}"

    @property
    def title(self) -> str:
        return f"forest ({self.inputs}) {self.species} {classes_name(self.label)}"


@dataclass
class TrustRun:
    """How far the forest's calls can be trusted, calibration nested in each outer fold."""

    species: str
    label: str
    title: str
    alpha: float
    coverage: float
    coverage_per_class: dict[str, float]
    mean_set_size: float
    share_confident: float
    confident_accuracy: float | None
    ece: float
    ece_unscaled: float
    n_folds: int
    n_repeats: int
    figures: list[Figure]
    details: dict = field(default_factory=dict)  # the rest of trust.json's summary

    @property
    def key(self) -> str:
        return f"{self.species}_{self.label}"


@dataclass
class Importance:
    """Forest permutation importance per family (drop in macro-F1)."""

    species: str
    table: list[dict]  # family, mean, sd
    figure: Figure | None  # None when every family scores zero (nothing to draw)


@dataclass
class NetworkRun:
    """A BiLSTM or transfer-study variant's scores, with what the study reported beside it."""

    name: str
    title: str
    scores: Scores
    published: str = ""  # key in report.published.REPORTED, "" when the study has none
    figure: Figure | None = None

    @property
    def key(self) -> str:
        return self.name


@dataclass
class PairedDifference:
    """Macro-F1 of `variant` minus `baseline`, fold by fold on the same folds."""

    variant: str
    baseline: str
    fraction: float
    protocol: str
    mean: float
    ci95: list[float]
    n: int
    n_folds_better: int

    @property
    def key(self) -> str:
        where = "" if self.protocol == "grouped" else f", {self.protocol} protocol"
        return f"{self.variant} − {self.baseline} @ {self.fraction:.0%}{where}"


@dataclass
class TransferStudy:
    """One run of the transfer study: scores at the largest share, paired differences."""

    protocol: str
    scores: dict[str, NetworkRun]
    paired: list[PairedDifference]
    figures: list[Figure]
    learning_curve: list[dict]


@dataclass
class SequenceSection:
    """Section 4 of the report: the BiLSTM runs and the transfer studies together."""

    scores: dict[str, NetworkRun]
    paired: dict[str, PairedDifference]
    figures: list[Figure]
    learning_curve: list[dict]
    notes: list[str]


@dataclass
class DefaultModelRun:
    """The hierarchical default model per level on the shared folds."""

    species: str
    n_cells: int
    n_t_types: int
    n_folds: int
    n_repeats: int
    alpha: float
    levels: dict[str, dict]  # level -> metric -> {mean, sd}
    t_type_errors_with_right_subclass: float
    subclass_ece: float  # top-label ECE after the temperature fitted in each training fold
    subclass_ece_unscaled: float  # the same probabilities before it
    figures: list[Figure]


@dataclass
class CrossLabRun:
    """Another lab's cells (M1, Scala et al. 2021): the benchmark's rows, reduced."""

    n_gaba: int
    n_excitatory: int
    features: list[str]
    rows: dict[str, dict]  # row (a, b, c25, d) -> figure -> value (mean over draws)
    selection: dict  # fold of mice -> the unlabelled method chosen on the other folds
    lab_shift: str | None  # the Allen model as it is: the batch's lab_shift line
    draws: int
    seconds: float
    figure: Figure | None = None


@dataclass
class StepTiming:
    """Seconds one step took when it ran; `reused`: this run read it from the step cache."""

    step: str
    seconds: float
    reused: bool


@dataclass
class StudyResults:
    """Everything results.json holds."""

    ephys2tx_version: str = ""
    preset: str = "full"
    synthetic: bool = False
    settings: dict = field(default_factory=dict)
    data: dict[str, SpeciesData] = field(default_factory=dict)
    forest: dict[str, ForestRun] = field(default_factory=dict)
    sequence: SequenceSection | None = None
    models: dict[str, str] = field(default_factory=dict)
    timings: list[StepTiming] = field(default_factory=list)
    embedding: dict[str, Embedding] = field(default_factory=dict)
    trust: dict[str, TrustRun] = field(default_factory=dict)
    importance: dict[str, Importance] = field(default_factory=dict)
    default_model: dict[str, DefaultModelRun] = field(default_factory=dict)
    crosslab: CrossLabRun | None = None
    cohort: dict = field(default_factory=dict)  # the synthetic cohort's sizes (demo only)
    schema_version: int = SCHEMA_VERSION

    @property
    def quick(self) -> bool:
        return self.preset == "quick"


# --- JSON ------------------------------------------------------------------------------
def to_dict(record: Any) -> Any:
    """A record (or a dict or list of them) as plain JSON types."""
    if dataclasses.is_dataclass(record):
        return asdict(record)
    if isinstance(record, dict):
        return {k: to_dict(v) for k, v in record.items()}
    if isinstance(record, list | tuple):
        return [to_dict(v) for v in record]
    return record


def build(kind: Any, value: Any) -> Any:
    """`value` (plain JSON) as `kind`: a record, a list or dict of records, or as it is."""
    origin = typing.get_origin(kind)
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        return build(options[0], value) if len(options) == 1 else value
    if dataclasses.is_dataclass(kind):
        return from_dict(kind, value)
    if origin is list:
        (item,) = typing.get_args(kind)
        return [build(item, v) for v in value]
    if origin is dict:
        _, item = typing.get_args(kind)
        return {k: build(item, v) for k, v in value.items()}
    return value


def from_dict(kind: type[T], data: dict) -> T:
    """A record of type `kind` from its JSON dict (nested records included)."""
    hints = typing.get_type_hints(kind)
    names = {f.name for f in dataclasses.fields(kind)}
    return kind(**{k: build(hints[k], v) for k, v in data.items() if k in names})


def keyed(records: list) -> dict:
    """Records by their `.key`, in order."""
    return {r.key: r for r in records}


def write_results(results: StudyResults, path: Path) -> Path:
    """results.json, written atomically."""
    return atomic_write_text(path, json.dumps(to_dict(results), indent=2, default=float))


def read_results(path: Path) -> StudyResults:
    """results.json as records; a file of another schema version is a clear error."""
    data = json.loads(Path(path).read_text())
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != SCHEMA_VERSION:
        raise Ephys2txError(
            f"{path} has results schema {version}, this ephys2tx reads {SCHEMA_VERSION}; "
            "run the study again to rewrite it"
        )
    return from_dict(StudyResults, data)
