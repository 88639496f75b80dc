"""The forest through the CLI on real cells, the shared fold rule, and bad-input errors."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli_in_process, run_cli_subprocess

from ephys2tx.evaluation.splits import DonorKFold, SeedProtocol, subsample_groups


def run_cli(*args, check=True):
    """The command in this process, through `cli.main` (same message and status)."""
    result = run_cli_in_process(*args)
    if check and result.returncode != 0:
        raise AssertionError(result.stderr)
    return result


def test_grouped_folds_never_share_a_donor(human_cells):
    y, donors = human_cells["label"].to_numpy(), human_cells["donor"].to_numpy()
    folds = DonorKFold(5, 2).folds(y, donors)
    assert len(folds) == 10
    for fold in folds:
        assert not set(donors[fold.train]) & set(donors[fold.test])
    for repeat in range(2):
        tests = np.concatenate([f.test for f in folds if f.repeat == repeat])
        assert sorted(tests) == list(range(len(y)))  # every cell tested once per repeat
    assert not np.array_equal(folds[0].test, folds[5].test)


def test_seed_protocol_is_the_reference_studys(mouse_cells):
    y = mouse_cells["label5"].to_numpy()
    folds = SeedProtocol("mouse", n_repeats=2).folds(y)
    assert len(folds) == 2
    # the study's 60% train and 20% validation are both training cells for our models
    train, test = folds[0].train, folds[0].test
    assert np.allclose([len(train) / len(y), len(test) / len(y)], [0.8, 0.2], atol=0.01)
    assert not set(train) & set(test)


def test_learning_curve_subsample_keeps_whole_donors(human_cells):
    donors = human_cells["donor"].to_numpy()
    fold = DonorKFold(5, 1).folds(human_cells["label"].to_numpy(), donors)[0]
    part = subsample_groups(fold.train, donors, 0.25, seed=1)
    kept = set(donors[part])
    assert abs(len(kept) - 0.25 * len(set(donors[fold.train]))) <= 1
    assert set(part) == set(fold.train[np.isin(donors[fold.train], list(kept))])


@pytest.mark.slow
def test_evaluate_writes_metrics_and_trust(tmp_path, monkeypatch):
    from ephys2tx.trust import species

    # No number checked here reads the species fingerprint (fitted again in each fold, most of
    # this test's time): 50 boosting rounds instead of 200 make it cheaper, all else the same.
    monkeypatch.setitem(species.HGB_SETTINGS, "max_iter", 50)
    out = tmp_path / "eval"
    run_cli(
        "evaluate",
        "rf",
        "--species",
        "human",
        "--folds",
        3,
        "--repeats",
        1,
        "--inputs",
        "raw",
        "--out",
        out,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"] == "grouped" and metrics["macro_f1"]["n"] == 3
    assert 0.6 < metrics["macro_f1"]["mean"] <= 1.0
    assert sum(map(sum, metrics["confusion_matrix"]["counts"])) == 702
    assert (out / "confusion_matrix.png").stat().st_size > 1000
    trust = json.loads((out / "trust.json").read_text())  # calibration nested in each fold
    assert 0.85 <= trust["coverage"] <= 0.96 and 1 <= trust["mean_set_size"] <= 4
    assert set(trust["coverage_per_class"]) == {"Lamp5", "Pvalb", "Sst", "Vip"}
    assert trust["ece"] < trust["ece_unscaled"]  # the temperature helps the forest
    assert (out / "reliability.png").stat().st_size > 1000


@pytest.mark.slow
def test_cells_train_predict_roundtrip(human_forest, tmp_path):
    # `cells human --out`, then `train rf --exclude-ids` (the first 100 cells): the fixture
    table, model = human_forest.cells, human_forest.model_dir
    cells = pd.read_parquet(table)
    card = json.loads((model / "model.json").read_text())
    assert card["n_train_cells"] == 602 and card["version"] and len(card["features"]) == 93
    preds = tmp_path / "preds.csv"
    run_cli("predict", model, table, "--out", preds)
    got = pd.read_csv(preds)
    assert list(got.columns) == [
        "specimen_id", "predicted", "p_Lamp5", "p_Pvalb", "p_Sst", "p_Vip",
        "prediction_set", "confident", "novelty", "flags",
    ]  # fmt: skip
    assert np.allclose(got.filter(like="p_").sum(axis=1), 1)
    for name in ("calibration.json", "training.npz", "species.skops"):
        assert (model / name).is_file()
    held_out = got.head(100)
    accuracy = (held_out["predicted"].to_numpy() == cells["label"].head(100).to_numpy()).mean()
    assert accuracy > 0.6  # cells the model never saw


@pytest.mark.parametrize(
    "args, message",
    [
        (["cells", "rat"], "unknown species 'rat'"),
        (
            ["train", "rf", "--species", "human", "--labels", "label5", "--out", "{tmp}/m"],
            "no 5-class",
        ),
        (
            ["evaluate", "rf", "--species", "mouse", "--protocol", "loo", "--out", "{tmp}/e"],
            "unknown protocol",
        ),
        (["train", "forest", "--species", "mouse", "--out", "{tmp}/m"], "No such command"),
        (["predict", "{tmp}/nomodel", "{tmp}/t.csv"], "not a model directory"),
        (
            [
                "train",
                "rf",
                "--species",
                "human",
                "--exclude-ids",
                "{tmp}/empty.csv",
                "--out",
                "{tmp}/m",
            ],
            "lists no specimen ids",
        ),
    ],
)
def test_bad_input_is_one_line_and_nonzero(tmp_path, args, message):
    (tmp_path / "empty.csv").write_text("specimen_id\n")
    result = run_cli(*[a.format(tmp=tmp_path) for a in args], check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_data_file_names_file_and_fetch(tmp_path):
    """End to end, in a process of its own: exit status 2 and one stderr line, nothing else."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "EPHYS2TX_MIRROR"}
    env["EPHYS2TX_DATA_DIR"] = str(tmp_path)
    result = run_cli_subprocess("cells", "human", env=env)
    assert result.returncode == 2
    assert (
        "LeeDalley_ephys_fx.csv is missing" in result.stderr and "ephys2tx fetch" in result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def human_model(human_forest):
    return human_forest.model_dir  # `train rf --species human`, once per session


@pytest.mark.slow
def test_predict_from_real_recordings(tmp_path, human_model):
    from conftest import RECORDINGS

    abf = RECORDINGS / "abf" / "2019_07_24_0055_fsi.abf"
    broken = tmp_path / "broken.nwb"
    broken.write_bytes(b"not an nwb file")
    out = tmp_path / "preds.csv"
    result = run_cli("predict", human_model, abf, broken, "--out", out)
    got = pd.read_csv(out)
    assert got["specimen_id"].tolist() == ["2019_07_24_0055_fsi"]
    assert got["predicted"].iloc[0] in {"Lamp5", "Pvalb", "Sst", "Vip"}
    # the bad file is reported, the good one predicted (the console folds a long path)
    assert "broken.nwb" in "".join(result.stderr.splitlines())
    assert (tmp_path / "preds_features" / "cells.parquet").is_file()


@pytest.mark.slow
def test_table_without_needed_columns(tmp_path, human_model):
    model = human_model
    partial = tmp_path / "partial.csv"
    pd.DataFrame({"specimen_id": [1, 2], "tau": [0.01, 0.02]}).to_csv(partial, index=False)
    out = tmp_path / "p.csv"
    result = run_cli("predict", model, partial, "--out", out, "--strict", check=False)
    warning = [line for line in result.stderr.splitlines() if "lacks 92 model column" in line]
    assert len(warning) == 1 and "few_features (2 cells)" in warning[0]
    got = pd.read_csv(out)
    assert got["flags"].str.contains("few_features").all() and not got["confident"].any()
    assert result.returncode == 1  # --strict: every cell is flagged
    none = tmp_path / "none.csv"
    pd.DataFrame({"specimen_id": [1], "foo": [0.1]}).to_csv(none, index=False)
    result = run_cli("predict", model, none, check=False)
    assert result.returncode == 2 and "none of the model's 93 features" in result.stderr
    nocol = tmp_path / "nocol.csv"
    pd.DataFrame({"tau": [0.01]}).to_csv(nocol, index=False)
    assert "no `specimen_id` column" in run_cli("predict", model, nocol, check=False).stderr


@pytest.mark.slow
def test_embed_writes_umap_and_silhouettes(tmp_path):
    run_cli("embed", "human", "--out", tmp_path)
    payload = json.loads((tmp_path / "silhouette_human.json").read_text())
    assert set(payload["silhouette"]) == {"Lamp5", "Pvalb", "Sst", "Vip", "all"}
    assert all(-1 <= v <= 1 for v in payload["silhouette"].values())
    assert "chirp" not in payload["families"]  # measured in < 90% of human cells
    assert payload["n_cells"] + payload["n_dropped_incomplete"] == 702
    assert (tmp_path / "umap_human.png").stat().st_size > 5000
