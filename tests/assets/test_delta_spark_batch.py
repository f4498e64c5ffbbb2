"""An incremental batch that Spark applies, committed by delta-spark (its writer and its
MERGE), leaves the same tables, at the same versions, as the offline path (Parquet
committed by deltalake)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
from deltalake import DeltaTable

from orchestration.definitions import ASSETS, CHECKS
from storage.layout import LakeLayout
from storage.versions import latest
from tests.assets.lakes import assert_same_rows, lake_copy, recorded, resources, table_at
from tests.assets.test_incremental import tick, write_batch
from tests.conftest import require_jvm


def batch(lake: Path, engine: str) -> dg.ExecuteInProcessResult:
    entities = pq.read_table(latest(LakeLayout(lake).index) / "entities.parquet").to_pylist()
    write_batch(lake, next(e["item_id"] for e in entities if e["log_degree"] == 0), "0001")
    requests, _ = tick(lake, None)
    config = requests[0].run_config
    config["ops"]["batch_updates"]["config"]["small_batch_max_rows"] = 0  # Spark writes it
    return dg.materialize(
        [*ASSETS, *CHECKS],
        selection=["batch_updates"],
        resources=resources(lake, delta_engine=engine),
        run_config=config,
    )


def test_delta_spark_batch_equals_the_offline_batch(caps, materialized_lake, tmp_path):
    require_jvm(caps, "delta")
    lakes = {
        engine: lake_copy(materialized_lake.lake, tmp_path / engine)
        for engine in ("deltalake", "delta-spark")
    }
    for engine, lake in lakes.items():
        result = batch(lake, engine)
        assert result.success
        engines = {
            v.value
            for e in result.get_asset_materialization_events()
            for k, v in e.materialization.metadata.items()
            if k.endswith("engine")
        }
        assert engines <= {engine}
    offline, spark = (recorded(lakes[e]) for e in ("deltalake", "delta-spark"))
    assert spark == offline  # same tables, same versions recorded
    changed = [t for t, v in offline.items() if v != recorded(materialized_lake.lake).get(t)]
    assert {"tables/coengagement_edges", "tables/entity_embeddings"} <= set(changed)  # MERGEs
    for table in set(changed) - {"tables/batch_updates"}:  # its rows name the run
        version = offline[table]
        assert_same_rows(
            table,
            table_at(lakes["delta-spark"], table, version),
            table_at(lakes["deltalake"], table, version),
        )
    history = DeltaTable(str(LakeLayout(lakes["delta-spark"]).table("coengagement_edges"))).history(
        1
    )
    assert history[0]["operation"] == "MERGE"
