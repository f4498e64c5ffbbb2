"""Nothing lost: the nightly refresh keeps inbox batches, killed and concurrent runs apply a
batch exactly once, and a failure between two tables of one unit shows readers nothing.

Failures are injected in process (an exception after a chosen step) and, through the real
Dagster CLI, as ``kill -9`` of a run at a chosen moment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from assets.raw import IngestConfig
from orchestration.definitions import ASSETS, CHECKS, full_refresh
from spark_jobs import incremental_batch
from spark_jobs.arrow_batch import ArrowSteps
from spark_jobs.batch_steps import BatchSteps
from spark_jobs.incremental_batch import STEPS
from storage import delta_tables
from storage.delta_tables import table_rows
from storage.inbox import fingerprint
from storage.lake_log import LakeLog
from storage.lake_transaction import LakeTransaction
from storage.layout import LakeLayout
from storage.versions import latest
from tests.assets.lakes import SMALL, lake_copy, resources, training_ops
from tests.assets.test_incremental import NEW, tick, write_batch
from tests.conftest import ROOT

RAW = ["raw_interactions", "item_catalog", "item_concepts", "quarantine"]


class Injected(RuntimeError):
    """The failure a test injects."""


@pytest.fixture(scope="module")
def base(materialized_lake, tmp_path_factory) -> Path:
    """A materialized lake with one batch (3 new items, 120 interactions) in its inbox."""
    lake = lake_copy(materialized_lake.lake, tmp_path_factory.mktemp("base"))
    entities = pq.read_table(latest(LakeLayout(lake).index) / "entities.parquet").to_pylist()
    template = next(e["item_id"] for e in entities if e["log_degree"] == 0)
    write_batch(lake, template, "0001")
    return lake


copy = lake_copy


def incremental(lake: Path, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*ASSETS, *CHECKS],
        selection=["batch_updates"],
        resources=resources(lake),
        raise_on_error=raise_on_error,
    )


def recorded_rows(lake: Path) -> dict[str, int]:
    """Rows of every table at the version readers see."""
    snapshot = LakeLog(LakeLayout(lake).tables).snapshot()
    return {
        name: table_rows(DeltaTable(str(LakeLayout(lake).table(name)), version=version))
        for name, version in snapshot.tables.items()
    }


def served_items(lake: Path) -> set[str]:
    entities = pq.read_table(latest(LakeLayout(lake).index) / "entities.parquet")
    return set(entities["item_id"].to_pylist())


@pytest.fixture(scope="module")
def reference(base, tmp_path_factory) -> dict[str, int]:
    """Row counts after one uninterrupted incremental run."""
    lake = copy(base, tmp_path_factory.mktemp("reference"))
    before = recorded_rows(lake)
    assert incremental(lake).success
    after = recorded_rows(lake)
    assert after["raw_interactions"] == before["raw_interactions"] + 120
    assert after["item_catalog"] == before["item_catalog"] + 3
    assert set(NEW) <= served_items(lake)
    return after


def test_full_refresh_keeps_what_the_inbox_added(base, reference, tmp_path):
    lake = copy(base, tmp_path)
    assert incremental(lake).success
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COGRAPH_GATE_MARGIN", "1.0")  # two epochs; the gate has its own tests
        result = dg.materialize(
            [*ASSETS, *CHECKS],
            selection=full_refresh.selection,
            resources=resources(lake),
            run_config=dg.RunConfig(
                ops={"raw_tables": IngestConfig(synthetic=SMALL), **training_ops(("semantic",))}
            ),
        )
    assert result.success
    rows = recorded_rows(lake)
    for table in ("raw_interactions", "item_catalog", "item_concepts", "quarantine"):
        assert rows[table] == reference[table], table
    assert set(NEW) <= served_items(lake)  # rebuilt from the accumulated tables
    assert rows["entity_embeddings"] == reference["item_catalog"]


def fail_after(mp: pytest.MonkeyPatch, step: str) -> None:
    """Fail right after ``step`` finishes, whichever engine runs it."""
    for cls in (ArrowSteps, incremental_batch._SparkSteps, BatchSteps):
        if step in vars(cls):
            original = vars(cls)[step]

            def failing(self, original=original) -> None:
                original(self)
                raise Injected(f"injected failure after step {step}")

            mp.setattr(cls, step, failing)


def fail_on_write(mp: pytest.MonkeyPatch, n: int) -> None:
    """Fail right after the ``n``-th table commit of the transaction."""
    original, calls = LakeTransaction.commit, []

    def failing(self, name, staged):
        result = original(self, name, staged)
        calls.append(name)
        if len(calls) == n:
            raise Injected(f"injected failure after committing {name}")
        return result

    mp.setattr(LakeTransaction, "commit", failing)


# A failure after each kind of step: the first table writes, the graph's extension, the
# record that makes the batch visible, the index publish, and mid-commit inside a step.
# (merged, embedded and logged are steps of the same kind as appended and extended, and
# test_kill_9 stops a run at whichever step it reached; CI's 20 minutes keep this to five.)
@pytest.mark.parametrize(
    "where", ["appended", "extended", "recorded", "published", "second commit"]
)
def test_a_failed_incremental_run_resumes_and_applies_the_batch_once(
    base, reference, tmp_path, where
):
    lake = copy(base, tmp_path)
    before = recorded_rows(lake)
    with pytest.MonkeyPatch.context() as mp:
        if where in STEPS:
            fail_after(mp, where)
        else:
            fail_on_write(mp, 2)
        failed = incremental(lake, raise_on_error=False)
    assert not failed.success
    visible = recorded_rows(lake)
    if where in ("recorded", "published"):
        assert visible == reference  # the batch's tables were recorded whole
    else:
        assert visible == before  # nothing of the batch is visible
    if where != "published":
        assert not set(NEW) & served_items(lake)  # the index has not moved
    # the sensor, with every inbox file handed out already, asks for the batch's resumption
    inbox_files = sorted(p for p in (LakeLayout(lake).inbox).iterdir() if p.suffix != ".done")
    cursor = json.dumps({"seen": {}, "done": [fingerprint(p) for p in inbox_files]})
    (request,), _ = tick(lake, cursor)
    assert request.tags["cograph/resumes"].startswith("incremental-")
    rerun = incremental(lake)
    assert rerun.success
    (event,) = rerun.get_asset_materialization_events()[-1:]
    resumed = event.materialization.metadata["resumed_from"].value
    assert resumed == [where if where in STEPS else "started"]  # where it had got to
    assert recorded_rows(lake) == reference
    assert set(NEW) <= served_items(lake)
    assert LakeLog(LakeLayout(lake).tables).journals() == {}


def nothing_cached(spark) -> bool:
    """Whether the session's cache manager holds no DataFrame (it has no Python API)."""
    return spark._jsparkSession.sharedState().cacheManager().isEmpty()


def test_failure_between_outputs_of_raw_tables_shows_nothing(base, tmp_path, spark):
    lake = copy(base, tmp_path)
    before = recorded_rows(lake)
    other = IngestConfig(synthetic=SMALL.model_copy(update={"seed": 12, "n_interactions": 500}))

    def ingest(raise_on_error: bool) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [*ASSETS, *CHECKS],
            selection=RAW,
            resources=resources(lake),
            run_config=dg.RunConfig(ops={"raw_tables": other}),
            raise_on_error=raise_on_error,
        )

    original = LakeTransaction.step

    def failing(self, name, **facts):
        original(self, name, **facts)
        if name == "item_concepts":  # three outputs committed, quarantine not yet
            raise Injected("injected failure between outputs of raw_tables")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LakeTransaction, "step", failing)
        assert not ingest(raise_on_error=False).success
    assert nothing_cached(spark)  # a failed step's caches are not left in the driver
    latest_raw = DeltaTable(str(LakeLayout(lake).table("raw_interactions"))).version()
    assert latest_raw > LakeLog(LakeLayout(lake).tables).snapshot().version("raw_interactions")
    assert recorded_rows(lake) == before  # all four at their old versions
    assert ingest(raise_on_error=True).success
    assert nothing_cached(spark)  # ingest cached its clean rows; written, they go
    after = recorded_rows(lake)
    assert after["raw_interactions"] == before["raw_interactions"] + 500  # appended once
    assert after["quarantine"] == before["quarantine"]  # no corrupt rows at 500 x 0.1%


def test_failure_between_the_graph_tables_shows_nothing(base, tmp_path):
    lake = copy(base, tmp_path)
    before = LakeLog(LakeLayout(lake).tables).snapshot()
    original = delta_tables.commit

    def failing(staged):
        if staged.path.name == "edges":
            raise Injected("injected failure between nodes and edges")
        return original(staged)

    def graph(raise_on_error: bool) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [*ASSETS, *CHECKS],
            selection=["knowledge_graph"],
            resources=resources(lake),
            raise_on_error=raise_on_error,
        )

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(delta_tables, "commit", failing)
        assert not graph(raise_on_error=False).success
    nodes = LakeLayout(lake).table("knowledge_graph/nodes")
    assert DeltaTable(str(nodes)).version() == before.version("knowledge_graph/nodes") + 1
    assert LakeLog(LakeLayout(lake).tables).snapshot().tables == before.tables
    assert graph(raise_on_error=True).success
    after = LakeLog(LakeLayout(lake).tables).snapshot()
    for name in ("knowledge_graph/nodes", "knowledge_graph/edges"):
        assert after.version(name) > before.version(name)


def cli_run(lake: Path, home: Path) -> subprocess.Popen:
    """``dg launch --assets batch_updates`` as an operator runs it (the project's
    ``[tool.dg]`` names the definitions); its output goes to ``home/run.log``."""
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "COGRAPH_LAKE_ROOT": str(lake),
        "COGRAPH_SPARK_DRIVER_MEMORY": "1g",
    }
    command = [
        str(Path(sys.executable).parent / "dg"),
        *("launch", "--assets", "batch_updates"),
    ]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=(home / "run.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: a kill reaches Spark's JVM too
    )


def test_kill_9_mid_run_then_rerun_applies_the_batch_once(base, reference, tmp_path):
    lake, home = copy(base, tmp_path), tmp_path / "home"
    home.mkdir()
    log = LakeLog(LakeLayout(lake).tables)
    proc = cli_run(lake, home)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        steps = [s for j in log.journals().values() for s in j.get("steps", [])]
        if "extended" in steps:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    assert proc.wait(60) == -signal.SIGKILL, "the run ended before the chosen moment"
    assert recorded_rows(lake) != reference  # killed before its record
    rerun = incremental(lake)  # as a re-execution of the run would
    (event,) = rerun.get_asset_materialization_events()[-1:]
    assert event.materialization.metadata["resumed_from"].value[0] in STEPS[2:5]
    assert recorded_rows(lake) == reference
    assert set(NEW) <= served_items(lake)


def test_two_runs_at_once_apply_the_batch_once(base, reference, tmp_path):
    lake = copy(base, tmp_path)
    homes = [tmp_path / "home-a", tmp_path / "home-b"]  # two instances: only the lake is shared
    for home in homes:
        home.mkdir()
    runs = [cli_run(lake, home) for home in homes]
    codes = [r.wait(400) for r in runs]
    assert codes == [0, 0], [(h / "run.log").read_text()[-3000:] for h in homes]
    assert recorded_rows(lake) == reference
    logged = DeltaTable(str(LakeLayout(lake).table("batch_updates")))
    assert table_rows(logged) == 2  # one row per file, once


def test_a_header_only_input_fails_naming_it_and_changes_nothing(base, tmp_path):
    lake = copy(base, tmp_path)
    before = recorded_rows(lake)
    (tmp_path / "interactions.csv").write_text("user_id,item_id,ts\n")
    (tmp_path / "concepts.csv").write_text("item_id,relation,concept\ni0000001,genre,x\n")
    config = IngestConfig(
        source="generic",
        interactions_path=str(tmp_path / "interactions.csv"),
        concepts_path=str(tmp_path / "concepts.csv"),
    )
    result = dg.materialize(
        [*ASSETS, *CHECKS],
        selection=RAW,
        resources=resources(lake),
        run_config=dg.RunConfig(ops={"raw_tables": config}),
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert "fewer data rows than min_rows=1" in message
    assert f"{tmp_path / 'interactions.csv'}: 0 rows" in message
    assert recorded_rows(lake) == before
    assert not (LakeLayout(lake).staging_root).exists() or not any(
        (LakeLayout(lake).staging_root).iterdir()
    )
