"""The Delta table layer on real Spark and real Delta tables on disk."""

from __future__ import annotations

import pyarrow.dataset as ds
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F
from pyspark.sql import types as T

from storage.delta_tables import (
    SchemaMismatchError,
    merge_table,
    read_table,
    recorded,
    write_table,
)
from tests.conftest import require_jvm


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


def test_delta_spark_commits_what_deltalake_commits(spark, caps, frame, tmp_path):
    require_jvm(caps, "delta")
    steps = [
        ("overwrite", frame),
        ("append", frame.limit(5)),
        ("overwrite", frame.limit(3)),
        (
            "merge",
            frame.where("id >= 1")
            .limit(4)
            .withColumn("ts", F.col("ts") + F.expr("INTERVAL 1 SECOND")),
        ),
    ]
    seen: dict[bool, list] = {}
    for engine in (False, True):
        path = tmp_path / f"engine-{engine}"
        out = []
        for mode, df in steps:
            if mode == "merge":
                version = merge_table(df, path, ["id"], use_delta_spark=engine)
            else:
                commit = write_table(df, path, use_delta_spark=engine, mode=mode)
                assert commit.engine == ("delta-spark" if engine else "deltalake")
                version = commit.version
            rows = read_table(spark, path, use_delta_spark=engine).orderBy("id").collect()
            out.append((version, [tuple(r) for r in rows]))
        # every version stays readable by the other engine, time travel included
        for version, rows in out:
            back = read_table(spark, path, use_delta_spark=not engine, version=version)
            assert [tuple(r) for r in back.orderBy("id").collect()] == rows
        seen[engine] = out
    assert seen[True] == seen[False]
    assert [v for v, _ in seen[True]] == [0, 1, 2, 3]


@pytest.mark.parametrize("engine", ["deltalake", "delta-spark"])
def test_recorded_metadata_is_the_newest_commit_that_carries_it(
    spark, caps, frame, tmp_path, engine
):
    """Either engine's custom commit metadata reads back, past later commits without it."""
    delta_spark = engine == "delta-spark"
    if delta_spark:
        require_jvm(caps, "delta")
    path = tmp_path / "t"
    assert recorded(path, "cograph.config") is None  # no table yet
    write_table(frame, path, use_delta_spark=delta_spark, custom_metadata={"cograph.config": "a"})
    write_table(frame.limit(2), path, use_delta_spark=delta_spark, mode="append")
    assert recorded(path, "cograph.config") == "a"
    write_table(frame, path, use_delta_spark=delta_spark, custom_metadata={"cograph.config": "b"})
    assert recorded(path, "cograph.config") == "b"
    assert recorded(path, "something else") is None
