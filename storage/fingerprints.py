"""Content fingerprints of input files: a dataset's version and an inbox batch's id."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path


def content_hash(paths: Iterable[str | Path]) -> str:
    """A short hash of the bytes of ``paths`` (a folder: its files, in name order)."""
    digest = hashlib.sha256()
    for path in map(Path, paths):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            with file.open("rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:20]
