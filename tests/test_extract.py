"""One-pass IPFX extraction: lengths, agreement with IPFX called directly, NaN + mask, batch."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest

from ephys2tx.recordings.sweeps import LONG_SQUARE, RAMP, SHORT_SQUARE, Recording, Sweep

RATE = 50_000.0  # Hz, Allen-like
SIM_DT = 1e-4  # s, integration step before upsampling to RATE
T_START, T_END, T_TOTAL = 0.2, 1.2, 1.6  # s: 1 s steps, 0.4 s after


# ------------------------------------------------------------------ a small simulated cell


def _simulate(current, p: dict, rng: np.random.Generator) -> np.ndarray:
    """Leaky integrate-and-fire with sag (h-like) and spike-rate adaptation, plus an AP shape.

    `current(t)` in pA; returns voltage (mV) at RATE. Subthreshold dynamics are integrated at
    10 kHz, upsampled, then a stereotyped AP (cosine rise to the peak, fall to the fast trough)
    is written at each spike.
    """
    n_sim = int(round(T_TOTAL / SIM_DT))
    t_sim = np.arange(n_sim) * SIM_DT
    i_sim = current(t_sim)
    v = np.empty(n_sim)
    vm, q, w = p["v_rest"], 0.0, 0.0
    n_ap = int(round(p["ap_dur"] / SIM_DT))
    spikes, hold = [], 0
    for k in range(n_sim):
        if hold:
            hold -= 1
            vm = p["v_trough"]
        else:
            dq = ((max(p["v_rest"] - vm, 0.0)) - q) / p["tau_h"]
            dv = (p["v_rest"] - vm + p["r"] * (i_sim[k] - w) + p["k_h"] * q) / p["tau"]
            vm += SIM_DT * dv
            q += SIM_DT * dq
            if vm >= p["v_thr"]:
                spikes.append(t_sim[k])
                w += p["b"]
                hold = n_ap
                vm = p["v_trough"]
        w -= SIM_DT * w / p["tau_w"]
        v[k] = vm
    t = np.arange(int(round(T_TOTAL * RATE))) / RATE
    out = np.interp(t, t_sim, v)
    rise, fall = p["ap_rise"], p["ap_dur"] - p["ap_rise"]
    for ts in spikes:
        i0 = int(round(ts * RATE))
        n_r, n_f = int(round(rise * RATE)), int(round(fall * RATE))
        r = np.arange(n_r) / n_r
        f = np.arange(n_f) / n_f
        up = p["v_thr"] + (p["v_peak"] - p["v_thr"]) * (1 - np.cos(np.pi * r)) / 2
        down = p["v_trough"] + (p["v_peak"] - p["v_trough"]) * (1 + np.cos(np.pi * f)) / 2
        seg = np.concatenate([up, down])[: len(out) - i0]
        out[i0 : i0 + len(seg)] = seg
    return out + rng.normal(0, 0.02, len(out))


CELL = dict(
    v_rest=-65.0, r=0.2, tau=0.015, v_thr=-45.0, v_peak=25.0, v_trough=-58.0,
    ap_rise=0.0004, ap_dur=0.0016, b=15.0, tau_w=0.15, k_h=0.35, tau_h=0.08,
)  # fmt: skip


def make_recording(
    cell_id: str = "sim1",
    params: dict | None = None,
    seed: int = 0,
    long_amps: tuple = tuple(range(-110, 271, 20)),
    short_amps: tuple = (400, 500, 600, 700, 700, 700),
    ramp: bool = True,
) -> Recording:
    """Allen-like protocol on the simulated cell: 1 s long squares, 3 ms short squares, ramp."""
    p = {**CELL, **(params or {})}
    rng = np.random.default_rng(seed)
    sweeps, n = [], 0

    def add(kind, fn, amp, start, end):
        nonlocal n
        v = _simulate(fn, p, rng)
        t = np.arange(len(v)) / RATE
        sweeps.append(Sweep(n, v, fn(t), RATE, kind, float(amp), start, end))
        n += 1

    for amp in long_amps:
        add(LONG_SQUARE, lambda t, a=amp: np.where((t >= T_START) & (t < T_END), a, 0.0), amp,
            T_START, T_END)  # fmt: skip
    for amp in short_amps:
        add(SHORT_SQUARE, lambda t, a=amp: np.where((t >= T_START) & (t < T_START + 0.003), a, 0.0),
            amp, T_START, T_START + 0.003)  # fmt: skip
    if ramp:
        slope = 400.0  # pA/s
        add(RAMP, lambda t: np.where((t >= T_START) & (t < T_END), slope * (t - T_START), 0.0),
            slope, T_START, T_END)  # fmt: skip
    return Recording(Path(f"{cell_id}.pkl"), cell_id, sweeps, species="mouse")


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def full_cell() -> Recording:
    return make_recording("full", seed=1)


@pytest.fixture(scope="module")
def full_features(full_cell):
    from ephys2tx.features.extract import extract_features

    return extract_features(full_cell)


@pytest.fixture(scope="module")
def depol_only_features():
    """No hyperpolarizing steps, no short squares, no ramp: several families cannot exist."""
    from ephys2tx.features.extract import extract_features

    rec = make_recording("depol", seed=2, long_amps=tuple(range(10, 271, 20)), short_amps=(),
                         ramp=False)  # fmt: skip
    return extract_features(rec)


# ------------------------------------------------------------------ one pass


def test_every_vector_family_at_its_ipfx_length(full_features):
    from ephys2tx.features.families import SCALAR_FEATURES, VECTOR_FAMILIES

    for fam in VECTOR_FAMILIES:
        v = full_features.vectors[fam.name]
        assert v.shape == (fam.length,), fam.name
        assert full_features.family_status[fam.name] == "ok", full_features.family_reason
        assert np.isfinite(v).all(), fam.name
    assert set(full_features.scalars) == set(SCALAR_FEATURES)
    # the simulated protocol has no chirp: only that family is missing, with its reason
    missing = [f for f, s in full_features.family_status.items() if s != "ok"]
    assert missing == ["chirp"]
    assert "chirp" in full_features.family_reason["chirp"]
    assert full_features.status == "partial"


def _ipfx_long_squares(rec: Recording):
    from ephys2tx.features.protocols import to_ipfx_sweep

    sweeps = [s for s in rec.sweeps if s.stimulus_type == LONG_SQUARE]
    return sweeps, [to_ipfx_sweep(s) for s in sweeps]


def test_scalars_agree_with_ipfx_called_directly(full_cell, full_features):
    from ipfx import subthresh_features as subf
    from ipfx.feature_extractor import SpikeFeatureExtractor, SpikeTrainFeatureExtractor

    sc = full_features.scalars
    sweeps, ipfx_sweeps = _ipfx_long_squares(full_cell)
    # subthreshold: IPFX functions on the hyperpolarizing sweeps in (-100, 0) pA
    sub = [s for s, raw in zip(ipfx_sweeps, sweeps, strict=True) if -100 < raw.amplitude < 0]
    ri = subf.input_resistance([s.t for s in sub], [s.i for s in sub], [s.v for s in sub],
                               T_START, T_END)  # fmt: skip
    assert sc["input_resistance"] == pytest.approx(ri, rel=1e-9)
    peak_t = np.median([s.t[subf.voltage_deflection(s.t, s.v, s.i, T_START, T_END, "min")[1]]
                        for s in sub])  # fmt: skip
    taus = [subf.time_constant(s.t, s.v, s.i, T_START, T_END, peak_t, 0.1, 0.1) for s in sub]
    assert sc["tau"] == pytest.approx(np.nanmean(taus), rel=1e-9)
    # and they are physically right for the simulated cell (R = 200 MOhm minus sag, tau 15 ms)
    assert 120 < sc["input_resistance"] < 200
    assert 0.008 < sc["tau"] < 0.02
    # spikes: IPFX's extractors on each sweep, rheobase = lowest spiking positive step
    spx = SpikeFeatureExtractor(start=T_START, end=T_END)
    sptx = SpikeTrainFeatureExtractor(T_START, T_END)
    spiking = []
    for raw, s in zip(sweeps, ipfx_sweeps, strict=True):
        spikes = spx.process(s.t, s.v, s.i)
        if raw.amplitude > 0 and len(spikes):
            spiking.append((raw.amplitude, s, spikes))
    amp, s, spikes = min(spiking, key=lambda x: x[0])
    assert sc["rheobase_i"] == pytest.approx(amp, abs=0.5)
    first = spikes.iloc[0]
    for name in ("threshold_v", "upstroke", "downstroke", "width", "upstroke_downstroke_ratio"):
        assert sc[f"{name}_rheo"] == pytest.approx(first[name], rel=1e-9), name
    assert sc["peak_deltav_rheo"] == pytest.approx(first["peak_v"] - first["threshold_v"])
    train = sptx.process(s.t, s.v, s.i, spikes)
    assert sc["avg_rate_rheo"] == pytest.approx(train["avg_rate"])
    assert sc["latency_rheo"] == pytest.approx(train["latency"])
    # the simulated AP: 70 mV from threshold region to +25 mV peak
    assert 60 < sc["peak_deltav_rheo"] < 90


def test_vectors_agree_with_ipfx_feature_vector_functions(full_cell, full_features):
    """Same numbers as IPFX's own feature-vector path run on its own fresh analysis."""
    from ipfx import data_set_features as dsf
    from ipfx import feature_vectors as fv
    from ipfx import stimulus_protocol_analysis as spa
    from ipfx.sweep import SweepSet

    _, ipfx_sweeps = _ipfx_long_squares(full_cell)
    ss = SweepSet(ipfx_sweeps)
    spx, sptx = dsf.extractors_for_sweeps(ss, start=T_START, end=T_END)
    feats = spa.LongSquareAnalysis(spx, sptx, subthresh_min_amp=-100.0).analyze(ss)
    amp_sweeps, _ = fv.identify_subthreshold_hyperpol_with_amplitudes(feats, ss)
    step = fv.step_subthreshold(amp_sweeps, [-90, -70, -50, -30, -10], T_START, T_END,
                                amp_tolerance=5)  # fmt: skip
    np.testing.assert_allclose(full_features.vectors["step_subthresh"], step)
    info = fv.identify_suprathreshold_spike_info(feats, np.arange(0, 120, 20), shift=10)
    np.testing.assert_allclose(full_features.vectors["psth"], fv.psth_vector(info, T_START, T_END))
    inst = fv.inst_freq_vector(info, T_START, T_END)
    np.testing.assert_allclose(full_features.vectors["inst_freq"], inst)
    norm = full_features.vectors["inst_freq_norm"].reshape(6, 50)
    np.testing.assert_allclose(norm.max(axis=1), 1.0)
    np.testing.assert_allclose(norm * inst.reshape(6, 50).max(axis=1, keepdims=True),
                               inst.reshape(6, 50))  # fmt: skip


def test_missing_families_are_nan_with_mask_and_reason(depol_only_features, tmp_path):
    from ephys2tx.features.fvfile import read_feature_vectors, write_feature_vectors

    cf = depol_only_features
    for fam in ("step_subthresh", "subthresh_norm"):
        assert cf.family_status[fam] == "missing"
        assert np.isnan(cf.vectors[fam]).all()
        assert "hyperpolarizing" in cf.family_reason[fam]
    assert cf.family_status["ap_ramp"] == "missing" and "ramp" in cf.family_reason["ap_ramp"]
    assert cf.family_status["ap_short_square"] == "missing"
    assert math.isnan(cf.scalars["threshold_i_ramp"])
    assert math.isnan(cf.scalars["input_resistance"])
    # suprathreshold families still there; first_ap keeps its length with NaN pieces
    assert cf.family_status["psth"] == "ok" and np.isfinite(cf.vectors["psth"]).all()
    ap = cf.vectors["first_ap_v"]
    assert cf.family_status["first_ap_v"] == "partial" and ap.shape == (450,)
    assert np.isnan(ap[:150]).all() and np.isfinite(ap[150:300]).all() and np.isnan(ap[300:]).all()
    assert not (ap[np.isfinite(ap)] == 0).all()
    # the HDF5 layout keeps NaN rows and the mask
    names = list(cf.vectors)
    mask = np.array([[cf.family_status[n] != "missing" for n in names]])
    path = write_feature_vectors(tmp_path / "fv.h5", ["depol"],
                                 {n: cf.vectors[n][None, :] for n in names}, mask)  # fmt: skip
    back = read_feature_vectors(path)
    assert not back.mask.loc["depol", "step_subthresh"] and back.mask.loc["depol", "psth"]
    assert np.isnan(back.vectors["step_subthresh"]).all()
    assert back.vectors["first_ap_dv"].shape == (1, 447)


def test_reads_ipfx_feature_vector_file():
    from conftest import SHARED_DATA

    from ephys2tx.features.families import FAMILIES
    from ephys2tx.features.fvfile import read_feature_vectors

    fvs = read_feature_vectors(SHARED_DATA / "feature_vectors" / "fv_sample2.h5")
    assert len(fvs) == 139 and "inst_freq_norm" not in fvs.vectors
    for name, arr in fvs.vectors.items():
        assert arr.shape == (139, FAMILIES[name].length)
    # IPFX leaves a family all-NaN when a cell cannot give it (e.g. no depolarizing subthreshold
    # step): the mask says so, and every masked-in row has values
    assert fvs.mask.to_numpy().mean() > 0.9
    for name, arr in fvs.vectors.items():
        np.testing.assert_array_equal(fvs.mask[name].to_numpy(), np.isfinite(arr).any(axis=1))


# ------------------------------------------------------------------ batch


def _pickle_reader(path: Path) -> Recording:
    """Test reader: unpickle a Recording, logging each call to count recomputations."""
    with open(path.parent / "calls.log", "a") as log:
        log.write(path.name + "\n")
    with open(path, "rb") as fh:
        return pickle.load(fh)


def test_batch_errors_table_and_resume_from_cache(full_cell, tmp_path):
    import h5py
    import pandas as pd

    from ephys2tx.features.batch import run_batch
    from ephys2tx.features.families import SCALAR_FEATURES

    data = tmp_path / "data"
    data.mkdir()
    small = make_recording("small", seed=3, long_amps=(-90, -10, 110, 130, 150), short_amps=(),
                           ramp=False)  # fmt: skip
    for rec in (full_cell, small):
        (data / f"{rec.cell_id}.pkl").write_bytes(pickle.dumps(rec))
    (data / "broken.pkl").write_bytes(b"not a recording")
    files = [data / "full.pkl", data / "broken.pkl", data / "small.pkl"]
    out = tmp_path / "out"

    first = run_batch(files, out, workers=1, reader=_pickle_reader, processes=False,
                      progress=False)  # fmt: skip
    assert list(first.cells["specimen_id"]) == ["full", "small"]
    assert list(first.errors.columns) == ["file", "stage", "reason"]
    assert first.errors["file"].tolist() == [str(data / "broken.pkl")]
    assert first.errors["stage"].tolist() == ["read"]
    cells = pd.read_parquet(out / "cells.parquet")
    for col in ["specimen_id", "species", "donor", "t_type", "subclass", "label", "label5",
                "condition", *SCALAR_FEATURES, "status", "reason", "file"]:  # fmt: skip
        assert col in cells.columns, col
    assert cells["species"].tolist() == ["mouse", "mouse"]
    assert cells.loc[1, "status"] == "partial" and "ramp" in cells.loc[1, "reason"]
    with h5py.File(out / "feature_vectors.h5") as h5:
        assert h5["first_ap_v"].shape == (2, 450) and h5["mask"].shape == (2, 14)
        vectors = {name: h5[name][()] for name in h5}
    # the cache is plain JSON, so resuming in a folder someone sent runs no code
    cached = sorted((out / "cache").iterdir())
    assert [p.suffix for p in cached] == [".json", ".json"]
    assert all(json.loads(p.read_text())["status"] for p in cached)
    assert len(pd.read_csv(out / "errors.csv")) == 1
    assert first.n_computed == 2 and first.n_cached == 0

    calls = (data / "calls.log").read_text().split()
    assert sorted(calls) == ["broken.pkl", "full.pkl", "small.pkl"]
    (data / "calls.log").unlink()
    again = run_batch(files, out, workers=1, reader=_pickle_reader, processes=False,
                      progress=False)  # fmt: skip
    # finished files come from the cache: only the broken file is read again
    assert (data / "calls.log").read_text().split() == ["broken.pkl"]
    assert again.n_cached == 2 and again.n_computed == 0
    pd.testing.assert_frame_equal(again.cells, first.cells)
    with h5py.File(out / "feature_vectors.h5") as h5:  # vectors, NaN included, as computed
        assert sorted(h5) == sorted(vectors)
        for name, values in vectors.items():
            np.testing.assert_array_equal(h5[name][()], values)


def test_real_abf_files_give_features_or_reasons():
    from conftest import RECORDINGS

    from ephys2tx.features.extract import extract_features
    from ephys2tx.recordings.read import read_recording

    files = sorted((RECORDINGS / "abf").glob("*.abf"))
    assert len(files) == 4
    for path in files[:2]:
        cf = extract_features(read_recording(path))
        assert cf.status == "partial"
        assert np.isfinite(cf.scalars["rheobase_i"]) and np.isfinite(cf.scalars["v_baseline"])
        assert cf.family_status["isi_shape"] == "ok"
        # 0.5 s steps at 20 kHz: IPFX's 1 s / 50 kHz vectors are missing, each with its reason
        for fam, status in cf.family_status.items():
            if status == "missing":
                assert cf.family_reason[fam], fam
        assert "20000 Hz" in cf.family_reason["first_ap_v"]


def test_one_pass_equals_the_two_separate_ipfx_paths(full_cell, full_features):
    from ephys2tx.features import extract as ex

    calls = []
    original = ex.analyze_recording

    def counting(rec):
        calls.append(rec.cell_id)
        return original(rec)

    ex.analyze_recording = counting
    try:
        sep = ex.extract_features_separately(full_cell)
        one = ex.extract_features(full_cell)
    finally:
        ex.analyze_recording = original
    assert calls == ["full", "full", "full"]  # two detections for the reference, one for ours
    np.testing.assert_array_equal(
        np.array(list(one.scalars.values())), np.array(list(sep.scalars.values()))
    )
    for name, v in one.vectors.items():
        np.testing.assert_array_equal(v, sep.vectors[name])
        np.testing.assert_array_equal(v, full_features.vectors[name])
    assert one.family_status == sep.family_status


@pytest.mark.slow
def test_cli_extract_on_real_abf_with_dask_processes(tmp_path):
    import pandas as pd
    from conftest import RECORDINGS
    from typer.testing import CliRunner

    from ephys2tx.cli import app

    out = tmp_path / "out"
    bad = tmp_path / "bad.abf"
    bad.write_bytes(b"ABF2 but truncated")
    args = ["extract", str(RECORDINGS / "abf" / "171116sh_0018.abf"), str(bad), "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "--workers", "1"])
    assert res.exit_code == 0, res.output
    cells = pd.read_parquet(out / "cells.parquet")
    assert cells["specimen_id"].tolist() == ["171116sh_0018"]
    assert np.isfinite(cells.loc[0, "rheobase_i"])
    errors = pd.read_csv(out / "errors.csv")
    assert errors["file"].tolist() == [str(bad)] and errors["stage"].tolist() == ["read"]
    assert len(list((out / "cache").glob("*.json"))) == 1
    again = CliRunner().invoke(app, [*args, "--workers", "1"])
    assert again.exit_code == 0 and "1 from cache" in again.output


def _worker_settings() -> tuple:
    import os

    import dask

    return os.environ.get("MALLOC_TRIM_THRESHOLD_"), dask.config.get(
        "distributed.worker.profile.enabled"
    )


def test_local_workers_keep_glibc_adaptive_mmap_and_no_profiler():
    # Dask's MALLOC_TRIM_THRESHOLD_ made extraction 2.3x slower (page faults on every array)
    from ephys2tx.features import batch

    client, cluster = batch.dask_client(1, None, "1GiB", processes=True)
    try:
        assert list(client.run(_worker_settings).values()) == [(None, False)]
    finally:
        client.close()
        cluster.close()


def test_chirp_features_of_a_passive_cell_follow_rc_physics():
    """A passive RC membrane (R = 200 MOhm, tau = 15 ms) has |Z| = R at low frequency and a
    -3 dB corner at 1 / (2 pi tau) ~ 10.6 Hz; IPFX's chirp amplitude/phase must show that."""
    from scipy.signal import chirp, lfilter

    from ephys2tx.features.extract import extract_features
    from ephys2tx.recordings.sweeps import CHIRP

    rate, start, dur, r_gohm, tau = 10_000.0, 0.6, 20.0, 0.2, 0.015
    t = np.arange(int((start + dur + 1.0) * rate)) / rate
    on = (t >= start) & (t < start + dur)
    i = np.where(on, 50.0 * chirp(t - start, f0=0.2, t1=dur, f1=40.0, method="logarithmic"), 0.0)
    a = math.exp(-1.0 / (rate * tau))
    v = -70.0 + lfilter([1 - a], [1, -a], r_gohm * i)  # exact discrete RC response, mV
    rec = Recording(Path("rc.nwb"), "rc", [Sweep(0, v, i, rate, CHIRP, 50.0, start, start + dur)])
    cf = extract_features(rec)
    sc = cf.scalars
    assert cf.family_status["chirp"] == "ok"
    assert sc["low_freq_impedance_chirp"] == pytest.approx(r_gohm, rel=0.05)
    assert sc["peak_impedance_chirp"] == pytest.approx(r_gohm, rel=0.05)
    assert sc["3db_freq_chirp"] == pytest.approx(1 / (2 * math.pi * tau), rel=0.15)
    assert sc["phase_peak_chirp"] <= 0.05 and sc["total_inductive_phase_chirp"] < 0.05
    # no long squares: every step-based family is missing with a reason, none zero-filled
    assert cf.family_status["psth"] == "missing" and np.isnan(cf.vectors["psth"]).all()
    assert "long-square" in cf.family_reason["subthreshold"]


def test_batch_on_an_existing_scheduler_and_unreachable_one(tmp_path, monkeypatch):
    from distributed import LocalCluster

    from ephys2tx.errors import Ephys2txError
    from ephys2tx.features import batch

    rec = make_recording("sched", seed=4, long_amps=(-90, -10, 110, 130, 150), short_amps=(),
                         ramp=False)  # fmt: skip
    path = tmp_path / "sched.pkl"
    path.write_bytes(pickle.dumps(rec))
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        res = batch.run_batch([path], tmp_path / "out", scheduler=cluster.scheduler_address,
                              reader=_pickle_reader, progress=False)  # fmt: skip
    assert res.cells["specimen_id"].tolist() == ["sched"] and res.n_computed == 1
    monkeypatch.setattr(batch, "CONNECT_TIMEOUT", "1s")
    with pytest.raises(Ephys2txError, match="Dask scheduler"):
        batch.run_batch([path], tmp_path / "out2", scheduler="tcp://127.0.0.1:9", progress=False)


def test_synthetic_allen_nwb_cell_through_reader_and_extractor(tmp_path):
    """A synthetic cell written as Allen NWB, read back, extracted: every non-chirp family is
    present and rheobase matches the simulator's own (0 mV crossing) rheobase."""
    from ephys2tx.features.extract import extract_features
    from ephys2tx.recordings.allen_nwb import write_allen_nwb
    from ephys2tx.recordings.read import read_recording
    from ephys2tx.synthetic import simulate_cell

    rec = simulate_cell("Sst", "mouse", np.random.default_rng(7), cell_id="synsst")
    path = write_allen_nwb(tmp_path / "synsst.nwb", rec, "synthetic test cell")
    cf = extract_features(read_recording(path))
    assert {f for f, s in cf.family_status.items() if s != "ok"} == {"chirp"}, cf.reason
    assert cf.scalars["rheobase_i"] == pytest.approx(rec.metadata["rheobase_pa"], abs=0.5)
    # short squares: IPFX's rule (the amplitude that fired most often, ties to the lower) applied
    # to an independent spike criterion, an upward 0 mV crossing within 50 ms of the pulse
    fired: dict[float, int] = {}
    for s in rec.of_type(SHORT_SQUARE):
        i0 = round(s.stim_start * s.sampling_rate)
        seg = s.voltage[i0 : i0 + round(0.053 * s.sampling_rate)]
        fired[s.amplitude] = fired.get(s.amplitude, 0) + int((seg >= 0).any())
    best = max(fired.values())
    assert best > 0
    expected = min(a for a, n in fired.items() if n == best)
    assert cf.scalars["threshold_i_short_square"] == pytest.approx(expected)
