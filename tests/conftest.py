"""Shared fixtures: the real public tables, read from the ../shared/data mirror."""

from __future__ import annotations

import functools
import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from ephys2tx.models.hierarchy import HierarchySettings
from ephys2tx.models.members import forest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()
RECORDINGS = SHARED_DATA / "recordings"


# --- parallel runs: `make test` runs `pytest -n 2 --dist loadgroup` (pytest-xdist) ----------
# The session fixtures that train a model: the files whose tests use one run on one worker, so
# that each model is trained once per run, not once per worker. Every other file is a group of
# its own (a module fixture is built once).
SHARED_MODEL_FIXTURES = ("human_forest", "light_default_models")
SHARED_MODEL_GROUP = "shared-models"
SLOW_WEIGHT = 10  # a `slow` test counts as this many quick ones when ordering the groups


@functools.cache
def _uses_shared_models(path: str) -> bool:
    """Whether a test file names one of the session's trained-model fixtures."""
    try:
        text = (REPO / path).read_text(encoding="utf-8")
    except OSError:
        return False
    return any(name in text for name in SHARED_MODEL_FIXTURES)


def worker_group(nodeid: str) -> str:
    """The worker group of a test: its file's, or the shared-model files' one."""
    path = nodeid.split("::")[0]
    return SHARED_MODEL_GROUP if _uses_shared_models(path) else path


@pytest.fixture(scope="session", autouse=True)
def _one_thread_per_worker():
    """On an xdist worker, one OpenMP/BLAS thread (unless OMP_NUM_THREADS says otherwise).

    Why: two workers share the cores, and a fit outside the package's thread policy (a test
    that fits a HistGradientBoosting itself) would otherwise start a thread per core, which
    spin in barriers while the other worker runs: several times the CPU for the same fit."""
    if not os.environ.get("PYTEST_XDIST_WORKER") or os.environ.get("OMP_NUM_THREADS"):
        yield
        return
    from threadpoolctl import threadpool_limits

    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"  # libraries loaded later
    with threadpool_limits(1):  # those loaded already
        yield


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`--dist loadgroup` by `test_group`. (xdist's own loadgroup reads `xdist_group` marks
    into the test id, which pytest 9 no longer lets a plugin change.)"""
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    return ByGroup(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker of `--dist loadgroup`, put the heaviest groups first (weight: `slow`
    tests), so that the last group a worker takes is a short one and both finish together
    (`--no-loadscope-reorder` keeps this order); a run without xdist keeps the files' order."""
    if not getattr(config.option, "loadgroup", False):
        return
    groups = {item: worker_group(item.nodeid) for item in items}
    weight: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, (item, group) in enumerate(groups.items()):
        slow = item.get_closest_marker("slow") is not None
        weight[group] = weight.get(group, 0) + (SLOW_WEIGHT if slow else 1)
        first.setdefault(group, i)
    items.sort(key=lambda item: (-weight[groups[item]], first[groups[item]]))


@pytest.fixture(scope="session", autouse=True)
def _data_mirror(tmp_path_factory):
    """Point the package at the local mirror and a per-session data directory."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.exit(f"the data mirror {SHARED_DATA} is missing; tests need ../shared/data", 2)
    old = {k: os.environ.get(k) for k in ("EPHYS2TX_MIRROR", "EPHYS2TX_DATA_DIR")}
    os.environ["EPHYS2TX_MIRROR"] = str(SHARED_DATA)
    os.environ["EPHYS2TX_DATA_DIR"] = str(tmp_path_factory.mktemp("data"))
    yield
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# --- species fingerprints fitted once per distinct input --------------------------------------
def _table_digest(table) -> str:
    """A digest of a cell table's columns, dtypes and values."""
    import hashlib

    import pandas as pd

    digest = hashlib.sha256(repr([list(table.columns), list(map(str, table.dtypes))]).encode())
    digest.update(pd.util.hash_pandas_object(table, index=True).to_numpy().tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="session", autouse=True)
def _fingerprint_once(_data_mirror):
    """Fit each species fingerprint once per distinct input in a session.

    Why: a fingerprint is six HistGradientBoosting fits on the pooled mouse and human cells,
    and tests that retrain a model on the same cells (the default-model cache test retrains
    it three times) fitted the same fingerprint again. The fit is seeded and deterministic,
    so a test gets the same fingerprint as before; each gets its own copy."""
    import copy

    from ephys2tx.trust import species as module

    fit = module.SpeciesFingerprint.fit.__func__
    fitted: dict[tuple, object] = {}

    def fit_once(cls, cells, features, seed=0, own=None, settings=None):
        try:
            key = (
                tuple((name, _table_digest(table)) for name, table in cells.items()),
                tuple(features), seed, own, repr(settings or module.FingerprintSettings()),
                repr(module.FALSE_ALARM_BY_SPECIES), module.FALSE_ALARM,
            )  # fmt: skip
        except (TypeError, ValueError):  # values pandas cannot hash: fit as usual
            return fit(cls, cells, features, seed, own, settings)
        if key not in fitted:
            fitted[key] = fit(cls, cells, features, seed, own, settings)
        return copy.deepcopy(fitted[key])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module.SpeciesFingerprint, "fit", classmethod(fit_once))
        yield


@pytest.fixture(scope="session")
def mouse_cells(_data_mirror):
    from ephys2tx.datasets.cells import build_cells

    return build_cells("mouse")[0]


@pytest.fixture(scope="session")
def human_cells(_data_mirror):
    from ephys2tx.datasets.cells import build_cells

    return build_cells("human")[0]


def small_synthetic_cell(subclass: str, seed: int, cell_id: str):
    """A SYNTHETIC Allen-protocol mouse cell cut to its long squares and two short squares.

    Smaller (about 7 MB as NWB) and quicker to extract than the full protocol (no ramp),
    yet every step-based feature family is there.
    """
    import numpy as np

    from ephys2tx.recordings.sweeps import LONG_SQUARE, SHORT_SQUARE
    from ephys2tx.synthetic import simulate_cell

    rec = simulate_cell(subclass, "mouse", np.random.default_rng(seed), cell_id=cell_id)
    shorts = [s for s in rec.sweeps if s.stimulus_type == SHORT_SQUARE][-2:]
    rec.sweeps = [s for s in rec.sweeps if s.stimulus_type == LONG_SQUARE] + shorts
    return rec


@pytest.fixture(scope="session")
def synthetic_recordings():
    """Three small synthetic cells (Pvalb, Sst, Vip), simulated once per test session."""
    return [
        small_synthetic_cell(sub, seed, f"syn{sub}")
        for seed, sub in enumerate(("Pvalb", "Sst", "Vip"), start=21)
    ]


@pytest.fixture(scope="session")
def synthetic_nwb(synthetic_recordings, tmp_path_factory):
    """One small synthetic Allen NWB file (read-only: copy it before changing it)."""
    from ephys2tx.recordings.allen_nwb import write_allen_nwb

    folder = tmp_path_factory.mktemp("synthetic_nwb")
    return write_allen_nwb(folder / "cellA.nwb", synthetic_recordings[0], "SYNTHETIC test cell")


# --- the command line in this process ------------------------------------------------------
@dataclass
class CliRun:
    """What `ephys2tx ARGS` gave: the fields of `subprocess.CompletedProcess` that tests read."""

    returncode: int
    stdout: str
    stderr: str


def run_cli_in_process(*args: object) -> CliRun:
    """`ephys2tx ARGS` through `cli.main`, the installed command's own entry point, in this
    process: the same one-line message and exit status (main maps every error to them)
    without starting an interpreter and importing the package again for each check.

    Tests that need the real process (a traceback never printed, the shell's exit status)
    start one with `run_cli_subprocess`.
    """
    from ephys2tx import cli

    out, err = io.StringIO(), io.StringIO()
    saved_argv, saved_debug = sys.argv, os.environ.get(cli.DEBUG_ENV)
    os.environ.pop(cli.DEBUG_ENV, None)  # `--debug` sets it; never carried into the next run
    sys.argv = ["ephys2tx", *map(str, args)]
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                cli.main()
                status = 0
            except SystemExit as stop:
                status = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    finally:
        sys.argv = saved_argv
        os.environ.pop(cli.DEBUG_ENV, None)
        if saved_debug is not None:
            os.environ[cli.DEBUG_ENV] = saved_debug
    return CliRun(status, out.getvalue(), err.getvalue())


def run_cli_subprocess(*args: object, env: dict[str, str] | None = None) -> CliRun:
    """`python -m ephys2tx.cli ARGS` in a new process: for the few end-to-end checks."""
    done = subprocess.run(
        [sys.executable, "-m", "ephys2tx.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
    )
    return CliRun(done.returncode, done.stdout, done.stderr)


def assert_one_line_error(result: CliRun, *words: str) -> None:
    """Exit status 2, no traceback, exactly one `error: ` line holding every word."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], errors[0]


# --- one forest trained through the CLI, shared by the tests that predict with one ---------
HELD_OUT_CELLS = 100  # the first rows of `ephys2tx cells human`, left out of training


@dataclass(frozen=True)
class TrainedForest:
    """A model directory from `ephys2tx train rf` and the table and ids it was trained from."""

    model_dir: Path
    cells: Path  # `ephys2tx cells human --out` (every human cell)
    held_out: Path  # CSV of the specimen ids given to --exclude-ids


@pytest.fixture(scope="session")
def human_forest(_data_mirror, tmp_path_factory) -> TrainedForest:
    """`ephys2tx train rf --species human` on all but the first 100 human cells, run once per
    session through the CLI (read-only: predict with it, never write into it)."""
    import pandas as pd

    folder = tmp_path_factory.mktemp("human_forest")
    table, held_out, model = folder / "human.parquet", folder / "exclude.csv", folder / "model"
    done = run_cli_in_process("cells", "human", "--out", table)
    assert done.returncode == 0, done.stderr
    pd.read_parquet(table)[["specimen_id"]].head(HELD_OUT_CELLS).to_csv(held_out, index=False)
    done = run_cli_in_process(
        "train", "rf", "--species", "human", "--exclude-ids", held_out, "--out", model
    )
    assert done.returncode == 0, done.stderr
    return TrainedForest(model, table, held_out)


# --- the default (out-of-the-box) model with light settings, trained once per session ------
# Light settings so that a test trains in seconds; the real defaults are measured in benchmarks/.
LIGHT_DEFAULT_SETTINGS = HierarchySettings(
    subclass=(("rf", forest(25)),), t_type=(("rf", forest(25)),), t_type_model="flat"
)


class LightDefaultModels:
    """Each species' default model with LIGHT_DEFAULT_SETTINGS, trained on first request into
    one data directory (which then also holds the fetched data files)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.messages: dict[str, list[str]] = {}  # what the first use said, per species
        self._dirs: dict[str, Path] = {}

    def model_dir(self, species: str) -> Path:
        from ephys2tx import default_model

        if species not in self._dirs:
            said: list[str] = []
            with pytest.MonkeyPatch.context() as patch:
                patch.setitem(default_model.DEFAULT_SETTINGS, species, LIGHT_DEFAULT_SETTINGS)
                self._dirs[species] = default_model.cached_default_model(
                    species, data_dir=self.data_dir, say=said.append, n_jobs=1
                )
            self.messages[species] = said
        return self._dirs[species]


@pytest.fixture(scope="session")
def light_default_models(_data_mirror, tmp_path_factory) -> LightDefaultModels:
    """The session's light default models (read-only: copy the data directory to change it)."""
    return LightDefaultModels(tmp_path_factory.mktemp("light_default_data"))


@pytest.fixture
def use_light_default_models(light_default_models, monkeypatch) -> LightDefaultModels:
    """Make `predict --species` and the cache find the session's light default models: the
    light settings and the session's data directory, for this test only. The human model is
    trained first; call `.model_dir("mouse")` before using the mouse one."""
    from ephys2tx import default_model

    light_default_models.model_dir("human")
    for species in list(default_model.DEFAULT_SETTINGS):
        monkeypatch.setitem(default_model.DEFAULT_SETTINGS, species, LIGHT_DEFAULT_SETTINGS)
    monkeypatch.setenv("EPHYS2TX_DATA_DIR", str(light_default_models.data_dir))
    return light_default_models
