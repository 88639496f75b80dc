"""Small file helpers every layer may use."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20  # bytes read at a time


def sha256_of(path: str | Path, chunk: int = CHUNK) -> str:
    """Hex sha256 of a file's contents, read in chunks (recordings and tables can be GBs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
