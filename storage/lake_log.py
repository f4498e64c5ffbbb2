"""The lake's commit record: which version of each table readers trust, written last.

Delta commits one table at a time. An asset or a batch that changes several tables
(``raw_tables``' four outputs, the graph's nodes and edges, an incremental batch) commits
each table as its own Delta version first and then writes one *record* naming every
table's version; readers read each table at the version of the newest record, never at
its latest commit. A unit killed before its record leaves commits that no record names:
readers do not see them, and the next writer of such a table restores it to its recorded
version before committing on top (:func:`rollback_unrecorded`), so they are never seen.

Records are files ``<tables>/_lake_log/<seq>.json`` created put-if-absent (a hard link
from a finished temporary file), the protocol of Delta's own log: two writers that race
for one sequence number cannot both win, the loser re-reads and retries. Each record
holds the whole table map, so the newest record alone is the snapshot.

A *journal* (``_lake_log/journals/<key>.json``) holds a unit's progress before its record:
the versions committed so far and the last finished step, so that a rerun can resume
from that step. Plain files and ``deltalake``, no Dagster, no Spark.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from deltalake import DeltaTable

from storage.delta_tables import table_version

LOG = "_lake_log"
JOURNALS = "journals"
WRITER_LOCK = "writer.lock"
KEEP_RECORDS = 1_000  # older records are history only; housekeeping prunes them
# the unit whose journals outlive their run: an incremental batch, resumed by the next run
INCREMENTAL_UNIT = "incremental"


class LeaseTimeout(TimeoutError):
    """Another writer held the lake for longer than this one would wait."""


@dataclass(frozen=True)
class Snapshot:
    """The newest record: table name (path under the tables root) -> trusted version."""

    seq: int = -1
    tables: dict[str, int] = field(default_factory=dict)

    def version(self, name: str) -> int | None:
        return self.tables.get(name)


class LakeLog:
    """Records, journals and the writer lease of the tables under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.folder = self.root / LOG

    # records ---------------------------------------------------------------

    def _records(self) -> list[Path]:
        if not self.folder.exists():
            return []
        return sorted(p for p in self.folder.glob("*.json") if p.stem.isdigit())

    def snapshot(self) -> Snapshot:
        records = self._records()
        if not records:
            return Snapshot()
        data = json.loads(records[-1].read_text())
        return Snapshot(seq=data["seq"], tables={k: int(v) for k, v in data["tables"].items()})

    def record(
        self,
        tables: Mapping[str, int],
        *,
        unit: str,
        run_id: str,
        details: Mapping[str, Any] | None = None,
    ) -> Snapshot:
        """Make ``tables``' versions what readers see, on top of the newest record."""
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            current = self.snapshot()
            merged = {**current.tables, **{k: int(v) for k, v in tables.items()}}
            seq = current.seq + 1
            body = {
                "seq": seq,
                "unit": unit,
                "run_id": run_id,
                "committed_at": datetime.now(timezone.utc).isoformat(),
                "changed": dict(tables),
                "details": dict(details or {}),
                "tables": merged,
            }
            tmp = self.folder / f".{seq:012d}.{uuid.uuid4().hex}.tmp"
            tmp.write_text(json.dumps(body, indent=1, sort_keys=True))
            try:
                os.link(tmp, self.folder / f"{seq:012d}.json")  # fails if the name exists
            except FileExistsError:
                continue  # another writer took this number: re-read and retry
            finally:
                tmp.unlink(missing_ok=True)
            return Snapshot(seq=seq, tables=merged)

    def prune(self, keep: int = KEEP_RECORDS) -> int:
        """Remove all but the newest ``keep`` records (each holds the whole map)."""
        old = self._records()[:-keep] if keep > 0 else []
        for path in old:
            path.unlink(missing_ok=True)
        return len(old)

    # journals --------------------------------------------------------------

    def _journal_path(self, key: str) -> Path:
        return self.folder / JOURNALS / f"{key}.json"

    def journal(self, key: str) -> dict[str, Any] | None:
        path = self._journal_path(key)
        return json.loads(path.read_text()) if path.exists() else None

    def journals(self, unit: str | None = None) -> dict[str, dict[str, Any]]:
        """Journals by key: every one, or those of ``unit``."""
        folder = self.folder / JOURNALS
        if not folder.exists():
            return {}
        found = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
        return {k: j for k, j in found.items() if unit is None or j.get("unit") == unit}

    def save_journal(self, key: str, data: Mapping[str, Any]) -> None:
        path = self._journal_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)  # a reader sees the old journal or the new one, never half

    def drop_journal(self, key: str) -> None:
        self._journal_path(key).unlink(missing_ok=True)

    # the writer lease ------------------------------------------------------

    @contextmanager
    def writer_lease(self, timeout_s: float, poll_s: float = 0.5) -> Iterator[None]:
        """Hold the lake's single-writer lease (an exclusive ``flock``, so a killed holder
        releases it with its process), waiting up to ``timeout_s`` for it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / WRITER_LOCK).open("a") as handle:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LeaseTimeout(
                            f"Another writer holds the lake at {self.root} (lease "
                            f"{self.folder / WRITER_LOCK}); waited {timeout_s:.0f} s"
                        ) from None
                    time.sleep(poll_s)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def rollback_unrecorded(path: Path, trusted: int | None) -> bool:
    """Restore the table at ``path`` to ``trusted`` when commits no record names sit on top
    (a unit killed before its record). Returns whether it restored.

    A table with no trusted version is left alone: its next write replaces it whole
    (see :func:`write_mode_for`).
    """
    if trusted is None:
        return False
    current = table_version(path)
    if current is None or current <= trusted:
        return False
    DeltaTable(str(path)).restore(trusted)
    return True


def write_mode_for(path: Path, trusted: int | None, mode: str) -> str:
    """An append to a table that exists on disk but in no record (its first unit died
    before recording) must not keep the dead unit's rows: it replaces them instead."""
    if trusted is None and table_version(path) is not None:
        return "overwrite"
    return mode
