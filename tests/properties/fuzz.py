"""Damaged copies of real recordings, and a guarded reader that says what became of each.

A damaged file must give a one-line `Ephys2txError` (what `inspect` prints, what `extract`
writes into errors.csv), never another exception, a multi-line message, a hang or a crash
of the process. `GuardedReader` reads each file in a worker process, so a hang (past its
timeout) or a crash (the worker dies, e.g. a segfault inside HDF5) is recorded and the
worker restarted, instead of ending the run.
"""

from __future__ import annotations

import multiprocessing as mp
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MUTATIONS = ("truncate", "bitflip", "chunk", "random")
MAGIC = {".abf": b"ABF2", ".nwb": b"\x89HDF\r\n\x1a\n"}
HEAD = 8192  # bytes of header most mutations aim at (where parsers branch)


def mutate(data: bytes, kind: str, rng: np.random.Generator, suffix: str) -> bytes:
    """A damaged copy of `data`: cut short, a few bits flipped, a run of bytes overwritten,
    or random bytes (half of them behind the format's magic number, so they reach the
    format's parser)."""
    n = len(data)
    if kind == "truncate":
        return data[: int(rng.integers(0, n))]
    if kind == "bitflip":
        out = bytearray(data)
        for _ in range(int(rng.integers(1, 17))):
            span = HEAD if rng.random() < 0.7 else n
            pos = int(rng.integers(0, min(span, n)))
            out[pos] ^= 1 << int(rng.integers(0, 8))
        return bytes(out)
    if kind == "chunk":
        out = bytearray(data)
        span = HEAD if rng.random() < 0.7 else n
        start = int(rng.integers(0, min(span, n)))
        length = int(rng.integers(1, 513))
        fill = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        if rng.random() < 0.3:
            fill = bytes(length)
        out[start : start + length] = fill[: max(0, n - start)]
        return bytes(out)
    if kind == "random":
        body = rng.integers(0, 256, int(rng.integers(0, 4097)), dtype=np.uint8).tobytes()
        return MAGIC[suffix] + body if rng.random() < 0.5 else body
    raise ValueError(f"unknown mutation {kind!r}")


@dataclass
class Outcome:
    """What reading one damaged file gave: `kind` is ok, error (a one-line Ephys2txError),
    or a failure: unexpected (another exception), multiline, hang or crash."""

    kind: str
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.kind not in ("ok", "error")


def classify(path: str) -> Outcome:
    """Read one file as `inspect` does and say what happened (runs in the worker)."""
    from ephys2tx.errors import Ephys2txError
    from ephys2tx.recordings.read import read_recording

    try:
        read_recording(path)
    except Ephys2txError as exc:
        text = str(exc)
        if not text.strip() or "\n" in text or "Traceback" in text:
            return Outcome("multiline", repr(text[:300]))
        return Outcome("error", text)
    except BaseException as exc:  # noqa: BLE001 - the point is to see every kind
        return Outcome("unexpected", f"{type(exc).__name__}: {str(exc)[:300]}")
    return Outcome("ok")


def _serve(tasks, results) -> None:
    import logging
    import warnings

    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    while (path := tasks.get()) is not None:
        outcome = classify(path)
        results.put((outcome.kind, outcome.detail))


class GuardedReader:
    """Reads files in one worker process at a time; a hang or a crash is an outcome."""

    def __init__(self, timeout: float = 30.0):
        self.timeout = timeout
        self._ctx = mp.get_context("spawn")  # no inherited HDF5 state or threads
        self._start()

    def _start(self) -> None:
        self.tasks, self.results = self._ctx.Queue(), self._ctx.Queue()
        self.worker = self._ctx.Process(target=_serve, args=(self.tasks, self.results))
        self.worker.daemon = True
        self.worker.start()

    def read(self, path: str | Path) -> Outcome:
        import queue
        import time

        self.tasks.put(str(path))
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                kind, detail = self.results.get(timeout=0.1)
                return Outcome(kind, detail)
            except queue.Empty:
                pass
            if not self.worker.is_alive():  # died reading it: a crash
                code = self.worker.exitcode
                self._start()
                return Outcome("crash", f"worker exit code {code}")
            if time.monotonic() > deadline:
                self.worker.kill()
                self.worker.join()
                self._start()
                return Outcome("hang", f"no answer in {self.timeout:g} s")

    def close(self) -> None:
        if self.worker.is_alive():
            self.tasks.put(None)
            self.worker.join(5)
            if self.worker.is_alive():
                self.worker.kill()


def damaged_file(folder: Path, data: bytes, suffix: str, name: str = "damaged") -> Path:
    """Write damaged bytes under a recording name in `folder`."""
    path = Path(tempfile.mkdtemp(dir=folder)) / f"{name}{suffix}"
    path.write_bytes(data)
    return path
