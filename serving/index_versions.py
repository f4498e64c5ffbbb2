"""Which index version the service serves.

``LATEST`` when it loads. At start-up, a ``LATEST`` that does not load gives way to the
newest version folder that does, with an error in the log. While running, a version that
fails to load is remembered (with its folder's modification time, so a republished folder
is tried again) and the last good one stays served; the next good ``LATEST`` is followed.
An admin reload of a named version pins it: polling leaves it alone until an unpin or the
next publish (``LATEST`` moving away from where it pointed when the pin was made).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from storage.versions import pointed

log = logging.getLogger("cograph.serving")
T = TypeVar("T")


def version_folders(root: Path) -> list[Path]:
    """Published version folders under ``root``, newest first (staging copies left out)."""
    if not root.is_dir():
        return []
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(folders, key=lambda p: p.stat().st_mtime, reverse=True)


def load_newest(root: Path, load: Callable[[Path], T]) -> tuple[T, Path]:
    """``LATEST`` loaded, else the newest version folder that loads."""
    named = pointed(root)
    candidates = [root / named] if named else []
    candidates += [p for p in version_folders(root) if p.name != named]
    for folder in candidates:
        try:
            return load(folder), folder
        except Exception as error:  # any broken file: try the next version
            log.error("Index version %s does not load (%s: %s)", folder.name,
                      type(error).__name__, error)  # fmt: skip
    raise FileNotFoundError(f"No loadable index version under {root}")


@dataclass
class Selection:
    """The version the service should serve, given ``LATEST``, a pin and known failures."""

    root: Path
    pinned: str | None = None
    pinned_while: str | None = None  # LATEST when the pin was made
    failed: dict[str, float] = field(default_factory=dict)  # version -> folder mtime

    def pin(self, version: str) -> None:
        self.pinned, self.pinned_while = version, pointed(self.root)

    def unpin(self) -> None:
        self.pinned = self.pinned_while = None

    def wanted(self) -> str | None:
        """The pinned version until ``LATEST`` moves; then ``LATEST``."""
        latest = pointed(self.root)
        if self.pinned is not None and latest == self.pinned_while:
            return self.pinned
        self.unpin()
        return latest

    def known_bad(self, version: str) -> bool:
        folder = self.root / version
        return folder.exists() and self.failed.get(version) == folder.stat().st_mtime

    def mark_bad(self, version: str) -> None:
        folder = self.root / version
        self.failed[version] = folder.stat().st_mtime if folder.exists() else -1.0
