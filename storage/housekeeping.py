"""Lake housekeeping: what killed writes left behind, removed once it is old enough.

A writer killed between staging and committing leaves Parquet files that no Delta
version references; one killed between its commits and its record leaves commits no
record names; a run-scoped journal outlives its dead run; the ingest's line-numbered
CSV copies outlive a killed ingest. :func:`tidy_lake` restores each table to its recorded
version, vacuums files no version it keeps references (older than ``grace_hours``, so a
write in flight is never touched), and drops the rest. Journals of incremental batches
stay: the next incremental run resumes them. No Dagster.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from deltalake import DeltaTable

from storage.lake_log import INCREMENTAL_UNIT, rollback_unrecorded
from storage.lake_transaction import LakeTables
from storage.layout import LakeLayout


@dataclass
class Tidied:
    restored: list[str] = field(default_factory=list)
    files_removed: int = 0
    folders_removed: int = 0
    journals_dropped: int = 0
    records_pruned: int = 0


def _older_than(path: Path, seconds: float) -> bool:
    return time.time() - path.stat().st_mtime > seconds


def tidy_lake(tables: LakeTables, layout: LakeLayout, grace_hours: float) -> Tidied:
    """Tidy the lake at ``layout`` (tables at ``tables``). Hold the writer lease."""
    grace_s = grace_hours * 3600
    done = Tidied()
    snapshot = tables.log.snapshot()
    journals = tables.log.journals()
    for key, journal in journals.items():
        stale = journal.get("unit") != INCREMENTAL_UNIT
        if stale and _older_than(tables.log.folder / "journals" / f"{key}.json", grace_s):
            tables.log.drop_journal(key)
            done.journals_dropped += 1
    pending = list(tables.log.journals().values())
    for name, version in sorted(snapshot.tables.items()):
        path = tables.path(name)
        # a pending batch resumes from its own versions: keep their files too
        keep = {version, *(j["versions"][name] for j in pending if name in j["versions"])}
        if not keep - {version} and rollback_unrecorded(path, version):
            done.restored.append(name)
        removed = DeltaTable(str(path)).vacuum(
            retention_hours=int(grace_hours),
            dry_run=False,
            enforce_retention_duration=False,
            full=True,
            keep_versions=sorted(keep),
        )
        done.files_removed += len(removed)
        for folder in path.glob("part-*"):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
                done.folders_removed += 1
    staging = layout.staging_root
    if staging.exists():
        for folder in staging.iterdir():
            if _older_than(folder, grace_s):
                shutil.rmtree(folder, ignore_errors=True)
                done.folders_removed += 1
    done.records_pruned = tables.log.prune()
    return done
