"""The Python API behind `ephys2tx predict`: load a model, read cells, predict with trust.

```python
import ephys2tx as ex
model = ex.load_model("human")            # a species: its cached default model; a path: a saved model
table = model.predict(ex.read_cells("cells.csv"), alpha=0.1)   # what `predict` writes
```

`Predictor` serves both kinds of model directory the same way: a flat classifier written by
`train rf|bilstm|transfer`, and the hierarchical subclass → t-type model (`train hierarchical`,
the cached default model). The CLI only parses options, prints and writes files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .console import console
from .errors import Ephys2txError
from .schema import FLAG_SEPARATOR, SET_SEPARATOR, SPECIES, split_joined

# The flags a missing model column can raise; `PredictionRun.missing_note` counts them.
MISSING_FLAGS = ("few_features", "missing_family:")
# The columns the CLI shows on screen for each kind of model (all columns go to the CSV).
SHOWN_COLUMNS = {
    "hierarchical": [
        "specimen_id", "subclass", "subclass_set", "t_type", "t_type_set", "most_specific",
        "confident", "flags",
    ],
    "flat": ["specimen_id", "predicted", "prediction_set", "confident", "novelty", "flags"],
}  # fmt: skip


@dataclass(frozen=True)
class PredictionRun:
    """One prediction: the table `predict` writes, the model columns the cells lacked
    (treated as unmeasured), and, for hierarchical models, the MapMyCells-style JSON."""

    table: pd.DataFrame
    missing: list[str]
    calibrated: bool
    mapping: dict | None = None
    # the `lab_shift` line when the batch differs from the training cells more than their donors do
    batch_note: str | None = None

    def missing_note(self) -> str | None:
        """One line naming the columns the input lacked and the flags they raised."""
        if not self.missing:
            return None
        flags = [
            flag
            for joined in self.table["flags"]
            for flag in split_joined(joined, FLAG_SEPARATOR)
            if flag.startswith(MISSING_FLAGS)
        ]
        counts = ", ".join(f"{k} ({v} cells)" for k, v in pd.Series(flags).value_counts().items())
        return (
            f"the input lacks {len(self.missing)} model column(s), treated as unmeasured "
            f"(NaN): {', '.join(self.missing)}; flags: {counts or 'none raised'}"
        )

    @property
    def n_confident(self) -> int:
        return int(self.table["confident"].sum())

    @property
    def n_flagged(self) -> int:
        return int((self.table["flags"] != "").sum())


@dataclass(frozen=True)
class DefaultModel:
    """Where a species' default model comes from, so that a table measuring only some of
    its inputs gets the default model trained on those."""

    species: str
    data_dir: str | Path | None
    mirror: str | None
    say: Callable[[str], None]


class Predictor:
    """A saved model with its trust layer: probabilities, conformal sets, flags, novelty.

    Create one with `load_model`. `kind` is "hierarchical" (subclass, then t-type) or
    "flat" (one level)."""

    def __init__(self, model_dir: str | Path, default: DefaultModel | None = None):
        from .models.bundle import HIERARCHICAL, META_FILE, read_card

        self.model_dir = Path(model_dir)
        if not (self.model_dir / META_FILE).is_file():
            raise Ephys2txError(
                f"{self.model_dir} is not a model directory (no {META_FILE}); give a folder "
                "written by `ephys2tx train`, or a species (human, mouse) for the default model"
            )
        self.card = read_card(self.model_dir)
        self.kind = "hierarchical" if self.card.kind == HIERARCHICAL else "flat"
        self.default = default
        self._loaded = None
        self._subsets: dict[Path, Predictor] = {}

    def __repr__(self) -> str:
        return f"Predictor({self.kind}, {self.card.species}, {self.model_dir})"

    @property
    def species(self) -> str:
        return self.card.species

    @property
    def classes(self) -> list[str]:
        """The classes of `predicted` and of the `p_<class>` columns (subclasses)."""
        return [str(c) for c in self.card.classes]

    @property
    def shown_columns(self) -> list[str]:
        return SHOWN_COLUMNS[self.kind]

    @property
    def measured_features(self) -> list[str]:
        """The feature columns a cell table should carry (derived inputs left out)."""
        from .models.mapping import card_features

        return card_features(self.card) if self.kind == "hierarchical" else self.card.features

    @property
    def training_summary(self):
        """What the flags and novelty compare a cell with (the training cells' ranges,
        families and neighbours), or None for a model saved without it."""
        model = self._model()
        return model.summary if self.kind == "flat" else model[1].summary

    def _model(self):
        """The fitted parts, read on first use (a flat model: a `TrustedModel`; a
        hierarchical one: estimator and stored trust)."""
        if self._loaded is None:
            if self.kind == "flat":
                from .models.trusted import TrustedModel

                self._loaded = TrustedModel.load(self.model_dir)
            else:
                from .models.bundle import load_model as load_estimator
                from .models.trusted import load_trust

                estimator, self.card = load_estimator(self.model_dir)
                classes = {
                    "subclass": [str(c) for c in estimator.subclasses_],
                    "t_type": [str(c) for c in estimator.taxonomy.leaves],
                }
                self._loaded = (estimator, load_trust(self.model_dir, classes))
        return self._loaded

    def for_cells(self, cells: pd.DataFrame) -> Predictor:
        """The predictor these cells get: this one, or, for a species' default model whose
        inputs the cells do not all measure, the default model trained on exactly the
        features they measure (cached per feature set; not the rest left NaN)."""
        if self.default is None:
            return self
        from .default_model import default_inputs, default_model_for_subset, subset_of_inputs

        d = self.default
        inputs = default_inputs(d.species, d.data_dir, d.mirror)
        subset = subset_of_inputs(d.species, cells, inputs)
        if set(subset if subset is not None else inputs) == set(self.card.features):
            return self
        target = default_model_for_subset(d.species, subset, inputs, d.data_dir, d.mirror, d.say)
        if target not in self._subsets:
            self._subsets[target] = Predictor(target, d)
        return self._subsets[target]

    def run(self, cells: pd.DataFrame, alpha: float = 0.1) -> PredictionRun:
        """Predict every cell of a cell table (one row per cell, `specimen_id` plus features)."""
        chosen = self.for_cells(cells)
        if chosen is not self:
            return chosen.run(cells, alpha)
        if self.kind == "flat":
            model = self._model()
            table, missing = model.predict_table(cells, alpha)
            note = None
            if model.summary is not None:
                note = model.summary.batch_note(cells, table["predicted"].to_numpy())
            return PredictionRun(table, missing, model.conformal is not None, batch_note=note)
        return self._run_hierarchical(cells, alpha)

    def _run_hierarchical(self, cells: pd.DataFrame, alpha: float) -> PredictionRun:
        from .models.bundle import align_features
        from .models.mapping import card_features, predict_mapping
        from .models.trusted import trust_table
        from .threads import predicting

        estimator, trust = self._model()
        with predicting():  # the thread policy, loops in order (threads.py)
            mapping = predict_mapping(estimator, self.card, cells, alpha, trust.conformal)
        _, missing = align_features(cells, card_features(self.card))
        table = mapping.table
        proba = table[[f"p_{c}" for c in self.classes]].to_numpy()
        sets = [split_joined(s, SET_SEPARATOR) for s in table["subclass_set"]]
        calibrated = bool(table["subclass_set"].astype(bool).any())
        columns = trust_table(
            cells, proba, self.classes, sets if calibrated else None, trust.summary,
            predicted=table["predicted"].to_numpy(),  # the model's call, ties as it broke them
        )  # fmt: skip
        at = table.columns.get_loc(f"p_{self.classes[-1]}") + 1
        table = pd.concat([table.iloc[:, :at], columns, table.iloc[:, at:]], axis=1)
        note = None
        if trust.summary is not None:
            note = trust.summary.batch_note(cells, table["subclass"].to_numpy())
        return PredictionRun(table, missing, calibrated, mapping.json, note)

    def predict(self, cells: pd.DataFrame, alpha: float = 0.1) -> pd.DataFrame:
        """The table `ephys2tx predict` writes, column for column."""
        return self.run(cells, alpha).table

    def predict_proba(self, cells: pd.DataFrame) -> pd.DataFrame:
        """P(class) per cell (rows in the order of `cells`, columns `classes`); calibrated
        (temperature-scaled) where the model stored a temperature."""
        chosen = self.for_cells(cells)
        if chosen is not self:
            return chosen.predict_proba(cells)
        if self.kind == "flat":
            proba = self._model().predict_proba(cells)
        else:
            from .models.bundle import align_features
            from .models.hierarchy import model_inputs
            from .models.mapping import card_features
            from .threads import predicting

            estimator, _ = self._model()
            align_features(cells, card_features(self.card))  # none of them: a clear error
            with predicting():
                levels = estimator.predict_proba_levels(model_inputs(cells, self.card.features))
            proba = levels["subclass"][self.classes].to_numpy()
        return pd.DataFrame(np.asarray(proba, float), columns=self.classes, index=cells.index)

    def predict_set(self, cells: pd.DataFrame, alpha: float = 0.1) -> list[list[str]]:
        """The conformal prediction set of each cell at level alpha, most probable first."""
        run = self.run(cells, alpha)
        if not run.calibrated:
            raise Ephys2txError(
                f"{self.model_dir} has no stored calibration, so no prediction sets; retrain it "
                "without --no-calibrate"
            )
        return [split_joined(s, SET_SEPARATOR) for s in run.table["prediction_set"]]


def load_model(
    model: str | Path,
    *,
    data_dir: str | Path | None = None,
    mirror: str | None = None,
    say: Callable[[str], None] | None = None,
    cells: pd.DataFrame | None = None,
) -> Predictor:
    """A species ("human", "mouse"): its default model, trained from the public tables on
    first use and cached in the data directory. A path: a model directory written by
    `ephys2tx train`.

    Cells that do not measure all of a default model's inputs are predicted by the default
    model trained on exactly the features they measure (`Predictor.for_cells`); given
    `cells` here, that model is the one loaded (and the full one is not trained first)."""
    if isinstance(model, str) and model in SPECIES:
        from .default_model import cached_default_model, default_model_for_table

        default = DefaultModel(model, data_dir, mirror, say or console.print)
        if cells is not None:
            target = default_model_for_table(model, cells, data_dir, mirror, say=default.say)
        else:
            target = cached_default_model(model, data_dir, mirror, say=default.say)
        return Predictor(target, default)
    return Predictor(Path(model))


def read_cells(
    inputs: str | Path | Iterable[str | Path],
    features_dir: str | Path | None = None,
    feature_map: str | Path | None = None,
) -> pd.DataFrame:
    """One cell table from cell tables (.csv/.tsv/.parquet) and recordings (.nwb/.abf files
    or folders, put through `extract` into `features_dir`).

    A table of another feature pipeline goes through its crosswalk: a known one recognized
    from the column names, or the lab's own map `feature_map` (CSV or YAML; see
    docs/guides/crosswalks.md)."""
    from .datasets.cells import check_unique_ids, read_cell_table
    from .datasets.crosswalk import Crosswalk
    from .features.batch import run_batch
    from .files import check_writable_folder
    from .recordings.read import expand_recordings, is_recording_input

    paths = [Path(inputs)] if isinstance(inputs, str | Path) else [Path(p) for p in inputs]
    crosswalk = Crosswalk.read(feature_map) if feature_map is not None else None
    tables = [
        read_cell_table(path, feature_map=crosswalk)
        for path in paths
        if not is_recording_input(path)
    ]
    recordings, found = expand_recordings(p for p in paths if is_recording_input(p))
    for line in found:
        console.print(line, highlight=False)
    if recordings:
        if features_dir is None:
            raise Ephys2txError("recordings need a folder for their features: give features_dir")
        features_dir = Path(features_dir)
        check_writable_folder(features_dir, f"features folder {features_dir} (--features-dir)")
        batch = run_batch(recordings, features_dir)
        for note in batch.warnings:  # e.g. two recordings of one name: ids named apart
            console.print(f"[yellow]warning[/] {note}")
        for row in batch.errors.itertuples(index=False):
            console.print(f"[yellow]skipped[/] {row.file}: {row.reason}")
        if len(batch.cells):
            tables.append(batch.cells)
        console.print(f"features of {len(batch.cells)} recording(s) in {features_dir}")
    if not tables:
        raise Ephys2txError(
            "no cells to predict: no recording gave a cell and no cell table was given (see above)"
        )
    table = pd.concat(tables, ignore_index=True)
    if len(tables) > 1:
        check_unique_ids(table, "the inputs together")
    return table
