"""Versioned artifact folders: ``<root>/<version>/`` plus a ``LATEST`` pointer.

Plain files, no Dagster: the IO manager writes through it, and the service (which runs
without Dagster) reads through it.
"""

import os
from pathlib import Path
from typing import Protocol

LATEST = "LATEST"


class FolderArtifact(Protocol):
    def save(self, folder: Path) -> None: ...


def publish(artifact: FolderArtifact, root: Path, version: str) -> Path:
    """Save ``artifact`` as ``root/version`` and then point ``LATEST`` at it (atomically),
    so readers never see a half-written version."""
    folder = root / version
    artifact.save(folder)
    tmp = root / f"{LATEST}.tmp"
    tmp.write_text(version)
    os.replace(tmp, root / LATEST)  # atomic on POSIX
    return folder


def latest(root: Path) -> Path:
    """The folder ``LATEST`` points at under ``root``."""
    pointer = root / LATEST
    if not pointer.exists():
        raise FileNotFoundError(f"No {root.name} artifact under {root}; materialize it first")
    return root / pointer.read_text().strip()
