"""The Python API gives what the CLI writes: `load_model(...).predict(cells)` equals the
`predict` CSV column for column, for the default model of both species and for a forest."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import ephys2tx as ex
from ephys2tx.cli import app
from ephys2tx.predictor import PredictionRun


@pytest.fixture
def light_defaults(use_light_default_models):
    """The session's light default models of both species (conftest), found by the CLI and
    by `load_model` alike; the CLI and the API must agree whatever the settings."""
    use_light_default_models.model_dir("mouse")
    return use_light_default_models


def _cli_table(args: list[str], out) -> pd.DataFrame:
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return pd.read_csv(out, keep_default_na=False, dtype={"specimen_id": str})


def _as_written(table: pd.DataFrame, path) -> pd.DataFrame:
    """The API's DataFrame after the same CSV round trip the CLI output takes."""
    table.to_csv(path, index=False)
    return pd.read_csv(path, keep_default_na=False, dtype={"specimen_id": str})


@pytest.mark.parametrize("species", ["human", "mouse"])
def test_default_model_api_equals_cli(light_defaults, species, human_cells, mouse_cells, tmp_path):
    cells = (human_cells if species == "human" else mouse_cells).sample(60, random_state=1)
    path = tmp_path / "cells.csv"
    cells.to_csv(path, index=False)
    cli = _cli_table(["predict", "--species", species, str(path)], tmp_path / "cli.csv")
    model = ex.load_model(species)
    assert model.kind == "hierarchical" and model.species == species
    api = model.predict(ex.read_cells(path), alpha=0.1)
    pd.testing.assert_frame_equal(_as_written(api, tmp_path / "api.csv"), cli)
    # the subclass probabilities and sets agree with the table
    proba = model.predict_proba(ex.read_cells(path))
    assert np.allclose(proba.to_numpy(), api[[f"p_{c}" for c in model.classes]].to_numpy())
    assert np.allclose(proba.sum(axis=1), 1)
    sets = model.predict_set(ex.read_cells(path), alpha=0.1)
    assert ["|".join(s) for s in sets] == list(api["prediction_set"])
    # a model directory given as a path is the same model
    again = ex.load_model(model.model_dir).predict(ex.read_cells(path))
    pd.testing.assert_frame_equal(again, api)


def test_default_model_on_a_partial_table_api_equals_cli(light_defaults, human_cells, tmp_path):
    """A table that measures only some inputs: both take the default model trained on those."""
    gone = ["tau", "input_resistance", "sag", "v_baseline"]
    cells = human_cells.sample(30, random_state=3).drop(columns=gone)
    path = tmp_path / "partial.csv"
    cells.to_csv(path, index=False)
    cli = _cli_table(["predict", "--species", "human", str(path)], tmp_path / "cli.csv")
    said: list[str] = []
    model = ex.load_model("human", say=said.append)
    chosen = model.for_cells(ex.read_cells(path))
    assert chosen is not model and not set(gone) & set(chosen.card.features)
    api = model.predict(ex.read_cells(path))
    pd.testing.assert_frame_equal(_as_written(api, tmp_path / "api.csv"), cli)
    assert any("predicting with the model trained on those" in line for line in said)


@pytest.fixture(scope="module")
def light_forest(human_cells, tmp_path_factory):
    """A calibrated 25-tree human forest, saved as `train rf` saves it."""
    from ephys2tx.commands.train import train_and_store
    from ephys2tx.datasets.cells import usable_features
    from ephys2tx.models import recipes

    train = human_cells[human_cells["label"].notna()]
    model_dir = tmp_path_factory.mktemp("api-rf") / "rf"
    train_and_store(
        model_dir, lambda: recipes.forest(0, "raw", trees=25), train, "label", "human",
        "rf-raw", usable_features(train), calibrate=True, seed=0, data_dir=None, mirror=None,
        doing="training",
    )  # fmt: skip
    return model_dir


def test_forest_api_equals_cli(light_forest, human_cells, tmp_path):
    model_dir = light_forest
    cells = human_cells.sample(40, random_state=2)
    path = tmp_path / "cells.csv"
    cells.to_csv(path, index=False)
    cli = _cli_table(["predict", str(model_dir), str(path)], tmp_path / "cli.csv")
    model = ex.load_model(model_dir)
    assert model.kind == "flat"
    api = model.predict(ex.read_cells(path))
    pd.testing.assert_frame_equal(_as_written(api, tmp_path / "api.csv"), cli)


def test_missing_note_counts_flags_when_no_cell_is_flagged():
    """Issue 21 item 7: cells without a flag must not break the warning's count."""
    table = pd.DataFrame({"flags": ["", "", ""], "confident": [True, False, True]})
    note = PredictionRun(table, ["tau", "v_baseline"], calibrated=True).missing_note()
    assert note is not None and "lacks 2 model column(s)" in note and "none raised" in note
    table = pd.DataFrame({"flags": ["", "few_features; missing_family:ramp"], "confident": [1, 0]})
    note = PredictionRun(table, ["tau"], calibrated=True).missing_note()
    assert "few_features (1 cells)" in note and "missing_family:ramp (1 cells)" in note
    assert PredictionRun(table, [], calibrated=True).missing_note() is None


def test_a_partial_table_predicts_with_nan_and_one_warning(light_forest, human_cells, tmp_path):
    """Issue 21 item 7: the public human table with 5 feature columns removed, 20 cells."""
    model_dir = light_forest
    gone = ["v_baseline", "vm_for_sag", "input_resistance", "tau", "sag_peak_t"]
    path = tmp_path / "partial.csv"
    human_cells.head(20).drop(columns=gone).to_csv(path, index=False)
    result = CliRunner().invoke(
        app, ["predict", str(model_dir), str(path), "--out", str(tmp_path / "p.csv")]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    said = " ".join(result.output.split())
    assert "lacks 5 model column(s)" in said and "flags:" in said
    assert len(pd.read_csv(tmp_path / "p.csv")) == 20


def test_import_is_light():
    code = "import sys, ephys2tx; print(sorted(m for m in ('torch', 'dask', 'sklearn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert callable(ex.load_model) and "load_model" in dir(ex)
    with pytest.raises(AttributeError):
        ex.no_such_name  # noqa: B018


def test_load_model_refuses_a_folder_that_is_not_a_model(tmp_path):
    from ephys2tx.errors import Ephys2txError

    with pytest.raises(Ephys2txError, match="not a model directory"):
        ex.load_model(tmp_path)


def test_predictions_sum_forest_votes_in_one_order():
    """Forest votes summed by parallel threads come out in a different order each run (ties
    then break either way): predictions run joblib's loops one after another."""
    import joblib.parallel

    from ephys2tx.models.forest import make_forest
    from ephys2tx.threads import predicting

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(200, 4)), columns=list("abcd"))
    forest = make_forest(0, n_estimators=20).fit(X, (X["a"] > 0).map({True: "A", False: "B"}))
    assert forest.n_jobs != 1  # the saved forests build their trees in parallel
    seen: list[str] = []
    original = joblib.parallel.Parallel.__call__

    def spy(self, iterable):
        seen.append(type(self._backend).__name__)
        return original(self, iterable)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(joblib.parallel.Parallel, "__call__", spy)
        with predicting(2):
            forest.predict_proba(X)
    assert seen == ["SequentialBackend"]
