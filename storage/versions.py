"""Versioned artifact folders: ``<root>/<version>/`` plus a ``LATEST`` pointer.

Plain files, no Dagster: the IO manager writes through it, and the service (which runs
without Dagster) reads through it.
"""

import logging
import os
import shutil
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

LATEST = "LATEST"
T = TypeVar("T")
log = logging.getLogger(__name__)


class FolderArtifact(Protocol):
    def save(self, folder: Path) -> None: ...


def publish(artifact: FolderArtifact, root: Path, version: str) -> Path:
    """Save ``artifact`` as ``root/version`` and then point ``LATEST`` at it (atomically),
    so readers never see a half-written version.

    The folder is written under a temporary name and renamed into place, so a publisher
    killed mid-save leaves no folder by that version's name; publishing a version again
    replaces a folder that ``LATEST`` does not point at. Every temporary name is unique,
    so that concurrent publishers do not write into each other's files.
    """
    folder = root / version
    tag = f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
    staging = root / f".{version}.{tag}.tmp"
    artifact.save(staging)
    if folder.exists():
        if pointed(root) == version:
            raise FileExistsError(f"{folder} is the served version; publish a new one")
        shutil.rmtree(folder)
    os.rename(staging, folder)
    tmp = root / f"{LATEST}.{tag}.tmp"
    tmp.write_text(version)
    os.replace(tmp, root / LATEST)  # atomic on POSIX
    return folder


def pointed(root: Path) -> str | None:
    """The version name ``LATEST`` holds under ``root``, if there is one."""
    pointer = root / LATEST
    return pointer.read_text().strip() if pointer.exists() else None


def latest(root: Path) -> Path:
    """The folder ``LATEST`` points at under ``root``."""
    pointer = root / LATEST
    if not pointer.exists():
        raise FileNotFoundError(f"No {root.name} artifact under {root}; materialize it first")
    return root / pointer.read_text().strip()


def newest_loaded(root: Path | None, name: str, load: Callable[[Path], T]) -> T | None:
    """``load`` of the most recently written version folder under ``root`` that holds a
    file ``name`` (a version whose model did not pass its gate keeps its report only), or
    None: also when it does not load (logged), so that a service keeps running without it."""
    if root is None or not root.is_dir():
        return None
    folders = [f for f in root.iterdir() if (f / name).is_file()]
    newest = max(folders, key=lambda f: (f / name).stat().st_mtime, default=None)
    if newest is None:
        return None
    try:
        return load(newest)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        log.error("%s does not load (%s); serving without it", newest / name, error)
        return None
