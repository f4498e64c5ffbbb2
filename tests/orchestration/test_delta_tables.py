"""The Delta table layer on real Spark and real Delta tables on disk."""

from __future__ import annotations

import pyarrow.dataset as ds
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F
from pyspark.sql import types as T

from orchestration import delta_tables
from orchestration.delta_tables import SchemaMismatchError, read_table, write_table


@pytest.fixture
def frame(spark):
    return spark.range(50).select(
        F.col("id"),
        F.timestamp_seconds(F.col("id") + 1_700_000_000).alias("ts"),
        F.array(F.col("id").cast("float")).alias("vec"),
    )


def test_versions_modes_and_deltalake_reads(spark, frame, tmp_path):
    path = tmp_path / "t"
    first = write_table(frame, path, use_delta_spark=False)
    second = write_table(frame.limit(5), path, use_delta_spark=False, mode="append")
    third = write_table(frame.limit(3), path, use_delta_spark=False, mode="overwrite")
    assert (first.version, second.version, third.version) == (0, 1, 2)
    assert (first.table_rows, second.table_rows, third.table_rows) == (50, 55, 3)
    assert third.engine == "deltalake"

    table = DeltaTable(str(path))  # readable by deltalake itself, with its history
    assert table.version() == 2
    assert [h["operation"] for h in table.history()] == ["WRITE", "WRITE", "CREATE TABLE"]
    assert ds.dataset(table.file_uris()).count_rows() == 3
    for f in table.file_uris():  # relative add paths that resolve inside the table root
        assert f.startswith(str(path))
    table.load_as_version(1)
    assert ds.dataset(table.file_uris()).count_rows() == 55

    back = read_table(spark, path, use_delta_spark=False)
    assert [(f.name, f.dataType.simpleString()) for f in back.schema] == [
        (f.name, f.dataType.simpleString()) for f in frame.schema
    ]
    assert sorted(r.id for r in back.collect()) == [0, 1, 2]
    assert back.where("ts = timestamp_seconds(1700000001)").count() == 1  # microsecond timestamps


def test_empty_overwrite_keeps_schema(spark, frame, tmp_path):
    path = tmp_path / "t"
    write_table(frame, path, use_delta_spark=False)
    write_table(frame.limit(0), path, use_delta_spark=False)
    back = read_table(spark, path, use_delta_spark=False)
    assert back.count() == 0 and back.columns == ["id", "ts", "vec"]


def test_schema_mismatch_is_refused_before_any_change(frame, tmp_path):
    path = tmp_path / "t"
    write_table(frame, path, use_delta_spark=False)
    with pytest.raises(
        SchemaMismatchError, match=r"column 'vec' missing.*column 'extra' is not in"
    ):
        write_table(
            frame.drop("vec").withColumn("extra", F.lit(1)),
            path,
            use_delta_spark=False,
            mode="append",
        )
    with pytest.raises(
        SchemaMismatchError, match=r"column 'id' has type string, the table has int64"
    ):
        write_table(frame.withColumn("id", F.col("id").cast("string")), path, use_delta_spark=False)
    assert DeltaTable(str(path)).version() == 0
    changed = write_table(frame.drop("vec"), path, use_delta_spark=False, overwrite_schema=True)
    assert changed.version == 1 and [c for c, _ in changed.schema] == ["id", "ts"]


def test_failed_write_midway_leaves_last_good_version(spark, frame, tmp_path):
    path = tmp_path / "t"
    write_table(frame, path, use_delta_spark=False)

    @F.udf(T.LongType())
    def explode_at_40(x):  # untyped: type hints would make Spark read it as a pandas UDF
        if x == 40:
            raise RuntimeError("disk on fire")
        return x

    failing = frame.repartition(4).withColumn("id", explode_at_40("id"))
    with pytest.raises(Exception, match="disk on fire"):
        write_table(failing, path, use_delta_spark=False)
    assert DeltaTable(str(path)).version() == 0
    assert read_table(spark, path, use_delta_spark=False).count() == 50
    # no staged files left behind beside the committed ones
    assert len([p for p in path.iterdir() if p.name.startswith("part-")]) == 1


def test_missing_table_is_named(spark, tmp_path):
    with pytest.raises(FileNotFoundError, match="No Delta table at .*nothing"):
        read_table(spark, tmp_path / "nothing", use_delta_spark=False)


def test_delta_spark_path(spark, caps, frame, tmp_path):
    if not caps.delta:
        pytest.skip("delta-spark JVM package not on Spark's classpath (no Maven repository here)")
    path = tmp_path / "t"
    assert write_table(frame, path, use_delta_spark=True).engine == "delta-spark"
    assert write_table(frame, path, use_delta_spark=True, mode="append").table_rows == 100
    assert read_table(spark, path, use_delta_spark=True).count() == 100
    assert delta_tables.table_version(path) == 1


def test_session_started_without_unreachable_packages(caps):
    if caps.delta:
        pytest.skip("the JVM packages resolved on this machine; the fallback path was not taken")
    assert "could not be loaded" in caps.note and "delta-spark" in caps.note
