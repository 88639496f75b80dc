"""SYNTHETIC Allen-protocol cohort: IPFX accepts the files, phenotypes look like the subclasses."""

from __future__ import annotations

import logging
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest

from ephys2tx import synthetic as synth
from ephys2tx.errors import Ephys2txError
from ephys2tx.recordings.allen_nwb import read_allen_nwb
from ephys2tx.recordings.sweeps import LONG_SQUARE, RAMP, SHORT_SQUARE


@pytest.fixture(scope="module")
def mouse_cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_mouse")
    table = synth.write_cohort("mouse", 1, out, seed=3, progress=False)
    return out, table


def run_ipfx(out, table) -> dict:
    """IPFX's own pipeline (reader, sweep QC features, extract_data_set_features) per cell."""
    from ipfx.data_set_features import extract_data_set_features
    from ipfx.dataset.create import create_ephys_data_set
    from ipfx.qc_feature_extractor import sweep_qc_features

    features = {}
    logging.disable(logging.WARNING)  # IPFX logs every sweep
    try:
        for row in table.itertuples():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data_set = create_ephys_data_set(nwb_file=str(out / row.file))
                data_set.sweep_info = sweep_qc_features(data_set)
                cell, sweeps, record, _, state, states = extract_data_set_features(data_set)
            features[row.subclass] = {
                "cell": cell,
                "sweeps": sweeps,
                "record": record,
                "state": state,
                "states": states,
            }
    finally:
        logging.disable(logging.NOTSET)
    return features


@pytest.fixture(scope="module")
def ipfx_features(mouse_cohort):
    return run_ipfx(*mouse_cohort)


def test_cohort_table_and_files(mouse_cohort):
    out, table = mouse_cohort
    assert list(table["subclass"]) == ["Lamp5", "Pvalb", "Sncg", "Sst", "Vip"]
    assert table.set_index("subclass")["label"].to_dict()["Sncg"] == "Vip"
    assert table["synthetic"].all() and table["specimen_id"].is_unique
    assert table["donor"].nunique() == 5  # one cell per class: every cell its own donor
    on_disk = pd.read_csv(out / "cohort.csv")
    assert list(on_disk["file"]) == list(table["file"])
    for row in table.itertuples():
        with h5py.File(out / row.file, "r") as f:
            description = f["session_description"][()].decode()
        assert "SYNTHETIC" in description


def test_ipfx_extracts_all_features_without_failure(ipfx_features):
    for subclass, f in ipfx_features.items():
        assert not f["state"]["failed_fx"], subclass
        for name, state in f["states"].items():
            assert not state["failed_fx"], (subclass, name, state["fail_fx_message"])
        record = f["record"]
        assert np.isfinite(record["threshold_i_long_square"]), subclass
        assert np.isfinite(record["threshold_i_short_square"]), subclass
        assert np.isfinite(record["threshold_i_ramp"]), subclass
        assert -80 < record["vrest"] < -55, subclass


def _first_spike(f):
    rheo = f["record"]["rheobase_sweep_num"]
    return f["sweeps"][rheo]["spikes"][0]


def test_subclass_phenotypes_through_ipfx(ipfx_features):
    width = {k: _first_spike(f)["width"] * 1e3 for k, f in ipfx_features.items()}  # ms
    max_rate = {
        k: max(s["avg_rate"] for s in f["cell"]["long_squares"]["spiking_sweeps"])
        for k, f in ipfx_features.items()
    }
    sag = {k: f["record"]["sag"] for k, f in ipfx_features.items()}
    latency = {
        k: f["cell"]["long_squares"]["rheobase_sweep"]["latency"] for k, f in ipfx_features.items()
    }
    others = [k for k in width if k != "Pvalb"]
    # fast-spiking, narrow-AP Pvalb
    assert width["Pvalb"] < 0.5
    assert width["Pvalb"] < 0.7 * min(width[k] for k in others)
    assert max_rate["Pvalb"] > 1.25 * max(max_rate[k] for k in others)
    # sag: Sst (Ih) well above Pvalb
    assert sag["Sst"] > 2 * sag["Pvalb"]
    # late-spiking Lamp5 at rheobase
    assert latency["Lamp5"] > 0.3
    assert latency["Lamp5"] > 2 * max(latency[k] for k in ("Pvalb", "Sst"))


def test_read_allen_nwb_maps_sweeps(mouse_cohort):
    out, table = mouse_cohort
    row = table[table["subclass"] == "Pvalb"].iloc[0]
    rec = read_allen_nwb(out / row["file"])
    assert rec.species == "mouse"
    longs = rec.of_type(LONG_SQUARE)
    amps = [s.amplitude for s in longs]
    assert amps[0] == pytest.approx(-110.0)
    assert np.allclose(np.diff(amps), 20.0)
    assert amps[-1] == pytest.approx(row["rheobase_pa"] + 160.0)
    s = longs[-1]
    assert s.sampling_rate == 50_000.0
    assert s.stimulus_code == synth.LONG_SQUARE_CODE
    assert s.stim_start == pytest.approx(1.02, abs=1e-4)
    assert s.stim_end == pytest.approx(2.02, abs=1e-3)
    assert np.nanmax(s.voltage) > 0 and -90 < np.nanmedian(s.voltage) < -40  # mV, spiking
    assert np.nanmax(s.current) == pytest.approx(s.amplitude, abs=0.01)  # pA
    shorts = rec.of_type(SHORT_SQUARE)
    assert shorts and all(
        s.stim_end - s.stim_start == pytest.approx(0.003, abs=5e-5) for s in shorts
    )
    (ramp,) = rec.of_type(RAMP)
    assert ramp.stimulus_code == synth.RAMP_CODE
    assert ramp.amplitude == pytest.approx(row["rheobase_pa"] * 1.25 + 60, rel=0.6)


def test_simulation_is_deterministic_and_seed_dependent():
    def run(seed):
        rng = np.random.default_rng(seed)
        rec = synth.simulate_cell("Vip", "mouse", rng, short_squares=False, ramp=False)
        return np.concatenate([s.voltage for s in rec.sweeps])

    a, b, c = run(1), run(1), run(2)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_human_cells_are_slower_with_more_sag():
    for subclass in synth.SUBCLASSES["human"]:
        mouse = synth.typical_params(subclass, "mouse")
        human = synth.typical_params(subclass, "human")
        assert human.tau_ms > mouse.tau_ms and human.g_h > mouse.g_h, subclass
    with pytest.raises(Ephys2txError, match="Sncg"):
        synth.typical_params("Sncg", "human")


def test_read_allen_nwb_rejects_unreadable_files(tmp_path):
    text = tmp_path / "notes.nwb"
    text.write_text("not an hdf5 file")
    with pytest.raises(Ephys2txError, match="notes.nwb"):
        read_allen_nwb(text)
    with pytest.raises(Ephys2txError, match="no such file"):
        read_allen_nwb(tmp_path / "missing.nwb")


def test_read_allen_nwb_explains_modern_files_without_sweep_table(tmp_path):
    """A current-pynwb icephys file (no legacy SweepTable): IPFX cannot list its sweeps."""
    from datetime import UTC, datetime

    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.icephys import CurrentClampSeries

    nwb = NWBFile("modern", "modern-1", datetime(2020, 1, 1, tzinfo=UTC))
    device = nwb.create_device(name="amp")
    electrode = nwb.create_icephys_electrode(name="e0", description="e", device=device)
    nwb.add_acquisition(
        CurrentClampSeries(
            name="v",
            data=np.zeros(100),
            electrode=electrode,
            gain=1.0,
            rate=50_000.0,
            sweep_number=np.uint32(0),
        )  # fmt: skip
    )
    path = tmp_path / "modern.nwb"
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    with pytest.raises(Ephys2txError, match="modern.nwb: no legacy sweep table"):
        read_allen_nwb(path)


def test_cli_prints_synthetic_notice(tmp_path):
    from typer.testing import CliRunner

    from ephys2tx.cli import app

    result = CliRunner().invoke(
        app, ["synth", "--species", "human", "--n-per-class", "1", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output
    table = pd.read_csv(tmp_path / "cohort.csv")
    assert sorted(table["subclass"]) == ["Lamp5", "Pvalb", "Sst", "Vip"]
    rec = read_allen_nwb(tmp_path / table["file"].iloc[0])
    assert rec.species == "human" and rec.of_type(RAMP)
    # the CLI ran two worker processes; one process gives the same cells
    serial = synth.write_cohort("human", 1, tmp_path / "serial", seed=0, progress=False, jobs=1)
    pd.testing.assert_frame_equal(serial, table, check_dtype=False)
