"""Read Axon ABF (1 and 2) current-clamp recordings with pyabf into a `Recording`."""

from __future__ import annotations

import logging
import struct
import warnings
from pathlib import Path

import numpy as np

from ..errors import Ephys2txError, one_line
from .assemble import RawTrace, assemble
from .sweeps import Recording

log = logging.getLogger(__name__)

# Scale factors to the model's units (mV for voltage, pA for current).
VOLTAGE_UNITS = {"mv": 1.0, "v": 1e3, "uv": 1e-3, "µv": 1e-3}
CURRENT_UNITS = {"pa": 1.0, "na": 1e3, "ua": 1e6, "µa": 1e6, "a": 1e12, "fa": 1e-3}


def _unit(name: str | None) -> str:
    return (name or "").replace("\x00", "").strip().lower()


# Byte offsets of the ABF2 section map entries pyabf reads (protocol, ADC, DAC, epoch,
# epoch per DAC, user list, strings, tag, synch array): block index (uint32, 512-byte
# blocks), entry size (uint32), entry count (read as int32).
ABF2_SECTIONS = {
    76: "protocol", 92: "ADC", 108: "DAC", 124: "epoch", 156: "epoch-per-DAC",
    172: "user list", 220: "strings", 252: "tag", 316: "synch array",
}  # fmt: skip


def check_abf2_sections(path: Path) -> None:
    """Refuse an ABF2 file whose section map points beyond the file's end.

    Why: pyabf loops over each section's entry count; a damaged count (e.g. 2**31) makes
    it loop for hours and allocate gigabytes instead of failing (found by fuzzing)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(512)
    if head[:4] != b"ABF2":
        return
    if len(head) < 332:
        raise Ephys2txError(
            f"{path}: the ABF header is cut short ({len(head)} bytes); copy the complete file again"
        )
    for offset, name in ABF2_SECTIONS.items():
        block, entry_size, count = struct.unpack_from("<IIi", head, offset)
        if count < 0 or block * 512 + max(entry_size, 1) * count > size:
            raise Ephys2txError(
                f"{path}: the ABF header is damaged (its {name} section lies beyond the end "
                f"of the {size}-byte file); copy or re-export the file"
            )


def _open(path: Path):
    import pyabf

    check_abf2_sections(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pyabf.ABF(str(path))
    except Exception as exc:  # pyabf raises bare Exceptions / struct errors on bad files
        raise Ephys2txError(
            f"{path}: cannot read as an ABF file ({one_line(exc)}); "
            "check the file is a complete Axon .abf (re-export it from Clampex/Clampfit)"
        ) from exc


def _channels(abf, path: Path) -> tuple[int, float, int | None, float]:
    """(voltage ADC, its scale, current ADC or None, its scale)."""
    adc_units = [_unit(u) for u in abf.adcUnits]
    dac_units = [_unit(u) for u in abf.dacUnits]
    voltage = [i for i, u in enumerate(adc_units) if u in VOLTAGE_UNITS]
    current = [i for i, u in enumerate(adc_units) if u in CURRENT_UNITS]
    if not voltage:
        clamp = (
            "voltage-clamp recording (it records current in "
            f"{abf.adcUnits[current[0]]} and commands voltage)"
            if current
            else f"no voltage channel (ADC units {abf.adcUnits})"
        )
        raise Ephys2txError(
            f"{path}: no current-clamp sweeps: {clamp}; ephys2tx needs current-clamp "
            "(I-clamp) recordings of the membrane potential"
        )
    v = voltage[0]
    if v < len(dac_units) and dac_units[v] in VOLTAGE_UNITS:
        raise Ephys2txError(
            f"{path}: no current-clamp sweeps: the command of channel {v} is a voltage "
            f"({abf.dacUnits[v]}), i.e. voltage clamp; record in current clamp (I-clamp)"
        )
    cur = current[0] if current else None
    return v, VOLTAGE_UNITS[adc_units[v]], cur, CURRENT_UNITS[adc_units[cur]] if current else 1.0


def _check_epochs(abf, channel: int, path: Path) -> None:
    """Refuse an epoch table whose epochs leave the sweep.

    Why: pyabf builds each epoch as an array of its length; a damaged duration (e.g. 2**30
    points) made it allocate gigabytes and run for minutes (found by fuzzing)."""
    import pyabf.waveform

    n = abf.sweepPointCount
    for sweep, waveform in enumerate(pyabf.waveform.EpochTable(abf, channel).epochWaveformsBySweep):
        for p1, p2 in zip(waveform.p1s, waveform.p2s, strict=True):
            if not 0 <= p1 <= p2 <= n:
                raise Ephys2txError(
                    f"{path}: the ABF protocol is damaged (an epoch of sweep {sweep} "
                    f"spans points {p1}..{p2} of a {n}-point sweep); copy or re-export the file"
                )


def _commands(abf, channel: int, path: Path) -> np.ndarray | None:
    """Command waveform of every sweep (pA), or None when the protocol defines none."""
    units = _unit(abf.dacUnits[channel]) if channel < len(abf.dacUnits) else ""
    if units not in CURRENT_UNITS:
        return None
    if abf.abfVersion["major"] == 2:
        enabled = abf._dacSection.nWaveformEnable[channel]
        source = abf._dacSection.nWaveformSource[channel]
    else:
        enabled = abf._headerV1.nWaveformEnable[channel]
        source = abf._headerV1.nWaveformSource[channel]
    if not enabled or source == 0:
        return None
    if source == 1:
        _check_epochs(abf, channel, path)
    rows = []
    for sweep in abf.sweepList:  # one call per sweep: pyabf builds the epoch waveform
        abf.setSweep(sweep, channel=channel)
        rows.append(np.asarray(abf.sweepC, dtype=float))
    commands = np.stack(rows) * CURRENT_UNITS[units]
    return None if not np.any(commands) and source == 2 else commands


def read_abf(path: str | Path) -> Recording:
    """Read the current-clamp sweeps of an ABF file: voltage (mV), command current (pA).

    The current is the protocol's command waveform (exact, noise-free); when the file
    has no command waveform but records the injected current, that channel is used.
    """
    path = Path(path)
    if not path.is_file():
        raise Ephys2txError(f"{path}: file not found; check the path")
    abf = _open(path)
    try:
        traces, metadata = _traces(abf, path)
    except Ephys2txError:
        raise
    except Exception as exc:  # pyabf parses headers and waveforms lazily: damage shows here
        raise Ephys2txError(
            f"{path}: the ABF file is damaged ({one_line(exc)}); copy or re-export the file"
        ) from exc
    return assemble(path, traces, cell_id=abf.abfID, metadata=metadata)


def _traces(abf, path: Path) -> tuple[list[RawTrace], dict]:
    """The sweeps of an opened ABF file as raw traces (mV, pA), and the file's metadata."""
    v_channel, v_scale, i_channel, i_scale = _channels(abf, path)
    n_points = abf.sweepPointCount
    rate = float(abf.sampleRate)
    lengths = getattr(getattr(abf, "_synchArraySection", None), "lLength", None)
    if lengths is not None and abf.sweepCount > 1 and len(set(lengths)) > 1:
        raise Ephys2txError(
            f"{path}: variable-length (event-driven) sweeps are not supported; "
            "record current-clamp steps in episodic stimulation mode"
        )
    expected = abf.sweepCount * n_points
    if abf.data.shape[1] < expected:
        raise Ephys2txError(
            f"{path}: the ABF file is truncated ({abf.data.shape[1]} of {expected} samples "
            "per channel); copy the complete file again"
        )
    voltage = abf.data[v_channel, :expected].reshape(abf.sweepCount, n_points) * v_scale
    current = _commands(abf, v_channel, path)
    if current is None and i_channel is not None:
        current = abf.data[i_channel, :expected].reshape(abf.sweepCount, n_points) * i_scale
    if current is None:
        log.warning("%s: no command waveform or current channel; stimuli are unknown", path)
        current = np.full_like(voltage, np.nan)
    protocol = str(abf.protocol or "")
    traces = [
        RawTrace(
            sweep_number=int(k),
            voltage=voltage[k].astype(float),
            current=current[k],
            sampling_rate=rate,
            protocol=protocol,
        )
        for k in range(abf.sweepCount)
    ]
    metadata = {
        "format": f"ABF {abf.abfVersionString}",
        "protocol": protocol,
        "recorded": str(getattr(abf, "abfDateTime", "")),
    }
    return traces, metadata
