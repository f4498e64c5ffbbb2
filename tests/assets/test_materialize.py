"""The whole asset graph through dagster.materialize on a small synthetic lake."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from deltalake import DeltaTable, write_deltalake

from assets.raw import IngestConfig
from bench.quality import lake_inputs, strict_cold_ceiling, topic_ceiling
from orchestration.definitions import defs
from storage.delta_tables import table_rows
from storage.lake_log import LakeLog
from storage.layout import LakeLayout
from storage.versions import latest
from tests.assets.lakes import SMALL, lake_copy, recorded, run, versions
from training.checkpoint import load_model_set
from training.evaluation import STRICT
from training.evaluation import load_report as load_evaluation
from training.shard_store import open_shards

CROSS_DOMAIN_ASSETS = {
    "user_item_edges", "cross_domain_walk_models", "target_only_encoders",
    "cross_domain_evaluation",
}  # fmt: skip
E2E_ASSETS = {"e2e_ranker"}
NEURAL_ASSETS = {"relevance_model"}
ISSUE_ASSETS = {
    "raw_interactions", "item_catalog", "item_concepts", "quarantine",
    "coengagement_edges", "semantic_triples", "knowledge_graph", "graph_profile",
    "hasp_shards", "concept_pretraining", "gnn_checkpoint", "evaluation_split",
    "entity_embeddings", "embedding_matrix", "embedding_evaluation", "ann_index",
    "batch_updates", *CROSS_DOMAIN_ASSETS, *E2E_ASSETS, *NEURAL_ASSETS,
}  # fmt: skip


def test_definitions_load():
    assert {k.to_user_string() for k in defs.resolve_all_asset_keys()} == ISSUE_ASSETS


@pytest.fixture(scope="module")
def first_run(materialized_lake) -> dg.ExecuteInProcessResult:
    return materialized_lake.result


@pytest.fixture(scope="module")
def lake(materialized_lake, tmp_path_factory) -> Path:
    """A copy of the materialized lake, for the tests that change it."""
    return lake_copy(materialized_lake.lake, tmp_path_factory.mktemp("rematerialize"))


def test_materializes_every_asset_with_metadata(first_run, materialized_lake):
    lake = materialized_lake.lake
    assert first_run.success
    materialized = {
        m.asset_key.to_user_string() for m in first_run.get_asset_materialization_events()
    }
    # the inbox is empty; the cross-domain group is cross_domain_refresh's (test_cross_domain),
    # the e2e group e2e_refresh's (test_e2e)
    opt_in = CROSS_DOMAIN_ASSETS | E2E_ASSETS | NEURAL_ASSETS
    assert materialized == ISSUE_ASSETS - {"batch_updates"} - opt_in
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
    assert "data:image/png;base64" in kg["plot_eel_degrees"]
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
    ckpt = models.primary_checkpoint
    assert ckpt.config.num_entities == SMALL.n_items and len(ckpt.result.curve) == 2
    assert ckpt.lineage["hasp_shards"] == hasp["path"]
    assert ckpt.id_map.num_rows == kg["nodes/rows"]
    assert meta("concept_pretraining")["filtered_mrr"] > 0
    table = meta("gnn_checkpoint")["validation_map_at_10"]
    for name in ("semantic", "sage", "deepwalk", "itemcf", "concepts", "blend"):
        assert f"| {name} |" in table

    evaluation = meta("embedding_evaluation")
    lo, hi = (float(x) for x in evaluation["map_at_10_95%_interval"].strip("[]").split(","))
    assert lo <= evaluation["map_at_10"] <= hi and 0 < evaluation["queries"] <= 2000
    index = meta("ann_index")
    shortfall = index["target_recall_at_10"] - index["recall_at_10"]
    assert index["recall_shortfall"] == pytest.approx(max(0.0, shortfall), abs=1e-4)

    edges = DeltaTable(str(LakeLayout(lake).table("knowledge_graph/edges")))
    assert edges.version() == 0 and edges.history()[0]["operation"] == "CREATE TABLE"


def test_the_demo_reports_what_its_data_allows_new_items(materialized_lake):
    lake = materialized_lake.lake
    report = load_evaluation(latest(LakeLayout(lake).artifact("embedding_evaluation")))
    inputs = lake_inputs(lake)
    ceiling = topic_ceiling(inputs, IngestConfig(synthetic=SMALL))
    # knowing each new item's hidden topic beats ranking every new item by popularity
    assert ceiling["exact"] > report.value("popularity", STRICT)
    text = strict_cold_ceiling(inputs, IngestConfig(synthetic=SMALL), report)
    assert f"| {ceiling['training']:.4f} |" in text


def test_rematerialize_same_input_adds_no_rows(first_run, lake):
    """The raw tables accumulate by batch: the same input again is the same batch, so
    they stay as they are, and everything downstream is rebuilt from them, in the schema
    of the code that rebuilds it (here: graph nodes from before they had a domain)."""
    nodes = LakeLayout(lake).table("knowledge_graph/nodes")
    old = DeltaTable(str(nodes)).to_pyarrow_table().drop_columns(["domain"])
    write_deltalake(str(nodes), old, mode="overwrite", schema_mode="overwrite")
    LakeLog(LakeLayout(lake).tables).record(  # what readers see: the old graph
        {"knowledge_graph/nodes": DeltaTable(str(nodes)).version()}, unit="test", run_id="old"
    )
    before = versions(lake)
    assert run(lake, IngestConfig(synthetic=SMALL)).success
    assert "domain" in DeltaTable(str(nodes)).schema().to_arrow().names
    after = versions(lake)
    assert after.keys() == before.keys()
    raw = {"tables/raw_interactions", "tables/item_catalog", "tables/item_concepts"}
    assert all(after[t] == before[t] for t in raw | {"tables/quarantine"})
    assert all(after[t] == before[t] + 1 for t in set(before) - raw - {"tables/quarantine"})
    quarantine = DeltaTable(str(LakeLayout(lake).table("quarantine")))  # not quarantined twice
    assert table_rows(quarantine) == 8
    assert recorded(lake) == after


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
