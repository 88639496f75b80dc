"""Model directories: loading runs no code, a directory appears only when complete, the
smallest trainable sets, the thread policy, and one trainer per default-model cache key."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from typer.testing import CliRunner

from ephys2tx import default_model, threads
from ephys2tx.cli import app
from ephys2tx.errors import Ephys2txError
from ephys2tx.models.bilstm import BiLSTMClassifier
from ephys2tx.models.bundle import (
    META_FILE,
    MODEL_FILE,
    NETWORK_FILE,
    SPECIES_FILE,
    TRUSTED_TYPES,
    ModelCard,
    card_for,
    load_model,
    new_model_dir,
    save_model,
)
from ephys2tx.models.ensemble import soft_vote
from ephys2tx.models.forest import make_forest
from ephys2tx.models.hierarchy import HierarchicalClassifier
from ephys2tx.models.members import boosting, forest, knn, logistic, slow_boosting, svc
from ephys2tx.models.transfer import TransferClassifier
from ephys2tx.models.trusted import TrustedModel, check_trainable, fit_flat_trust, save_trained
from ephys2tx.trust.conformal import out_of_fold_proba
from ephys2tx.trust.species import SpeciesFingerprint

TINY = dict(width=8, hidden=8, max_epochs=3, patience=2, batch_size=32)


class _Evil:
    """A pickle that creates a file when it is loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _one_line(message: str, *words: str) -> None:
    assert "\n" not in message
    for word in words:
        assert word in message, message


@pytest.fixture(scope="module")
def small(human_cells):
    parts = [g.head(30) for _, g in human_cells.groupby("label")]
    return pd.concat(parts).reset_index(drop=True)


@pytest.fixture(scope="module")
def features(small):
    from ephys2tx.datasets.cells import usable_features

    return usable_features(small)


@pytest.fixture(scope="module")
def forest_dir(small, features, mouse_cells, tmp_path_factory):
    """A calibrated forest with training summary and species fingerprint, as `train` writes it."""
    from ephys2tx.evaluation.splits import donor_kfold

    out = tmp_path_factory.mktemp("models") / "rf"
    y = small["label"].to_numpy()
    model = make_forest(0, n_estimators=20).fit(small[features], y)
    mouse = pd.concat(g.head(30) for _, g in mouse_cells.groupby("label"))
    trust = fit_flat_trust(
        make_forest(0, n_estimators=20), model, small, "label", "human", features,
        other={"mouse": mouse}, cv=donor_kfold(5, 0),
    )  # fmt: skip
    return save_trained(out, model, card_for(model, "rf-raw", "human", "label", len(small)), trust)


def _predict(model_dir: Path, small: pd.DataFrame, tmp_path: Path):
    cells = tmp_path / "cells.csv"
    small.head(5).to_csv(cells, index=False)
    return CliRunner().invoke(
        app, ["predict", str(model_dir), str(cells), "--out", str(tmp_path / "p.csv")]
    )


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


# -- loading runs no code --------------------------------------------------------------


@pytest.mark.parametrize("victim", [MODEL_FILE, SPECIES_FILE])
def test_a_malicious_pickle_in_a_model_directory_is_refused_unrun(
    victim, forest_dir, small, tmp_path
):
    model = _copy(forest_dir, tmp_path / "model")
    marker = tmp_path / "pwned"
    (model / victim).write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(Ephys2txError) as err:
        TrustedModel.load(model)
    _one_line(str(err.value), victim, "cannot be read", "train it again")
    result = _predict(model, small, tmp_path)
    assert result.exit_code != 0 and isinstance(result.exception, Ephys2txError)
    assert not marker.exists()


def test_an_older_pickled_model_directory_is_refused_with_how_to_retrain(tmp_path, small):
    """A directory of ephys2tx 0.1.0 (model.joblib, a card without a format) is never
    unpickled: the card is refused first."""
    model = tmp_path / "old"
    model.mkdir()
    marker = tmp_path / "pwned"
    (model / "model.joblib").write_bytes(pickle.dumps(_Evil(marker)))
    card = {"kind": "rf-raw", "species": "human", "label": "label", "classes": ["A"],
            "features": ["tau"], "version": "0.1.0"}  # fmt: skip
    (model / META_FILE).write_text(json.dumps(card))
    with pytest.raises(Ephys2txError) as err:
        load_model(model)
    _one_line(str(err.value), "older or unknown format", "ephys2tx train")
    assert not _predict(model, small, tmp_path).exit_code == 0
    assert not marker.exists()


def test_a_skops_file_asking_for_an_untrusted_type_is_refused(tmp_path):
    model = tmp_path / "model"
    save_model(model, {"any": 1}, ModelCard("rf-raw", "human", "label", [], []))
    sio.dump(threading.Event(), model / MODEL_FILE)  # a type nobody listed
    with pytest.raises(Ephys2txError) as err:
        load_model(model)
    _one_line(str(err.value), "does not trust", "_thread.lock", "nothing was run")


def test_network_weights_are_read_weights_only(tmp_path, small):
    y = small["label"].to_numpy()
    net = BiLSTMClassifier(**TINY).fit(small, y)
    model = tmp_path / "net"
    save_model(model, net, card_for(net, "bilstm", "human", "label", len(small)))
    loaded, _ = load_model(model)
    np.testing.assert_array_equal(loaded.predict_proba(small), net.predict_proba(small))
    marker = tmp_path / "pwned"
    (model / NETWORK_FILE).write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(Ephys2txError) as err:
        load_model(model)
    _one_line(str(err.value), NETWORK_FILE, "cannot be read")
    assert not marker.exists()


def test_every_saved_kind_needs_only_the_trusted_types(small, features, mouse_cells, tmp_path):
    """TRUSTED_TYPES is complete: each estimator kind we save round-trips through skops."""
    from ephys2tx.datasets.taxonomy import build_taxonomy

    X, y = small[features], small["label"].to_numpy()
    y_mouse = small["label"].to_numpy()
    estimators = [make_forest(0, "raw", 5).fit(X, y), make_forest(0, "spca", 5).fit(X, y)]
    ensemble = soft_vote(
        [("rf", forest(5)), ("hgb", boosting()), ("logreg1", logistic(C=1.0)), ("svc", svc())]
    )
    estimators += [ensemble.fit(X, y), knn().fit(X, y)]
    cells = small.assign(donor=small["donor"])
    fp = SpeciesFingerprint.fit(
        {"human": cells, "mouse": mouse_cells.head(120)}, features, 0, "human"
    )
    estimators.append(fp)
    taxonomy = build_taxonomy(small, "human")
    leaves = small["t_type"].where(small["t_type"].isin(taxonomy.parent), small["label"])
    hier = HierarchicalClassifier(
        taxonomy, soft_vote([("rf", forest(5)), ("hgb-slow", slow_boosting()), ("logreg", logistic())]),
        t_type_estimator=soft_vote([("rf", forest(5)), ("svc", svc())]),
    )  # fmt: skip
    keep = leaves.isin(taxonomy.parent).to_numpy()
    estimators.append(hier.fit(X[keep], leaves[keep].to_numpy()))
    net = BiLSTMClassifier(**TINY).fit(small, y_mouse)
    estimators.append(net.without_networks())
    mouse = pd.concat(g.head(30) for _, g in mouse_cells.groupby("label"))
    transfer = TransferClassifier(source=mouse, pretrain_cache=False, **TINY).fit(small, y)
    estimators.append(transfer.without_networks())
    for est in estimators:
        asked = sio.get_untrusted_types(data=sio.dumps(est))
        assert set(asked) <= set(TRUSTED_TYPES), (type(est).__name__, asked)
    # networks round-trip through model.skops + network.pt
    model = tmp_path / "transfer"
    save_model(model, transfer, card_for(transfer, "transfer-finetune", "human", "label", 1))
    loaded, _ = load_model(model)
    np.testing.assert_allclose(loaded.predict_proba(small), transfer.predict_proba(small))
    assert loaded.source is None  # the mouse table is not stored


def test_trust_files_load_back(forest_dir, small):
    model = TrustedModel.load(forest_dir)
    assert model.conformal is not None and model.summary.fingerprint is not None
    table, _ = model.predict_table(small.head(10))
    assert len(table) == 10


# -- a directory appears only when complete ------------------------------------------


def test_a_failed_write_leaves_no_model_and_no_temporary(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(RuntimeError), new_model_dir(target) as folder:
        save_card = ModelCard("rf-raw", "human", "label", [], [])
        save_model(folder / "inner", {"a": 1}, save_card)  # anything half-written
        raise RuntimeError("killed mid-way")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_killed_writers_folder_goes_at_the_next_write_a_running_ones_stays(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid no process has now (a killed `train`)
    left = tmp_path / f".model-{dead.pid}-abcd1234"
    running = tmp_path / f".model-{os.getpid()}-efgh5678"  # a run still writing
    other = tmp_path / f".model-2-{dead.pid}-abcd1234"  # the staging folder of `model-2`
    for folder in (left, running, other):
        folder.mkdir()
    save_model(tmp_path / "model", {"a": 1}, ModelCard("rf-raw", "human", "label", [], []))
    assert not left.exists()
    assert running.is_dir() and other.is_dir()
    assert load_model(tmp_path / "model")[0] == {"a": 1}


def test_overwriting_into_a_folder_keeps_other_files_and_drops_old_model_files(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    (target / "calibration.json").write_text("{}")  # of the model being replaced
    save_model(target, {"a": 1}, ModelCard("rf-raw", "human", "label", [], []))
    names = {p.name for p in target.iterdir()}
    assert names == {"notes.txt", MODEL_FILE, META_FILE}
    assert load_model(target)[0] == {"a": 1}


def test_train_refuses_too_few_cells_before_fitting(human_cells, tmp_path, monkeypatch):
    from ephys2tx.commands.train import train_and_store

    def never():
        raise AssertionError("fitted although the sizes were refused")

    three = human_cells.head(3)
    out = tmp_path / "m"
    with pytest.raises(Ephys2txError) as err:
        train_and_store(out, never, three, "label", "human", "rf-raw", ["tau"], calibrate=True,
                        seed=0, data_dir=None, mirror=None, doing="")  # fmt: skip
    _one_line(str(err.value), "at least 2 classes", "the 3 cells hold 1")
    two = pd.concat(g.head(3) for _, g in human_cells.groupby("label"))
    with pytest.raises(Ephys2txError, match="too few cells.*at least 5.*Lamp5 3"):
        train_and_store(out, never, two, "label", "human", "rf-raw", ["tau"], calibrate=True,
                        seed=0, data_dir=None, mirror=None, doing="")  # fmt: skip
    assert not out.exists()


@pytest.mark.parametrize(
    ("rows", "words"),
    [
        ({"label": ["A"] * 12, "donor": list(range(12))}, ["at least 2 classes", "1"]),
        ({"label": ["A"] * 8 + ["B"] * 3, "donor": list(range(11))}, ["too few cells", "B 3"]),
        ({"label": ["A"] * 6 + ["B"] * 6, "donor": list(range(6)) + [9] * 6},
         ["too few donors", "B 1", "--no-calibrate"]),
        ({"label": ["A"] * 6 + ["B"] * 6, "donor": [1, 2] * 6},
         ["too few donors", "2 donors for 5"]),
    ],
)  # fmt: skip
def test_check_trainable_names_the_numbers(rows, words):
    with pytest.raises(Ephys2txError) as err:
        check_trainable(pd.DataFrame(rows), "label")
    _one_line(str(err.value), *words)


def test_check_trainable_accepts_the_public_tables(human_cells, mouse_cells):
    check_trainable(human_cells, "label")
    check_trainable(mouse_cells[mouse_cells["label"].notna()], "label")


# -- thread policy --------------------------------------------------------------------


def test_free_cores_follow_the_load(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(os, "getloadavg", lambda: (2.6, 0, 0))
    assert threads.free_cores() == 5
    monkeypatch.setattr(os, "getloadavg", lambda: (20.0, 0, 0))
    assert threads.free_cores() == 1


def test_limits_nest_downwards_and_the_option_is_checked(monkeypatch):
    from threadpoolctl import threadpool_info

    monkeypatch.setattr(threads, "_chosen", 2)
    with threads.limit() as n, threads.limit(4) as inner:
        assert (n, inner) == (2, 2)
        assert all(p["num_threads"] <= 2 for p in threadpool_info())
    monkeypatch.setenv(threads.THREADS_ENV, "zero")
    with pytest.raises(Ephys2txError, match="EPHYS2TX_THREADS"):
        threads.env_threads()
    result = CliRunner().invoke(app, ["--threads", "0", "fetch", "--help"])
    assert result.exit_code != 0


def _children() -> set[int]:
    """Processes started by this one (Linux)."""
    found: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            text = (task / "children").read_text().split()
        except FileNotFoundError:  # the thread ended while we looked
            continue
        found |= {int(t) for t in text}
    return found


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_parallel_folds_start_no_worker_processes(small, features):
    """Out-of-fold fits (calibration, the default model's first use) run as threads: a
    killed parent leaves no worker process behind."""
    from ephys2tx.evaluation.splits import donor_kfold

    before = _children()
    proba = out_of_fold_proba(
        make_forest(0, n_estimators=5, n_jobs=1), small[features], small["label"], small["donor"],
        donor_kfold(5, 0), n_jobs=2,
    )  # fmt: skip
    assert np.isfinite(proba).all()
    assert _children() <= before


# -- one trainer per cache key --------------------------------------------------------


def test_waiters_say_so_and_stale_temporaries_go(tmp_path):
    from filelock import FileLock

    root = tmp_path
    lock = FileLock(root / ".human.lock")
    said: list[str] = []
    lock.acquire()
    done = threading.Event()

    def wait():
        with default_model._trainer_lock(root / ".human.lock", "human", said.append):
            done.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.3)
    assert said and "waiting for another ephys2tx process" in said[0] and not done.is_set()
    lock.release()
    waiter.join(10)
    assert done.is_set() and len(said) == 1
    # a killed trainer's temporary and an older key are removed; the current key is kept
    (root / ".human-abc123").mkdir()
    (root / ".human-abc123" / "model.skops").write_bytes(b"half")
    (root / "human-0000old").mkdir()
    (root / "human-current").mkdir()
    (root / "mouse-other").mkdir()
    default_model._remove_stale(root, "human", keep="human-current")
    assert sorted(p.name for p in root.iterdir()) == [".human.lock", "human-current", "mouse-other"]


@pytest.mark.parametrize(
    "command",
    [["train", "rf"], ["train", "reference"], ["evaluate", "bilstm"], ["predict"], ["reproduce"]],
)
def test_fitting_commands_take_threads(command, monkeypatch):
    runner = CliRunner()
    assert "--threads" in runner.invoke(app, [*command, "--help"]).output
    result = runner.invoke(app, [*command, "--threads", "0"])
    assert result.exit_code != 0
