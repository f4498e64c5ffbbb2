"""The lake's records, journals, rollback of unrecorded commits and the writer lease."""

from __future__ import annotations

import threading
import time

import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from storage import delta_tables
from storage.housekeeping import tidy_lake
from storage.lake_log import LakeLog, LeaseTimeout
from storage.lake_transaction import LakeTables, StaleUnit
from storage.layout import STAGING, LakeLayout

CUSTOM = {"asset": "test"}


@pytest.fixture
def tables(tmp_path) -> LakeTables:
    return LakeTables(LakeLayout(tmp_path).tables, use_delta_spark=False)


def ids(df) -> list[int]:
    return sorted(r.id for r in df.collect())


def seed(spark, tables: LakeTables, **sizes: int) -> None:
    """Record tables ``name`` holding ids ``0 .. size - 1``, as one unit."""
    txn = tables.transaction("seed", unit="setup", run_id="r0")
    for name, size in sizes.items():
        txn.write(name, spark.range(size), mode="overwrite", custom=CUSTOM)
    txn.record()


def test_readers_see_a_unit_only_once_it_is_recorded(spark, tables):
    seed(spark, tables, a=3, b=5)

    txn = tables.transaction("two", unit="grow", run_id="r1")
    txn.write("a", spark.range(10, 12), mode="append", custom=CUSTOM)
    # a: committed as a Delta version, journaled, not recorded: readers keep the old
    assert DeltaTable(str(tables.path("a"))).version() == 1
    assert ids(tables.read(spark, "a")) == [0, 1, 2]
    assert ids(txn.read(spark, "a")) == [0, 1, 2, 10, 11]  # the writer sees its own
    txn.write("b", spark.range(20, 21), mode="append", custom=CUSTOM)
    txn.record()
    assert ids(tables.read(spark, "a")) == [0, 1, 2, 10, 11]
    assert ids(tables.read(spark, "b")) == [0, 1, 2, 3, 4, 20]
    assert tables.log.journal("two") is None


def test_an_unrecorded_commit_is_rolled_back_before_the_next_write(spark, tables):
    seed(spark, tables, a=3)
    dead = tables.transaction("dead", unit="dies", run_id="r1")
    dead.write("a", spark.range(100, 103), mode="append", custom=CUSTOM)  # then killed
    tables.log.drop_journal("dead")  # a run-scoped unit: nobody resumes it

    again = tables.transaction("again", unit="append", run_id="r2")
    again.write("a", spark.range(50, 51), mode="append", custom=CUSTOM)
    again.record()
    assert ids(tables.read(spark, "a")) == [0, 1, 2, 50]  # the dead unit's rows never show


def test_a_table_no_record_names_is_replaced_by_its_next_append(spark, tables):
    dead = tables.transaction("dead", unit="first", run_id="r1")
    dead.write("a", spark.range(3), mode="append", custom=CUSTOM)  # killed before recording
    with pytest.raises(FileNotFoundError, match="No committed Delta table 'a'"):
        tables.read(spark, "a")
    again = tables.transaction("again", unit="first", run_id="r2")
    again.write("a", spark.range(7, 9), mode="append", custom=CUSTOM)
    again.record()
    assert ids(tables.read(spark, "a")) == [7, 8]


def test_a_journal_resumes_until_another_writer_records_over_it(spark, tables):
    seed(spark, tables, a=3, b=3)
    txn = tables.transaction("batch", unit="inc", run_id="r1")
    txn.write("a", spark.range(10, 11), mode="append", custom=CUSTOM)
    txn.step("appended", counts={"a": 1})
    txn.write("b", spark.range(10, 11), mode="append", custom=CUSTOM)  # killed after this

    resumed = tables.transaction("batch", unit="inc", run_id="r2")
    assert resumed.resumed and resumed.done("appended") and resumed.run_id == "r1"
    assert resumed.facts["counts"] == {"a": 1}
    # b's commit after the last journaled state is rolled back when b is written again
    resumed.write("b", spark.range(10, 11), mode="append", custom=CUSTOM)
    resumed.record()
    assert ids(tables.read(spark, "a")) == [0, 1, 2, 10]
    assert ids(tables.read(spark, "b")) == [0, 1, 2, 10]

    stale = tables.transaction("other", unit="inc", run_id="r3")
    stale.write("a", spark.range(99, 100), mode="append", custom=CUSTOM)
    stale.step("appended")
    other = tables.transaction("x", unit="refresh", run_id="r4")
    other.write("a", spark.range(1), mode="overwrite", custom=CUSTOM)
    other.record()
    fresh = tables.transaction("other", unit="inc", run_id="r5")
    assert not fresh.resumed and fresh.run_id == "r5"  # recorded over: start again


def test_records_race_without_losing_a_table(tmp_path):
    log = LakeLog(tmp_path)

    def writer(k: int) -> None:
        for i in range(20):
            log.record({f"t{k}": i}, unit=f"w{k}", run_id="r")

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snapshot = log.snapshot()
    assert snapshot.seq == 79 and snapshot.tables == {f"t{k}": 19 for k in range(4)}
    assert log.prune(keep=5) == 75 and log.snapshot() == snapshot


def test_the_writer_lease_is_exclusive_and_times_out(tmp_path):
    log = LakeLog(tmp_path)
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with log.writer_lease(5):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    with (
        pytest.raises(LeaseTimeout, match="Another writer holds the lake"),
        log.writer_lease(0.3, poll_s=0.05),
    ):
        pass
    release.set()
    thread.join()
    start = time.monotonic()
    with log.writer_lease(1):
        assert time.monotonic() - start < 1


def test_empty_appends_commit_nothing(spark, tables):
    txn = tables.transaction("s", unit="setup", run_id="r0")
    txn.write("a", spark.range(3), mode="overwrite", custom=CUSTOM)
    assert (
        txn.write("a", spark.range(3).where(F.col("id") < 0), mode="append", custom=CUSTOM) is None
    )
    txn.record()
    assert DeltaTable(str(tables.path("a"))).version() == 0


def test_housekeeping_removes_what_killed_writes_left(spark, tables, tmp_path):
    seed(spark, tables, a=3)
    # killed between staging and committing: files no version references
    orphan = delta_tables.stage(spark.range(5), tables.path("a"), use_delta_spark=False)
    # killed between committing and recording, leaving its run-scoped journal
    dead = tables.transaction("r1.raw_tables", unit="raw_tables", run_id="r1")
    dead.write("a", spark.range(100, 101), mode="append", custom=CUSTOM)
    dead.step("raw_interactions")
    staging = tmp_path / STAGING / "r1"
    staging.mkdir(parents=True)
    (staging / "copy.csv").write_text("user_id\n")

    done = tidy_lake(tables, LakeLayout(tmp_path), grace_hours=0)
    assert done.restored == ["a"] and done.journals_dropped == 1
    assert done.files_removed >= len(orphan.files) + 1
    assert not (tables.path("a") / orphan.folder).exists() and not staging.exists()
    assert ids(tables.read(spark, "a")) == [0, 1, 2]
    latest = delta_tables.read_table(spark, tables.path("a"), use_delta_spark=False)
    assert ids(latest) == [0, 1, 2]  # the table itself is back at its recorded state
    assert tables.log.journals() == {}


def test_housekeeping_keeps_what_a_pending_batch_resumes_from(spark, tables, tmp_path):
    seed(spark, tables, a=3)
    batch = tables.transaction("incremental-x", unit="incremental", run_id="r1")
    batch.write("a", spark.range(7, 8), mode="append", custom=CUSTOM)
    batch.step("appended")  # then killed
    tidy_lake(tables, LakeLayout(tmp_path), grace_hours=0)
    resumed = tables.transaction("incremental-x", unit="incremental", run_id="r2")
    assert resumed.done("appended")
    assert ids(resumed.read(spark, "a")) == [0, 1, 2, 7]


def test_a_writer_never_undoes_a_commit_recorded_after_it_began(spark, tables):
    seed(spark, tables, a=3)
    step = tables.transaction("run.step", unit="step", run_id="r1", restart_if_stale=False)
    late = tables.transaction("late", unit="late", run_id="r3")  # opened before the record
    step.write("a", spark.range(10, 11), mode="append", custom=CUSTOM)
    step.step("first output")
    other = tables.transaction("other", unit="refresh", run_id="r2")
    other.write("a", spark.range(5), mode="overwrite", custom=CUSTOM)
    other.record()
    # the step's next output finds its first one recorded over: it fails, recording nothing
    with pytest.raises(StaleUnit, match="Another writer recorded tables of unit run.step"):
        tables.transaction("run.step", unit="step", run_id="r1", restart_if_stale=False)
    late.write("a", spark.range(20, 21), mode="append", custom=CUSTOM)
    late.record()
    assert ids(tables.read(spark, "a")) == [0, 1, 2, 3, 4, 20]  # on top of the recorded one
