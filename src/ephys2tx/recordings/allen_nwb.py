"""Allen-style NWB 2 files: write one (for synthetic cells) and read one through IPFX.

IPFX 2.1.2 enumerates sweeps only through the legacy NWB ``SweepTable`` (``nwb.sweep_table``)
and reads each sweep's stimulus code from the response series' ``stimulus_description``.
pynwb 3 refuses to build that deprecated table for new files, so the writer builds it the way
pynwb does when reading old files (construct mode) and registers every series in it;
everything else is ordinary pynwb, so the files also open in pynwb and the modern reader.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ..errors import Ephys2txError, NoCurrentClampSweeps, one_line
from ..files import atomic_write
from ..schema import SPECIES_LATIN, species_from_text
from .sweeps import (
    LONG_SQUARE,
    OTHER,
    RAMP,
    SHORT_SQUARE,
    TEST_PULSE,
    Recording,
    Sweep,
)

# Fixed dates keep file contents reproducible for a seed (object ids are random UUIDs).
_FIXED_DATE = datetime(2020, 1, 1, tzinfo=UTC)

# IPFX ontology names -> our stimulus types (names come from ipfx.stimulus).
_NAME_TO_TYPE = {
    "Long Square": LONG_SQUARE,
    "Long Square Threshold": LONG_SQUARE,
    "Long Square SupraThreshold": LONG_SQUARE,
    "Long Square SubThreshold": LONG_SQUARE,
    "Short Square": SHORT_SQUARE,
    "Short Square Threshold": SHORT_SQUARE,
    "Short Square - Hold -60mV": SHORT_SQUARE,
    "Short Square - Hold -70mV": SHORT_SQUARE,
    "Short Square - Hold -80mV": SHORT_SQUARE,
    "Ramp": RAMP,
    "Test": TEST_PULSE,
}


def write_allen_nwb(
    path: str | Path,
    recording: Recording,
    session_description: str,
    donor: str | None = None,
) -> Path:
    """Write `recording` as an Allen-style NWB 2 file that IPFX's own reader accepts.

    Voltage is stored in mV (conversion 1e-3 to volts) and current in pA (conversion 1e-12 to
    amperes), as float32 compressed with gzip; each sweep gets a stimulus and a response series
    registered in the legacy sweep table, with its Allen stimulus code as
    ``stimulus_description``. The file appears only when complete (`atomic_write`).
    """
    from pynwb import NWBHDF5IO

    path = Path(path)
    nwb = _nwb_file(recording, session_description, donor)
    _check_room(path, recording)

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with NWBHDF5IO(str(tmp), "w") as io:
                io.write(nwb)

    try:
        atomic_write(path, write)
    except (OSError, RuntimeError) as exc:  # h5py reports a failed write as RuntimeError
        raise Ephys2txError(
            f"cannot write {path} ({one_line(exc, 100)}); free some space or choose another folder"
        ) from exc
    return path


def _nwb_file(recording: Recording, session_description: str, donor: str | None):
    """The in-memory NWBFile of `recording`: one stimulus and one response series per sweep,
    both registered in the legacy sweep table."""
    from pynwb import NWBFile
    from pynwb.file import Subject

    species = SPECIES_LATIN.get(recording.species or "", recording.species or "unknown")
    nwb = NWBFile(
        session_description=session_description,
        identifier=str(recording.cell_id),
        session_start_time=_FIXED_DATE,
        file_create_date=_FIXED_DATE,
        institution="ephys2tx synthetic generator",
        subject=Subject(subject_id=donor or "unknown", species=species),
    )
    device = nwb.create_device(name="synthetic_amplifier")
    electrode = nwb.create_icephys_electrode(
        name="electrode_0", description="simulated single-compartment cell", device=device
    )
    sweep_table = _legacy_sweep_table()
    nwb.sweep_table = sweep_table
    for sweep in recording.sweeps:
        stim, resp = _sweep_series(sweep, electrode)
        nwb.add_stimulus(stim)
        nwb.add_acquisition(resp)
        sweep_table.add_entry(stim)
        sweep_table.add_entry(resp)
    return nwb


def _sweep_series(sweep: Sweep, electrode):
    """The (stimulus, response) current-clamp series of one sweep, in pA and mV."""
    from pynwb.icephys import CurrentClampSeries, CurrentClampStimulusSeries

    common = dict(
        electrode=electrode,
        gain=1.0,
        rate=float(sweep.sampling_rate),
        starting_time=0.0,
        sweep_number=int(sweep.sweep_number),
        stimulus_description=sweep.stimulus_code or "unknown",
    )
    stim = CurrentClampStimulusSeries(
        name=f"index_{sweep.sweep_number:03d}_stimulus",
        data=_compressed(sweep.current),
        conversion=1e-12,
        **common,
    )
    resp = CurrentClampSeries(
        name=f"index_{sweep.sweep_number:03d}",
        data=_compressed(sweep.voltage),
        conversion=1e-3,
        bias_current=0.0,
        bridge_balance=0.0,
        capacitance_compensation=0.0,
        **common,
    )
    return stim, resp


def _check_room(path: Path, recording: Recording) -> None:
    """Refuse to start a write the disk has no room for.

    HDF5 cannot recover from a disk filling up mid-write (it floods stderr and can crash
    the interpreter at exit), so the room is checked first, for the data uncompressed."""
    needed = sum(4 * (s.voltage.size + s.current.size) for s in recording.sweeps) + (1 << 20)
    free = shutil.disk_usage(path.parent).free
    if free < needed:
        raise Ephys2txError(
            f"cannot write {path}: {free / 1e6:.1f} MB free in {path.parent}, up to "
            f"{needed / 1e6:.1f} MB needed; free some space or choose another folder"
        )


def _compressed(trace: np.ndarray):
    """float32, shuffled, light gzip: noisy traces barely compress harder, and it is faster."""
    from hdmf.backends.hdf5.h5_utils import H5DataIO

    data = np.asarray(trace, np.float32)
    return H5DataIO(data, compression="gzip", compression_opts=1, shuffle=True)


def _legacy_sweep_table():
    """A pynwb SweepTable, which IPFX needs to find sweeps.

    pynwb 3 refuses to construct the deprecated table outside its read path; we build it the
    way pynwb itself does when reading (construct mode), then use it normally.
    """
    from pynwb.icephys import SweepTable

    table = SweepTable.__new__(SweepTable, in_construct_mode=True)
    table.__init__(name="sweep_table")
    table._in_construct_mode = False
    return table


UNKNOWN_NAME = "Unknown"  # IPFX's stimulus name for a code outside its ontology


def _stimulus_type(name: str | None) -> str:
    return _NAME_TO_TYPE.get(name or "", OTHER)


def read_allen_nwb(path: str | Path) -> Recording:
    """Read an Allen-style NWB 2 file through IPFX's dataset reader into a `Recording`.

    Stimulus types come from IPFX's default stimulus ontology; stimulus start/end and amplitude
    from IPFX's stimulus characterisation (test pulse skipped). Raises `Ephys2txError` when IPFX
    cannot read the file.
    """
    path = Path(path)
    if not path.is_file():
        raise Ephys2txError(f"{path}: no such file; check the path to the NWB file")
    data_set = _ipfx_data_set(path)
    has_sweep_table, species = _file_facts(path)
    if not has_sweep_table:
        # IPFX 2.1.2 lists sweeps only through the deprecated SweepTable.
        raise Ephys2txError(
            f"{path}: no legacy sweep table, so IPFX cannot list its sweeps (a modern NWB "
            "file); use the modern-NWB reader for this file"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = data_set.sweep_table
    except Exception as exc:
        raise Ephys2txError(
            f"{path}: IPFX cannot list its sweeps ({one_line(exc)}); the file may be damaged"
        ) from exc
    if table.empty:
        raise Ephys2txError(f"{path}: IPFX found no sweeps; use the modern-NWB reader")

    sweeps: list[Sweep] = []
    voltage_clamp: list[int] = []
    uncoded: list[Sweep] = []  # codes IPFX's ontology does not know
    for row in table.sort_values("sweep_number").itertuples(index=False):
        number = int(row.sweep_number)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data = data_set.get_sweep_data(number)
        except Exception as exc:
            logging.getLogger(__name__).warning("%s: sweep %d unreadable: %s", path, number, exc)
            continue
        if row.clamp_mode == "VoltageClamp":  # features need current clamp: reported, not used
            voltage_clamp.append(number)
            continue
        name = getattr(row, "stimulus_name", None)
        sweeps.append(_current_clamp_sweep(number, data, name, str(row.stimulus_code)))
        if not isinstance(name, str) or name == UNKNOWN_NAME:
            uncoded.append(sweeps[-1])
    if not sweeps and voltage_clamp:
        raise NoCurrentClampSweeps(
            f"{path}: no current-clamp sweeps (all {len(voltage_clamp)} are voltage clamp); "
            "ephys2tx needs current-clamp recordings"
        )
    if not sweeps:
        raise Ephys2txError(f"{path}: IPFX listed sweeps but none could be read; file is damaged")
    _classify_uncoded(uncoded)
    return Recording(
        source=path,
        cell_id=path.stem,
        sweeps=sweeps,
        species=species,
        metadata={
            "reader": "ipfx",
            "format": "allen_nwb2",
            "dropped_sweeps": [(n, "voltage clamp") for n in voltage_clamp],
            "uncoded_sweeps": [s.sweep_number for s in uncoded],
        },
    )


def _ipfx_data_set(path: Path):
    """IPFX's data set of an NWB file; a file it cannot read is a one-line error."""
    from ipfx.dataset.create import create_ephys_data_set

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return create_ephys_data_set(nwb_file=str(path))
    except Exception as exc:  # IPFX raises many types; all mean "not an Allen NWB for IPFX"
        raise Ephys2txError(
            f"{path}: IPFX cannot read it as an Allen-style NWB 2 file ({one_line(exc)}); "
            "use the modern-NWB or ABF reader for other files"
        ) from exc


def _current_clamp_sweep(number: int, data: dict, name: str | None, code: str) -> Sweep:
    """A current-clamp sweep from IPFX's sweep data (scaled to mV and pA): its type from the
    ontology name, its timing and amplitude from IPFX's stimulus characterisation."""
    from ipfx.stim_features import get_stim_characteristics

    rate = float(data["sampling_rate"])
    voltage = np.asarray(data["response"], dtype=float)
    current = np.asarray(data["stimulus"], dtype=float)
    stim_type = _stimulus_type(name)
    start = end = None
    amplitude = float("nan")
    if stim_type != TEST_PULSE:
        t = np.arange(len(current)) / rate
        finite = np.nan_to_num(current, nan=0.0)
        s_time, duration, amp, _, _ = get_stim_characteristics(finite, t, test_pulse=True)
        if s_time is not None:
            start, end, amplitude = float(s_time), float(s_time + duration), float(amp)
    return Sweep(
        sweep_number=number,
        voltage=voltage,
        current=current,
        sampling_rate=rate,
        stimulus_type=stim_type,
        amplitude=round(amplitude, 3),  # float32 storage: 250 pA reads as 249.99998
        stim_start=start,
        stim_end=end,
        stimulus_code=code,
        clamp_mode="current_clamp",
    )


def _classify_uncoded(sweeps: list[Sweep]) -> None:
    """Sweeps whose code IPFX does not know: type, timing and amplitude from the command.

    As for ABF and NWB 2 files, sweeps of one code, length and rate are classified together.
    """
    from collections import defaultdict

    from .stimulus import classify_protocol

    groups: dict[tuple, list[Sweep]] = defaultdict(list)
    for s in sweeps:
        groups[(s.stimulus_code, len(s.current), s.sampling_rate)].append(s)
    for (_, _, rate), members in groups.items():
        currents = [s.current for s in members]
        for s, info in zip(members, classify_protocol(currents, rate), strict=True):
            s.stimulus_type = info.stimulus_type
            s.amplitude = round(info.amplitude, 3)
            s.stim_start, s.stim_end = info.start, info.end


def _file_facts(path: Path) -> tuple[bool, str | None]:
    """Whether the file has the legacy sweep table (the only way IPFX 2.1.2 lists sweeps),
    and mouse/human from its subject when it says; read with h5py, not IPFX's internals."""
    import h5py

    with h5py.File(path, "r") as f:
        has_table = "general/intracellular_ephys/sweep_table" in f
        species = f.get("general/subject/species")
        text = species[()] if isinstance(species, h5py.Dataset) else b""
    text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    return has_table, species_from_text(text)
