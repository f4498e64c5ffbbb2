"""An IO manager that stores Spark DataFrames and Arrow tables as Delta tables in the lake.

An asset returns a DataFrame or an Arrow table (one table), a ``dict`` of them (a table
set, stored as ``<table>/<name>``) or a :class:`TableWrite` (one of those with its write
mode). The tables of every output of one step are one unit
(:mod:`storage.lake_transaction`): each is committed as a Delta version and journaled, and
one record after the step's last output makes all of them visible together, so a failure
anywhere (between two tables, or between two outputs of a multi-asset) leaves readers on
the last recorded versions. Inputs are read at the recorded versions, by Spark or, for an
input annotated ``pa.Table``, by deltalake. Output metadata per table: path, Delta
version, rows, schema and the write's seconds and peak memory (Spark is lazy: the write is
where the stage's work happens).
"""

import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import dagster as dg
import pyarrow as pa
from pyspark.sql import DataFrame

from resources.measure import Measure
from resources.spark_lake import LakeResource, SparkResource
from spark_jobs import constants as C
from storage import delta_tables
from storage.lake_transaction import LakeTables

Table = DataFrame | pa.Table  # Spark's, or Arrow's (written by deltalake)
CONFIG = "cograph.config"  # commit metadata: the JSON config of the run that wrote a table


@dataclass(frozen=True)
class TableWrite:
    """A DataFrame (or an asset's named frames) and how to write it, where the mode
    depends on the run (an append of new rows, or a replacement); ``custom`` goes into
    the commits' metadata (e.g. ``CONFIG``)."""

    df: Table | dict[str, Table]
    mode: delta_tables.WriteMode
    custom: Mapping[str, str] = field(default_factory=dict)


def recorded_config(tables: LakeTables, name: str) -> dict[str, Any] | None:
    """The config that the last full write of table ``name`` recorded, or None (a lake
    written before configs were recorded)."""
    value = delta_tables.recorded(tables.path(name), CONFIG)
    return None if value is None else json.loads(value)


def column_schema(table: str, columns: list[tuple[str, str]]) -> dg.TableSchema:
    """The table's columns with their types and what they hold."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name,
                kind,
                description=C.COLUMN_DOCS_BY_TABLE.get((table, name), C.COLUMN_DOCS.get(name)),
            )
            for name, kind in columns
        ]
    )


def table_metadata(
    commit: delta_tables.TableCommit, table: str, prefix: str = ""
) -> dict[str, Any]:
    return {
        f"{prefix}path": dg.MetadataValue.path(commit.path),
        f"{prefix}delta_version": commit.version,
        f"{prefix}rows_written": commit.rows_written,
        f"{prefix}rows": commit.table_rows,
        f"{prefix}schema": dg.MetadataValue.table_schema(column_schema(table, commit.schema)),
        f"{prefix}engine": commit.engine,
    }


def _wants_arrow(context: dg.InputContext) -> bool:
    hint = context.dagster_type.typing_type
    return hint is pa.Table or pa.Table in typing.get_args(hint)


def _release_caches(frames: Mapping[str, Table]) -> None:
    """Drop what the Spark session has cached, where the step wrote Spark frames."""
    spark = next((f.sparkSession for f in frames.values() if isinstance(f, DataFrame)), None)
    if spark is not None:
        spark.catalog.clearCache()


def lake_tables(lake: LakeResource, spark: SparkResource) -> LakeTables:
    # asks Spark (starting it) only where delta-spark is wanted
    wanted = lake.delta_engine == "delta-spark"
    return LakeTables(
        lake.layout.tables, use_delta_spark=wanted and lake.uses_delta_spark(spark.capabilities)
    )


class DeltaIOManager(dg.ConfigurableIOManager):
    """Reads and writes assets as Delta tables under ``<lake>/tables/<asset>``."""

    lake: dg.ResourceDependency[LakeResource]
    spark: dg.ResourceDependency[SparkResource]

    @staticmethod
    def _name(key: dg.AssetKey) -> str:
        return "/".join(key.path)

    def handle_output(
        self, context: dg.OutputContext, obj: Table | dict[str, Table] | TableWrite
    ) -> None:
        tables = lake_tables(self.lake, self.spark)
        name = self._name(context.asset_key)
        meta = context.definition_metadata or {}
        mode = meta.get("write_mode", "overwrite")
        custom = {"dagster_run_id": context.run_id, "asset": context.asset_key.to_user_string()}
        if isinstance(obj, TableWrite):
            obj, mode, custom = obj.df, obj.mode, {**custom, **obj.custom}
        frames = obj if isinstance(obj, dict) else {"": obj}
        # Steps read their inputs back from the lake at recorded versions, so nothing a
        # step cached (ingest's clean interactions, co-engagement's per-user lists) is
        # read after its tables are written. Left cached, it fills the driver's heap in a
        # one-process run, and a later step's broadcast fails for want of memory (the
        # knowledge graph's did at 10^7 interactions).
        with Measure() as m:
            try:
                commits, last = self._write(context, tables, name, frames, mode, custom)
            except BaseException:
                _release_caches(frames)
                raise
        if last:
            _release_caches(frames)
        metadata: dict[str, Any] = m.metadata("write")
        for sub, commit in commits.items():
            if commit is not None:
                metadata.update(table_metadata(commit, name, f"{sub}/" if sub else ""))
        written = [c for c in commits.values() if c is not None]
        if written:  # a graph's nodes and edges count together
            metadata["dagster/row_count"] = sum(c.table_rows for c in written)
        if commits.get("") is not None:
            metadata["dagster/column_schema"] = column_schema(name, commits[""].schema)
        context.add_output_metadata(metadata)
        context.log.info(
            "Committed "
            + (
                ", ".join(
                    f"{c.path} v{c.version} ({c.rows_written} rows)"
                    for c in commits.values()
                    if c is not None
                )
                or "nothing (no new rows)"
            )
        )

    def _write(
        self,
        context: dg.OutputContext,
        tables: LakeTables,
        name: str,
        frames: dict[str, Table],
        mode: delta_tables.WriteMode,
        custom: Mapping[str, str],
    ) -> tuple[dict[str, delta_tables.TableCommit | None], bool]:
        """Stage and commit the output's tables as one unit; also whether it was the
        step's last output (the unit then recorded)."""
        staged: dict[str, delta_tables.StagedWrite] = {}
        try:
            for sub, df in frames.items():
                path = tables.path(f"{name}/{sub}" if sub else name)
                # a rebuilt table takes the schema of the code that rebuilt it (a
                # column added since); appends must match the table's
                staged[sub] = delta_tables.stage(
                    df, path, use_delta_spark=tables.use_delta_spark, mode=mode,
                    overwrite_schema=mode == "overwrite", custom_metadata=custom,
                )  # fmt: skip
        except BaseException:
            for s in staged.values():
                s.discard()
            raise
        # one writer at a time: an incremental batch in flight has commits no record
        # names yet, which this unit's rollback of unrecorded commits must not undo
        with tables.log.writer_lease(self.lake.writer_lease_seconds):
            txn = tables.transaction(
                f"{context.run_id}.{context.step_key}",
                unit=context.step_key,
                run_id=context.run_id,
                restart_if_stale=False,  # earlier outputs of the step cannot be redone
            )
            commits = {
                sub: txn.commit(f"{name}/{sub}" if sub else name, s) for sub, s in staged.items()
            }
            txn.step(context.name)
            last = self._last_output(context, txn.steps)
            if last:
                txn.record({"asset": context.asset_key.to_user_string()})
        return commits, last

    @staticmethod
    def _last_output(context: dg.OutputContext, done: list[str]) -> bool:
        """Whether every output of the step that this manager stores has been written."""
        mine = context.op_def.output_def_named(context.name).io_manager_key
        return all(o.name in done for o in context.op_def.output_defs if o.io_manager_key == mine)

    def load_input(self, context: dg.InputContext) -> Table | dict[str, Table]:
        """The asset's table (or table set) at its recorded version: a Spark DataFrame,
        or an Arrow table read by deltalake where the input is annotated ``pa.Table``
        (``dict[str, pa.Table]``). Python code that reads a table whole (training, the
        index) takes the Arrow path: through Spark, the rows would pass through the
        driver's heap (the 15M edges of a 10^7-interaction graph did not fit in 4g)."""
        tables = lake_tables(self.lake, self.spark)
        name = self._name(context.asset_key)
        snapshot = tables.log.snapshot()
        read = tables.arrow if _wants_arrow(context) else partial(tables.read, self.spark.session)
        if snapshot.version(name) is not None:
            return read(name)
        subtables = sorted(t for t in snapshot.tables if t.startswith(f"{name}/"))
        if subtables:
            return {t.split("/", 1)[1]: read(t) for t in subtables}
        raise FileNotFoundError(
            f"No recorded Delta table for asset {context.asset_key.to_user_string()} under "
            f"{tables.root}; materialize it first."
        )
