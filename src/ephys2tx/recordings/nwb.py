"""Read modern NWB 2 intracellular (icephys) files with pynwb into a `Recording`.

Current-clamp sweeps are found through the IntracellularRecordingsTable (NWB >= 2.4),
else by pairing CurrentClampSeries with their stimulus series on `sweep_number`; the
deprecated SweepTable is not used. Data are converted to mV / pA from each series'
`unit`, `conversion` and `offset` attributes.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import numpy as np

from ..errors import Ephys2txError, one_line
from .assemble import RawTrace, assemble
from .sweeps import Recording

log = logging.getLogger(__name__)

# Multiply a value in this unit to get mV / pA.
_TO_MV = {"volts": 1e3, "volt": 1e3, "v": 1e3, "millivolts": 1.0, "mv": 1.0}
_TO_PA = {
    "amperes": 1e12,
    "ampere": 1e12,
    "amps": 1e12,
    "a": 1e12,
    "nanoamperes": 1e3,
    "na": 1e3,
    "picoamperes": 1.0,
    "pa": 1.0,
}
# Allen / MIES stimulus codes, e.g. C1LSCOARSE150216, X4PS_SupraThresh (optionally _DA_0).
ALLEN_CODE = re.compile(r"^(C\d[A-Z]{2}|X\d[A-Z]{2}|EXTP)[A-Z0-9_]*(\[\d+\])?$", re.IGNORECASE)


def is_allen_code(description: str | None) -> bool:
    """True for stimulus descriptions that are Allen Institute / MIES stimulus codes."""
    return bool(description) and bool(ALLEN_CODE.match(str(description).strip()))


def _scale(series, table: dict[str, float], si: float, what: str, path: Path) -> float:
    unit = str(getattr(series, "unit", "") or "").strip()
    factor = table.get(unit.lower())
    if factor is None:
        log.warning("%s: %s of %s has unit %r; assuming the NWB SI unit", path, what, series, unit)
        factor = si
    return factor


def _values(ref_or_series, start: int | None, count: int | None, factor: float) -> np.ndarray:
    series = ref_or_series
    data = series.data
    raw = np.asarray(data[start : start + count] if start is not None else data[:], dtype=float)
    conversion = float(getattr(series, "conversion", 1.0) or 1.0)
    offset = float(getattr(series, "offset", 0.0) or 0.0)
    return (raw * conversion + offset) * factor


def _rate(series) -> float:
    if getattr(series, "rate", None):
        return float(series.rate)
    stamps = np.asarray(series.timestamps[: min(len(series.timestamps), 10000)], dtype=float)
    return float(1.0 / np.median(np.diff(stamps)))


def _pairs_from_table(nwb) -> list[tuple[int, object, tuple | None, object, tuple | None]]:
    """(sweep number, response, (start, count), stimulus, (start, count)) per table row."""
    table = getattr(nwb, "intracellular_recordings", None)
    if table is None or len(table) == 0:
        return []
    responses = table.category_tables["responses"]["response"]
    stimuli = table.category_tables["stimuli"]["stimulus"]
    ids = table.id[:]
    pairs = []
    for row in range(len(table)):
        resp, stim = responses[row], stimuli[row]
        if resp is None or not resp.isvalid():
            continue
        stim_ok = stim is not None and stim.isvalid()
        number = resp.timeseries.sweep_number
        pairs.append(
            (
                int(number) if number is not None else int(ids[row]),
                resp.timeseries,
                (int(resp.idx_start), int(resp.count)),
                stim.timeseries if stim_ok else None,
                (int(stim.idx_start), int(stim.count)) if stim_ok else None,
            )
        )
    return pairs


def _pairs_from_sweep_numbers(nwb) -> list[tuple]:
    """Pair acquisition and stimulus series on `sweep_number` (else on their order)."""
    from pynwb.icephys import PatchClampSeries

    responses = [s for s in nwb.acquisition.values() if isinstance(s, PatchClampSeries)]
    stimuli = [s for s in nwb.stimulus.values() if isinstance(s, PatchClampSeries)]
    by_number = {s.sweep_number: s for s in stimuli if s.sweep_number is not None}
    pairs = []
    for k, resp in enumerate(responses):
        if resp.sweep_number is not None:
            stim, number = by_number.get(resp.sweep_number), int(resp.sweep_number)
        else:
            stim, number = (stimuli[k] if k < len(stimuli) else None), k
        pairs.append((number, resp, None, stim, None))
    return pairs


def read_nwb(path: str | Path) -> Recording:
    """Read the current-clamp sweeps of an NWB 2 icephys file (voltage mV, current pA)."""
    from pynwb import NWBHDF5IO
    from pynwb.icephys import CurrentClampSeries, IZeroClampSeries, VoltageClampSeries

    path = Path(path)
    if not path.is_file():
        raise Ephys2txError(f"{path}: file not found; check the path")
    io = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            io = NWBHDF5IO(str(path), "r", load_namespaces=True)
            nwb = io.read()
    except Exception as exc:
        if io is not None:
            io.close()
        raise Ephys2txError(
            f"{path}: cannot read as NWB 2 ({one_line(exc)}); the file "
            "is truncated, corrupt or not NWB 2 (HDF5): download or export it again"
        ) from exc
    try:
        pairs = _pairs_from_table(nwb) or _pairs_from_sweep_numbers(nwb)
        traces, skipped = [], {"voltage_clamp": 0, "i_zero": 0}
        for number, resp, resp_slice, stim, stim_slice in pairs:
            if isinstance(resp, VoltageClampSeries):
                skipped["voltage_clamp"] += 1
                continue
            if isinstance(resp, IZeroClampSeries) or not isinstance(resp, CurrentClampSeries):
                skipped["i_zero"] += 1
                continue
            start, count = resp_slice or (None, None)
            voltage = _values(resp, start, count, _scale(resp, _TO_MV, 1e3, "voltage", path))
            if stim is not None:
                s0, sn = stim_slice or (None, None)
                current = _values(stim, s0, sn, _scale(stim, _TO_PA, 1e12, "current", path))
                if current.size != voltage.size:  # align lengths: the model needs one clock
                    n = min(current.size, voltage.size)
                    voltage, current = voltage[:n], current[:n]
            else:
                current = np.full_like(voltage, np.nan)
            _check_plausible(voltage, number, path)
            description = getattr(resp, "stimulus_description", None)
            traces.append(
                RawTrace(
                    sweep_number=number,
                    voltage=voltage,
                    current=current,
                    sampling_rate=_rate(resp),
                    protocol=str(description or ""),
                    stimulus_code=str(description) if is_allen_code(description) else None,
                )
            )
        subject = getattr(nwb, "subject", None)
        species = getattr(subject, "species", None) if subject is not None else None
        metadata = {
            "format": "NWB 2",
            "identifier": nwb.identifier,
            "session_description": nwb.session_description,
            "skipped": skipped,
        }
    except Ephys2txError:
        raise
    except Exception as exc:  # opened, but its sweep data is damaged (e.g. a dangling link)
        raise Ephys2txError(
            f"{path}: cannot read its sweeps ({one_line(exc)}); the file is damaged or "
            "incomplete: download or export it again"
        ) from exc
    finally:
        io.close()
    if not traces:
        raise Ephys2txError(
            f"{path}: no current-clamp sweeps (found {skipped['voltage_clamp']} voltage-clamp "
            f"and {skipped['i_zero']} I=0 series); ephys2tx needs CurrentClampSeries "
            "with their stimulus"
        )
    return assemble(path, traces, cell_id=path.stem, species=species, metadata=metadata)


def _check_plausible(voltage: np.ndarray, number: int, path: Path) -> None:
    """Catch wrong unit/conversion attributes, which would silently skew every feature."""
    finite = voltage[np.isfinite(voltage)]
    if finite.size and not 1.0 < np.ptp(finite) < 1e4:
        raise Ephys2txError(
            f"{path}: sweep {number} spans {np.ptp(finite):.3g} mV after unit conversion, not a "
            "membrane potential; fix the series' unit/conversion attributes"
        )
