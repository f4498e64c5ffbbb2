"""Spark DataFrames and Arrow tables as Delta tables, with or without delta-spark.

With delta-spark loaded, Spark writes ``format("delta")`` itself. Without it, Spark
writes Parquet part files into a fresh folder inside the table root and ``deltalake``
commits exactly those files in one atomic transaction (``append`` or ``overwrite``).
Either way a write is one Delta version, and a write that fails before its commit
leaves the table at its previous version: the staged files are removed and no log
entry points at them.

Writing is split in two phases, :func:`stage` then :func:`commit`, so that an asset
made of several tables commits none of them until all of them have been written.

An Arrow table (the in-process small-batch path) is written by pyarrow as one Parquet
file and committed by ``deltalake`` whatever the engine: no Spark action is needed.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable, Schema
from deltalake.transaction import AddAction, CommitProperties, create_table_with_add_actions
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

WriteMode = Literal["append", "overwrite"]


class SchemaMismatchError(ValueError):
    """A write whose columns do not match the table it would change."""


@dataclass(frozen=True)
class TableCommit:
    """What one committed write produced; recorded as asset metadata."""

    path: str
    version: int
    rows_written: int
    table_rows: int
    schema: list[tuple[str, str]]
    engine: str


@dataclass
class StagedWrite:
    """Files written but not yet committed (the offline path), or a deferred delta-spark write."""

    path: Path
    mode: WriteMode
    arrow_schema: pa.Schema
    overwrite_schema: bool = False
    df: DataFrame | None = None  # delta-spark path: the write itself is the commit
    folder: str | None = None
    files: list[Path] = field(default_factory=list)
    rows: int = 0
    custom_metadata: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.path / self.folder, ignore_errors=True)

    def is_empty(self) -> bool:
        return self.df.isEmpty() if self.df is not None else self.rows == 0


def is_table(path: str | Path) -> bool:
    return DeltaTable.is_deltatable(str(path))


def table_version(path: str | Path) -> int | None:
    """Latest version of the table at ``path``, or None where there is no table."""
    return DeltaTable(str(path)).version() if is_table(path) else None


def _fields(schema: pa.Schema) -> list[tuple[str, str]]:
    # Nested nullability is not part of a column's type here: delta-spark stores every
    # array element as nullable whatever Spark wrote, deltalake keeps what it was given.
    return [(f.name, str(f.type).replace(" not null", "")) for f in schema]


def check_schema(path: Path, new: pa.Schema, mode: WriteMode, overwrite_schema: bool) -> None:
    """Refuse a write whose columns differ from the table's, naming the first difference."""
    if not is_table(path) or (mode == "overwrite" and overwrite_schema):
        return
    current = table_schema(path)
    old, new_fields = dict(_fields(current)), dict(_fields(new))
    problems = [f"column '{c}' missing from the new data" for c in old if c not in new_fields]
    problems += [f"column '{c}' is not in the table" for c in new_fields if c not in old]
    problems += [
        f"column '{c}' has type {new_fields[c]}, the table has {old[c]}"
        for c in old
        if c in new_fields and old[c] != new_fields[c]
    ]
    if problems:
        hint = "" if mode == "append" else " (overwrite with overwrite_schema=True to replace it)"
        raise SchemaMismatchError(
            f"Schema mismatch writing Delta table {path}: {'; '.join(problems)}{hint}."
        )


def arrow_schema(table: DeltaTable) -> pa.Schema:
    return pa.schema(table.schema().to_arrow())


def table_schema(path: Path) -> pa.Schema:
    return arrow_schema(DeltaTable(str(path)))


def conform(rows: pa.Table, path: Path) -> pa.Table:
    """``rows`` in the column order and types of the table at ``path`` (a column it lacks
    is left for :func:`check_schema` to name)."""
    if not is_table(path):
        return rows
    schema = table_schema(path)
    if set(rows.column_names) != set(schema.names):
        return rows
    return rows.select(schema.names).cast(schema)


def _stage_arrow(
    rows: pa.Table, path: Path, mode: WriteMode, custom_metadata: Mapping[str, str] | None
) -> StagedWrite:
    rows = conform(rows, path)
    check_schema(path, rows.schema, mode, False)
    staged = StagedWrite(path, mode, rows.schema, custom_metadata=dict(custom_metadata or {}))
    staged.folder = f"part-{uuid.uuid4().hex}"
    if rows.num_rows:
        target = path / staged.folder / "part-00000.parquet"
        target.parent.mkdir(parents=True)
        pq.write_table(rows, target, coerce_timestamps="us")
        staged.files, staged.rows = [target], rows.num_rows
    return staged


def stage(
    df: DataFrame | pa.Table,
    path: str | Path,
    *,
    use_delta_spark: bool,
    mode: WriteMode = "overwrite",
    overwrite_schema: bool = False,
    custom_metadata: Mapping[str, str] | None = None,
) -> StagedWrite:
    """Write ``df``'s files (offline path, or any Arrow table) without committing them."""
    path = Path(path).resolve()
    if isinstance(df, pa.Table):
        return _stage_arrow(df, path, mode, custom_metadata)
    arrow_schema = to_arrow_schema(df.schema, timezone="UTC")
    check_schema(path, arrow_schema, mode, overwrite_schema)
    staged = StagedWrite(
        path, mode, arrow_schema, overwrite_schema, custom_metadata=dict(custom_metadata or {})
    )
    if use_delta_spark:
        staged.df = df
        return staged
    staged.folder = f"part-{uuid.uuid4().hex}"
    target = path / staged.folder
    try:
        df.write.parquet(str(target))
    except BaseException:
        staged.discard()
        raise
    for marker in target.iterdir():  # _SUCCESS and .crc files are Spark's, not the table's
        if not marker.name.endswith(".parquet"):
            marker.unlink()
    staged.files = sorted(target.glob("*.parquet"))
    staged.rows = sum(pq.ParquetFile(f).metadata.num_rows for f in staged.files)
    return staged


def commit(staged: StagedWrite) -> TableCommit:
    """Make staged files one new Delta version."""
    path = staged.path
    if staged.df is not None:
        writer = (
            staged.df.write.format("delta")
            .mode(staged.mode)
            .option("overwriteSchema", str(staged.overwrite_schema).lower())
        )
        if staged.custom_metadata:  # delta-spark keeps one string per commit
            writer = writer.option("userMetadata", json.dumps(staged.custom_metadata))
        writer.save(str(path))
        engine = "delta-spark"
    else:
        actions = [
            AddAction(
                path=f"{staged.folder}/{f.name}",
                size=f.stat().st_size,
                partition_values={},
                modification_time=int(f.stat().st_mtime * 1000),
                data_change=True,
                stats=json.dumps({"numRecords": pq.ParquetFile(f).metadata.num_rows}),
            )
            for f in staged.files
        ]
        props = CommitProperties(custom_metadata={"engine": "cograph", **staged.custom_metadata})
        schema = Schema.from_arrow(staged.arrow_schema)
        try:
            if is_table(path):
                DeltaTable(str(path)).create_write_transaction(
                    actions, staged.mode, schema, commit_properties=props
                )
            else:
                create_table_with_add_actions(
                    str(path), schema, actions, mode="error", commit_properties=props
                )
        except BaseException:
            staged.discard()
            raise
        engine = "deltalake"
    table = DeltaTable(str(path))
    rows_written = staged.rows
    if staged.df is not None:
        metrics = table.history(1)[0].get("operationMetrics", {})
        rows_written = int(metrics.get("numOutputRows", 0))
    return TableCommit(
        path=str(path),
        version=table.version(),
        rows_written=rows_written,
        table_rows=table_rows(table),
        schema=_fields(staged.arrow_schema),
        engine=engine,
    )


def recorded(path: str | Path, key: str) -> str | None:
    """The value of custom commit metadata ``key`` in the newest commit of the table at
    ``path`` that carries it (either engine's commits), or None."""
    if not is_table(Path(path)):
        return None
    for commit in DeltaTable(str(path)).history():  # newest first
        if key in commit:  # deltalake: custom metadata are commit fields
            return str(commit[key])
        user = commit.get("userMetadata")
        if user and user.startswith("{") and key in (fields := json.loads(user)):
            return str(fields[key])
    return None


def table_rows(table: DeltaTable) -> int:
    counts = pa.chunked_array(table.get_add_actions(flatten=True).column("num_records"))
    return int(pc.sum(counts).as_py() or 0)


def write_table(
    df: DataFrame,
    path: str | Path,
    *,
    use_delta_spark: bool,
    mode: WriteMode = "overwrite",
    overwrite_schema: bool = False,
    custom_metadata: Mapping[str, str] | None = None,
) -> TableCommit:
    """Write ``df`` as one new version of the Delta table at ``path``."""
    staged = stage(
        df,
        path,
        use_delta_spark=use_delta_spark,
        mode=mode,
        overwrite_schema=overwrite_schema,
        custom_metadata=custom_metadata,
    )
    return commit(staged)


def read_table(
    spark: SparkSession, path: str | Path, *, use_delta_spark: bool, version: int | None = None
) -> DataFrame:
    """The Delta table at ``path`` as a DataFrame, at ``version`` (default: the latest)."""
    path = Path(path).resolve()
    if not is_table(path):
        raise FileNotFoundError(f"No Delta table at {path} (was its asset materialized?)")
    if use_delta_spark:
        reader = spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(str(path))
    table = DeltaTable(str(path), version=version)
    schema = from_arrow_schema(arrow_schema(table))
    files = table.file_uris()
    if not files:
        return spark.createDataFrame([], schema)
    return spark.read.schema(schema).parquet(*files)


def read_arrow(path: str | Path, version: int | None = None) -> pa.Table:
    """The Delta table at ``path`` as an Arrow table, at ``version`` (default: the latest)."""
    path = Path(path).resolve()
    if not is_table(path):
        raise FileNotFoundError(f"No Delta table at {path} (was its asset materialized?)")
    table = DeltaTable(str(path), version=version)
    return table.to_pyarrow_table().cast(arrow_schema(table))


def merge_table(
    df: DataFrame | pa.Table, path: str | Path, keys: list[str], *, use_delta_spark: bool
) -> int:
    """Upsert ``df`` into the Delta table at ``path`` on ``keys`` (one new version): rows
    whose keys match are replaced, the rest inserted. Returns the new version.

    A Spark DataFrame with delta-spark goes through Delta's MERGE; anything else through
    deltalake's merge over the rows as Arrow (the rows to merge are an incremental batch,
    small by design).
    """
    path = Path(path).resolve()
    if not is_table(path):
        raise FileNotFoundError(f"No Delta table at {path} to merge into")
    predicate = " AND ".join(f"t.{k} = s.{k}" for k in keys)
    if isinstance(df, DataFrame) and use_delta_spark:
        check_schema(path, to_arrow_schema(df.schema, timezone="UTC"), "append", False)
        from delta.tables import DeltaTable as SparkDeltaTable  # only with delta-spark

        (
            SparkDeltaTable.forPath(df.sparkSession, str(path))
            .alias("t")
            .merge(df.alias("s"), predicate)
            .whenMatchedUpdateAll()
            .whenNotMatchedInsertAll()
            .execute()
        )
    else:
        rows = conform(df.toArrow() if isinstance(df, DataFrame) else df, path)
        check_schema(path, rows.schema, "append", False)
        (
            DeltaTable(str(path))
            .merge(rows, predicate, source_alias="s", target_alias="t")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )
    return DeltaTable(str(path)).version()
