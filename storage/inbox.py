"""The inbox folder that incremental batches land in, and which files are ready.

A file is ready when a ``<name>.done`` marker sits beside it, or when its size and
modification time did not change between two looks (a writer still copying it changes
them). Each ready file is identified by name, size and mtime, so the same file counts
once, and a file replaced by new content counts again. Batch ids are content hashes: the
same content under any name is one batch.
"""

from __future__ import annotations

from pathlib import Path

from storage.fingerprints import content_hash

SUFFIXES = (".csv", ".parquet")
DONE = ".done"


def candidates(inbox: Path) -> list[Path]:
    if not inbox.exists():
        return []
    return sorted(p for p in inbox.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)


def fingerprint(path: Path) -> str:
    stat = path.stat()
    return f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}"


def scan(inbox: Path, seen: dict[str, str], done: set[str]) -> tuple[list[Path], dict[str, str]]:
    """Files ready to process, and the observations to compare with next time.

    ``seen`` maps a file name to its fingerprint at the last look; ``done`` holds the
    fingerprints already handed out.
    """
    ready, now = [], {}
    for path in candidates(inbox):
        mark = fingerprint(path)
        now[path.name] = mark
        if mark in done:
            continue
        marker = path.with_name(path.name + DONE)
        if marker.exists() or seen.get(path.name) == mark:
            ready.append(path)
    return ready, now


def batch_id(path: Path) -> str:
    return content_hash([path])
