"""The whole asset graph through dagster.materialize on a small synthetic lake."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from deltalake import DeltaTable

from assets.model import TrainConfig, TransEConfig
from assets.raw import IngestConfig, SyntheticConfig
from assets.shards import HaspConfig
from orchestration.definitions import ASSETS, CHECKS, defs, lake_resources
from orchestration.delta_tables import table_rows
from orchestration.resources import LakeResource, SparkResource
from tests.conftest import TEST_SPARK
from training.checkpoint import load_model_set
from training.shard_store import open_shards

SMALL = SyntheticConfig(n_users=300, n_items=400, n_interactions=8_000, seed=11)
ISSUE_ASSETS = {
    "raw_interactions", "item_catalog", "item_concepts", "quarantine",
    "coengagement_edges", "semantic_triples", "knowledge_graph", "graph_profile",
    "hasp_shards", "concept_pretraining", "gnn_checkpoint", "evaluation_split",
    "entity_embeddings", "embedding_matrix", "embedding_evaluation", "ann_index",
    "batch_updates",
}  # fmt: skip


def resources(lake: Path) -> dict[str, object]:
    spark = SparkResource(
        master=TEST_SPARK.master,
        driver_memory=TEST_SPARK.driver_memory,
        shuffle_partitions=TEST_SPARK.shuffle_partitions,
    )
    return lake_resources(spark, LakeResource(root=str(lake)))


def run(lake: Path, ingest: IngestConfig, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    with pytest.MonkeyPatch.context() as mp:
        # two epochs of training are not meant to beat ItemCF: the gate's own test is in
        # tests/training/test_protocol.py; here it must let the wiring through
        mp.setenv("COGRAPH_GATE_MARGIN", "1.0")
        return _materialize(lake, ingest, raise_on_error)


def _materialize(
    lake: Path, ingest: IngestConfig, raise_on_error: bool
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*ASSETS, *CHECKS],
        resources=resources(lake),
        run_config=dg.RunConfig(
            ops={
                "raw_tables": ingest,
                "hasp_shards": HaspConfig(memory_budget_mb=4),
                "concept_pretraining": TransEConfig(dim=16, epochs=3),
                "gnn_checkpoint": TrainConfig(
                    dim=16, epochs=2, models=["semantic", "sage", "deepwalk"]
                ),
            }
        ),
        raise_on_error=raise_on_error,
    )


def versions(lake: Path) -> dict[str, int]:
    return {
        str(p.parent.relative_to(lake)): DeltaTable(str(p.parent)).version()
        for p in lake.rglob("_delta_log")
    }


def test_definitions_load():
    assert {k.to_user_string() for k in defs.resolve_all_asset_keys()} == ISSUE_ASSETS


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lake")


@pytest.fixture(scope="module")
def first_run(lake) -> dg.ExecuteInProcessResult:
    return run(lake, IngestConfig(synthetic=SMALL))


def test_materializes_every_asset_with_metadata(first_run, lake):
    assert first_run.success
    materialized = {
        m.asset_key.to_user_string() for m in first_run.get_asset_materialization_events()
    }
    assert materialized == ISSUE_ASSETS - {"batch_updates"}  # the inbox is empty
    checks = first_run.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks)

    def meta(asset: str) -> dict:
        (event,) = [
            e
            for e in first_run.get_asset_materialization_events()
            if e.asset_key.to_user_string() == asset
        ]
        return {k: v.value for k, v in event.materialization.metadata.items()}

    raw = meta("raw_interactions")
    assert (
        raw["rows"] == raw["rows_clean"] == SMALL.n_interactions - 8
    )  # 0.1% corrupt rows quarantined
    assert raw["delta_version"] == 0 and raw["write_seconds"] > 0 and raw["write_peak_rss_mb"] > 0
    assert meta("quarantine")["rows_quarantined"] == 8
    kg = meta("knowledge_graph")
    assert kg["entities"] == SMALL.n_items
    assert set(kg["nodes_by_type"]) == {"entity", "genre", "tag", "creator"}
    assert 0.15 <= kg["cold_start_share"] < 0.5  # the cold items at least, not most of the graph
    assert kg["nodes/rows"] == sum(kg["nodes_by_type"].values())
    assert "data:image/png;base64" in kg["eel_degree_distribution"]
    assert meta("graph_profile")["components"] >= 1
    assert meta("coengagement_edges")["edges"] == meta("coengagement_edges")["rows"] > 0

    hasp = meta("hasp_shards")
    assert hasp["n_shards"] >= 2 and hasp["cut_eel_fraction"] < hasp["random_cut_eel_fraction"]
    assert hasp["max_estimated_mb"] <= 4
    shard_set = open_shards(Path(hasp["path"]))
    entities = sum(shard_set.load(k)["entity"].num_nodes for k in range(len(shard_set)))
    assert entities == SMALL.n_items

    models = load_model_set(Path(meta("gnn_checkpoint")["path"]))
    assert models.primary == "semantic" and set(models.checkpoints) == {"semantic", "sage"}
    assert models.tables["deepwalk"].embeddings.shape == (SMALL.n_items, 16)
    ckpt = models.best
    assert ckpt.config.num_entities == SMALL.n_items and len(ckpt.result.curve) == 2
    assert ckpt.lineage["hasp_shards"] == hasp["path"]
    assert ckpt.id_map.num_rows == kg["nodes/rows"]
    assert meta("concept_pretraining")["filtered_mrr"] > 0
    table = meta("gnn_checkpoint")["validation_map_at_10"]
    for name in ("semantic", "sage", "deepwalk", "itemcf", "concepts", "blend"):
        assert f"| {name} |" in table

    edges = DeltaTable(str(lake / "tables/knowledge_graph/edges"))
    assert edges.version() == 0 and edges.history()[0]["operation"] == "CREATE TABLE"


def test_rematerialize_adds_one_version_per_table(first_run, lake):
    before = versions(lake)
    assert run(lake, IngestConfig(synthetic=SMALL)).success
    after = versions(lake)
    assert after.keys() == before.keys()
    assert all(after[t] == before[t] + 1 for t in before)
    quarantine = DeltaTable(str(lake / "tables/quarantine"))  # appended, not replaced
    assert table_rows(quarantine) == 2 * 8


def test_bad_input_over_the_limit_fails_and_changes_nothing(first_run, lake):
    before = versions(lake)
    broken = SMALL.model_copy(update={"bad_row_share": 0.2})
    result = run(
        lake, IngestConfig(synthetic=broken, max_quarantine_share=0.05), raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "Rejected share above max_quarantine_share=0.05" in str(
        failure.event_specific_data.error
    )
    assert versions(lake) == before
