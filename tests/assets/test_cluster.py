"""The ingest and graph assets on a real Spark standalone cluster (master and worker on
127.0.0.1), materialized by the Dagster CLI as an operator would, give the tables of the
``local[*]`` run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.assets.lakes import SMALL, assert_same_rows, recorded, table_at
from tests.spark_cluster import standalone_cluster

ROOT = Path(__file__).resolve().parents[2]
# the ingest multi-asset whole, then the graph: knowledge_graph and what it reads
SELECTION = "raw_interactions,item_catalog,item_concepts,quarantine,+knowledge_graph"
TABLES = (
    "tables/raw_interactions",
    "tables/item_catalog",
    "tables/coengagement_edges",
    "tables/knowledge_graph/nodes",
    "tables/knowledge_graph/edges",
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with standalone_cluster(tmp_path_factory.mktemp("spark-cluster")) as running:
        yield running


def test_ingest_and_graph_on_a_standalone_cluster(cluster, materialized_lake, tmp_path):
    lake, home = tmp_path / "lake", tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "COGRAPH_LAKE_ROOT": str(lake),
        "COGRAPH_SPARK_MASTER": cluster.master_url,
        "COGRAPH_SPARK_DRIVER_MEMORY": "1g",
    }
    config = {"ops": {"raw_tables": {"config": {"synthetic": SMALL.model_dump()}}}}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "asset", "materialize",
         "-m", "orchestration.definitions", "--select", SELECTION,
         "--config-json", json.dumps(config)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # the run's Spark ran on the cluster (the master's log, not its JSON state: an app the
    # driver has just unregistered can be in neither of the JSON's app lists)
    master = cluster.master_log.read_text()
    assert master.count("Registered app cograph") == 1
    assert "Launching executor app-" in master

    here, there = recorded(lake), recorded(materialized_lake.lake)
    for table in TABLES:
        assert_same_rows(
            table,
            table_at(lake, table, here[table]),
            table_at(materialized_lake.lake, table, there[table]),
        )
