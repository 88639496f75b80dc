"""Each step of a study runs once per settings; its record is stored as JSON, atomically.

DIR/steps/<name>.json holds the settings the step ran with, the package and cache versions,
the seconds it took and its result; a rerun with the same settings reuses it, so an
interrupted run resumes. Every `run` is logged as a `StepTiming` for results.json.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from ..console import console
from ..files import atomic_write_text
from ..report.results import StepTiming, build, to_dict
from ..version import __version__

# 2: typed records; 3: reference ECE; 4: new reference t-type models and novel flag (older
# steps run again); 5: renamed records (published, baseline, default_model); 6: network
# settings as one record, the cross-lab row "M1 alone on the same mice"
CACHE_VERSION = 6
T = TypeVar("T")


class StepCache:
    """Run a named step once per settings; results are JSON files written atomically."""

    def __init__(self, out: Path, settings: Any):
        self.dir = Path(out) / "steps"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.settings = json.loads(json.dumps(asdict(settings)))  # tuples compare as lists
        self.timings: list[StepTiming] = []

    def _stored(self, path: Path) -> dict | None:
        if not path.is_file():
            return None
        try:
            stored = json.loads(path.read_text())
        except ValueError:  # a damaged cache file: run the step again
            return None
        same = stored.get("settings") == self.settings and stored.get("version") == __version__
        return stored if same and stored.get("cache_version") == CACHE_VERSION else None

    def lookup(self, name: str, kind: type | None = None) -> tuple[bool, Any]:
        """(True, the stored result) when the step ran with these settings, else (False, None).
        A reused step is logged as such."""
        stored = self._stored(self.dir / f"{name}.json")
        if stored is None:
            return False, None
        console.print(f"[dim]reusing {name}[/]")
        self.timings.append(StepTiming(name, stored["seconds"], True))
        result = stored["result"]
        return True, (build(kind, result) if kind is not None else result)

    def store(self, name: str, result: Any, seconds: float) -> None:
        """Write a step's result with its settings and time, atomically, and log the time."""
        record = {
            "settings": self.settings,
            "version": __version__,
            "cache_version": CACHE_VERSION,
            "seconds": seconds,
            "result": to_dict(result),
        }
        atomic_write_text(self.dir / f"{name}.json", json.dumps(record, indent=1, default=float))
        self.timings.append(StepTiming(name, seconds, False))

    def run(self, name: str, step: Callable[[], T], kind: type | None = None) -> T:
        """The step's result: stored, or computed now. `kind`: the type it returns (e.g. a
        record, `dict[str, Record]`)."""
        found, result = self.lookup(name, kind)
        if found:
            return result
        console.print(f"[bold]{name}[/]")
        start = time.perf_counter()
        result = step()
        self.store(name, result, round(time.perf_counter() - start, 1))
        return result
