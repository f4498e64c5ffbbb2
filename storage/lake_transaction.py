"""All-or-nothing writes of several Delta tables: commit each, journal steps, record last.

A :class:`LakeTransaction` reads every table at the version it trusts (its own commits
so far, else the lake's snapshot), commits writes one Delta version at a time after
restoring any unrecorded commits on top of what it trusts, journals each finished step
(with the versions its commits made), and makes everything visible at once
with one record (:mod:`storage.lake_log`). A transaction that dies leaves a
journal: reopening it with the same key resumes after its last finished step (commits of
the step it died in are rolled back and the step is redone), unless another writer
recorded one of its tables since (then its journal is stale and it starts again).
No Dagster.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession

from storage import delta_tables
from storage.lake_log import LakeLog, Snapshot, rollback_unrecorded, write_mode_for


class LakeTables:
    """The Delta tables under one root, read at the versions the lake's records trust."""

    def __init__(self, root: Path, *, use_delta_spark: bool) -> None:
        self.root = Path(root).resolve()
        self.use_delta_spark = use_delta_spark
        self.log = LakeLog(self.root)

    def path(self, name: str) -> Path:
        return self.root / name

    def _version(self, name: str, version: int | None) -> int:
        """``version``, by default the version of the newest record."""
        version = self.log.snapshot().version(name) if version is None else version
        if version is None:
            raise FileNotFoundError(
                f"No committed Delta table '{name}' under {self.root} (was its asset materialized?)"
            )
        return version

    def read(self, spark: SparkSession, name: str, version: int | None = None) -> DataFrame:
        """``name`` at ``version``, by default the version of the newest record."""
        return delta_tables.read_table(
            spark,
            self.path(name),
            use_delta_spark=self.use_delta_spark,
            version=self._version(name, version),
        )

    def arrow(self, name: str, version: int | None = None) -> pa.Table:
        """:meth:`read` as an Arrow table (no Spark)."""
        return delta_tables.read_arrow(self.path(name), self._version(name, version))

    def exists(self, name: str) -> bool:
        return self.log.snapshot().version(name) is not None

    def transaction(
        self, key: str, *, unit: str, run_id: str, restart_if_stale: bool = True
    ) -> LakeTransaction:
        """The transaction journaled under ``key``: resumed where a journal is current,
        else new on top of the newest record. Open it while holding the writer lease.

        A journal is stale when another writer recorded one of its tables since: a unit
        that can redo its work from its inputs starts again; one that cannot (the outputs
        of a step, handed over one by one) fails with :class:`StaleUnit`.
        """
        snapshot = self.log.snapshot()
        journal = self.log.journal(key)
        if journal is not None and not _current(journal, snapshot):
            self.log.drop_journal(key)
            if not restart_if_stale:
                raise StaleUnit(
                    f"Another writer recorded tables of unit {key} ({sorted(journal['base'])}) "
                    "while it was being written; its commits are discarded: run it again."
                )
            journal = None
        return LakeTransaction(self, key, unit, run_id, snapshot, journal)


class StaleUnit(RuntimeError):
    """A unit whose tables another writer recorded over while it was being written."""


def _current(journal: Mapping[str, Any], snapshot: Snapshot) -> bool:
    """A journal can be resumed while every table it wrote is still recorded at the
    version it started from."""
    return all(snapshot.version(name) == base for name, base in journal["base"].items())


class LakeTransaction:
    """One unit of writes; see the module docstring."""

    def __init__(
        self,
        tables: LakeTables,
        key: str,
        unit: str,
        run_id: str,
        snapshot: Snapshot,
        journal: Mapping[str, Any] | None,
    ) -> None:
        self.tables = tables
        self.key = key
        self.snapshot = snapshot
        journal = dict(journal or {})
        self.unit = journal.get("unit", unit)
        self.run_id = journal.get("run_id", run_id)  # the run that started it
        self.steps: list[str] = list(journal.get("steps", []))
        self.facts: dict[str, Any] = dict(journal.get("facts", {}))
        self.base: dict[str, int | None] = dict(journal.get("base", {}))
        self.versions: dict[str, int] = dict(journal.get("versions", {}))

    @property
    def resumed(self) -> bool:
        return bool(self.steps)

    def done(self, step: str) -> bool:
        return step in self.steps

    def version(self, name: str) -> int | None:
        return self.versions.get(name, self.snapshot.version(name))

    def read(self, spark: SparkSession, name: str) -> DataFrame:
        return self.tables.read(spark, name, self.version(name))

    def read_before(self, spark: SparkSession, name: str) -> DataFrame:
        """``name`` as the newest record had it when this transaction began."""
        return self.tables.read(spark, name, self.snapshot.version(name))

    def arrow(self, name: str) -> pa.Table:
        return self.tables.arrow(name, self.version(name))

    def schema(self, name: str) -> pa.Schema:
        return delta_tables.table_schema(self.tables.path(name))

    def arrow_before(self, name: str) -> pa.Table:
        """:meth:`read_before` as an Arrow table."""
        return self.tables.arrow(name, self.snapshot.version(name))

    def _prepare(self, name: str) -> Path:
        path = self.tables.path(name)
        self.base.setdefault(name, self.snapshot.version(name))
        # never below what is recorded now: a commit a record names is never undone
        recorded = self.tables.log.snapshot().version(name)
        trusted = [v for v in (self.version(name), recorded) if v is not None]
        rollback_unrecorded(path, max(trusted) if trusted else None)
        return path

    def commit(
        self, name: str, staged: delta_tables.StagedWrite
    ) -> delta_tables.TableCommit | None:
        """Commit one staged write as the table's next version (an empty append commits
        nothing and returns None)."""
        path = self._prepare(name)
        staged.mode = write_mode_for(path, self.version(name), staged.mode)  # type: ignore[assignment]
        if staged.mode == "append" and staged.is_empty():
            staged.discard()
            return None
        result = delta_tables.commit(staged)
        self._journal(name, result.version)
        return result

    def write(
        self,
        name: str,
        df: DataFrame | pa.Table,
        *,
        mode: delta_tables.WriteMode,
        custom: Mapping[str, str],
    ) -> delta_tables.TableCommit | None:
        staged = delta_tables.stage(
            df,
            self.tables.path(name),
            use_delta_spark=self.tables.use_delta_spark,
            mode=mode,
            custom_metadata=custom,
        )
        return self.commit(name, staged)

    def merge(self, name: str, df: DataFrame | pa.Table, keys: list[str]) -> int:
        path = self._prepare(name)
        version = delta_tables.merge_table(
            df, path, keys, use_delta_spark=self.tables.use_delta_spark
        )
        self._journal(name, version)
        return version

    def step(self, name: str, **facts: Any) -> None:
        """Journal that step ``name`` finished, with what a resumed run needs of it."""
        self.steps.append(name)
        self.facts.update(facts)
        self._save()

    def record(
        self, details: Mapping[str, Any] | None = None, *, keep_journal: bool = False
    ) -> Snapshot:
        """Make every table this transaction committed visible at once. The transaction
        ends here unless ``keep_journal`` (steps outside the tables follow, such as
        publishing an index): its journal then starts from the recorded versions."""
        if self.versions:
            self.snapshot = self.tables.log.record(
                self.versions, unit=self.unit, run_id=self.run_id, details=details
            )
        if keep_journal:
            self.base = {name: self.snapshot.version(name) for name in self.base}
            self._save()
        else:
            self.tables.log.drop_journal(self.key)
        return self.snapshot

    def _journal(self, name: str, version: int) -> None:
        # saved with the next finished step, not now: a step killed halfway is redone
        # whole, and its commits so far are rolled back to the last step's versions
        self.versions[name] = version

    def _save(self) -> None:
        self.tables.log.save_journal(
            self.key,
            {
                "unit": self.unit,
                "run_id": self.run_id,
                "steps": self.steps,
                "facts": self.facts,
                "base": self.base,
                "versions": self.versions,
            },
        )
