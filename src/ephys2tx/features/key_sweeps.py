"""The rheobase and hero sweeps of a recording, picked exactly as the extraction picks them.

Both come from IPFX's `LongSquareAnalysis` run by `protocols.analyze_long_squares`: rheobase
is the lowest-amplitude long square with a spike, hero the sweep IPFX chooses 39-61 pA
above it (the one the `*_hero` features are measured on).
"""

from __future__ import annotations

import warnings

from ..recordings.sweeps import Recording, Sweep
from .protocols import analyze_long_squares

KEY_SWEEPS = ("rheobase", "hero")


def key_sweeps(rec: Recording) -> tuple[dict[str, Sweep], str | None]:
    """({"rheobase": sweep, "hero": sweep} for those found, reason when one is missing)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            analysis = analyze_long_squares(rec)
    except Exception as exc:  # the extraction records the same failure as a reason
        return {}, f"long-square analysis failed: {type(exc).__name__}: {exc}"
    if analysis.features is None:
        return {}, analysis.reason or "no long-square analysis"
    by_number = {s.sweep_number: s for s in rec.sweeps}
    found: dict[str, Sweep] = {}
    for name in KEY_SWEEPS:
        row = analysis.features.get(f"{name}_sweep")
        if row is None or not len(row):
            continue
        number = analysis.sweeps.sweeps[int(row.name)].sweep_number
        if number in by_number:
            found[name] = by_number[number]
    missing = [name for name in KEY_SWEEPS if name not in found]
    return found, (f"no {' or '.join(missing)} sweep" if missing else None)
