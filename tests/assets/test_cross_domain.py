"""The cross-domain lineage on a small two-domain lake: the graph never sees the held-out
rows, every model is measured on them, and the service recommends live items to a
music-only history."""

from __future__ import annotations

import asyncio
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from assets.raw import IngestConfig
from bench.cross_domain import ceiling_paragraph, topic_ceiling
from orchestration.definitions import ASSETS, CHECKS
from orchestration.summary import cross_domain_headline
from resources.io_manager import lake_tables
from serving.artifact import load_bundle
from serving.retrieval import nearest
from spark_jobs import constants as C
from spark_jobs import domain_holdout as H
from storage.layout import LakeLayout
from storage.versions import latest
from tests.assets.lakes import SMALL, lake_copy, resources, run
from training.checkpoint import load_model_set
from training.cross_domain import COLD_USERS, EXPOSURE, NEW_ITEMS, POPULAR, load_report
from training.shard_graph import CROSS_DOMAIN_EEL

TWO_DOMAINS = SMALL.model_copy(update={"cross_domain": True})


@pytest.fixture(scope="module")
def cross_domain_lake(tmp_path_factory) -> tuple[Path, dg.ExecuteInProcessResult]:
    lake = tmp_path_factory.mktemp("cross_domain")
    return lake, run(lake, IngestConfig(synthetic=TWO_DOMAINS), target="live")


def _table(lake: Path, name: str):
    return DeltaTable(str(LakeLayout(lake).table(name))).to_pandas()


def test_the_graph_and_user_item_edges_leave_the_held_out_rows_out(spark, cross_domain_lake):
    lake, result = cross_domain_lake
    assert result.success
    interactions = spark.createDataFrame(_table(lake, "raw_interactions"))
    catalog = spark.createDataFrame(_table(lake, "item_catalog"))
    holdout = H.DomainHoldout("live")  # the resource's defaults
    marked = H.marked(interactions, catalog, holdout).toPandas()
    held = marked[marked[H.HELD_OUT]]
    assert len(held) > 0 and held[C.DOMAIN].eq("live").all()
    (event,) = [
        e for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "coengagement_edges"
    ]  # fmt: skip
    assert event.materialization.metadata["cross_domain_held_out_rows"].value == len(held)
    # a new item's rows are all held out: it has no co-engagement edge and no user edge
    new = set(held.loc[held[H.NEW_ITEM], C.ITEM_ID])
    edges = _table(lake, "coengagement_edges")
    assert new and not new & (set(edges[C.SRC]) | set(edges[C.DST]))
    user_items = _table(lake, "user_item_edges")
    pairs = set(zip(user_items[C.USER_ID], user_items[C.ITEM_ID], strict=True))
    assert not pairs & set(zip(held[C.USER_ID], held[C.ITEM_ID], strict=True))
    assert set(user_items[C.DOMAIN]) == {"music", "live"}


def test_every_model_is_measured_and_the_targets_are_checked(cross_domain_lake):
    lake, result = cross_domain_lake
    report = load_report(latest(LakeLayout(lake).artifact("cross_domain_evaluation")))
    assert not report.empty and report.target == "live"
    scorers = set(report.kinds)
    joint = {"semantic", "semantic_domain_eels", "sage", "deepwalk", "metapath2vec"}
    twins = {"metapath2vec_target_only", "semantic_target_only", "sage_target_only"}
    assert joint | twins <= scorers
    assert "semantic_domain_eels_target_only" not in scorers  # on one domain: the plain twin
    typed = load_model_set(latest(LakeLayout(lake).checkpoints)).checkpoints
    assert CROSS_DOMAIN_EEL in typed["semantic_domain_eels"].config.relations
    assert CROSS_DOMAIN_EEL not in typed["semantic"].config.relations
    assert {"popular_in_target", "cross_domain_itemcf", "popularity+concepts"} <= scorers
    for task in (COLD_USERS, NEW_ITEMS, EXPOSURE):
        assert report.counts[f"{task}_queries"] > 0
        values = [report.value(task, s) for s in scorers]
        assert all(0 <= v <= 1 for v in values), (task, values)
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    for name in ("cold_users_beat_popular", "cold_users_beat_target_only",
                 "new_items_beat_concepts"):  # fmt: skip
        assert "×" in checks[name].description  # measured, whatever the small lake gives
    # and `make demo-cross-domain`'s summary prints the three bars
    (line,) = cross_domain_headline(LakeLayout(lake))
    assert "target live" in line and line.count("(bar ") == 3


def test_a_music_history_gets_live_items_from_the_index(cross_domain_lake):
    lake, _ = cross_domain_lake
    bundle = load_bundle(latest(LakeLayout(lake).index))
    entities = bundle.entities.to_pandas()
    music = entities.loc[entities[C.DOMAIN] == "music", "entity_id"].to_numpy()[:5]

    async def search(queries: np.ndarray, k: int):
        return bundle.index.search(queries, k)

    live = set(entities.loc[entities[C.DOMAIN] == "live", "entity_id"])
    query = bundle.query(music, None).mean(0, keepdims=True)
    # the service's own filtered search: its neighbours are music, so it must search deeper
    [hits] = asyncio.run(nearest(search, query, [set(music.tolist())], 10, live.__contains__))
    assert len(hits) == 10 and {h.entity for h in hits} <= live


def test_the_generators_own_scorer_bounds_the_cold_user_and_new_item_tasks(cross_domain_lake):
    lake, _ = cross_domain_lake
    res = resources(lake, target="live")
    tables = lake_tables(res["lake"], res["spark"])
    ceiling = topic_ceiling(
        tables, res["spark"], res["cross_domain"], IngestConfig(synthetic=TWO_DOMAINS)
    )
    report = load_report(latest(LakeLayout(lake).artifact("cross_domain_evaluation")))
    # knowing the hidden topics beats popularity, and knowing the exact popularity too
    # does at least about as well
    assert ceiling[COLD_USERS]["training"] > report.value(COLD_USERS, POPULAR)
    assert ceiling[COLD_USERS]["exact"] > 0.9 * ceiling[COLD_USERS]["training"]
    assert ceiling[NEW_ITEMS]["training"] > report.value(NEW_ITEMS, POPULAR)
    text = ceiling_paragraph(ceiling, report)
    assert f"| {ceiling[NEW_ITEMS]['exact']:.4f} |" in text and "best joint model" in text


def test_cross_domain_assets_refuse_to_run_without_a_target(cross_domain_lake, tmp_path):
    lake = lake_copy(cross_domain_lake[0], tmp_path)
    result = dg.materialize(
        [*ASSETS, *CHECKS],
        selection=["user_item_edges"],
        resources=resources(lake),
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert "COGRAPH_CROSS_DOMAIN_TARGET" in failure.step_failure_data.error.message


def test_a_batch_keeps_the_held_out_rows_out_of_the_merged_pairs(
    spark, cross_domain_lake, tmp_path
):
    """Two new users engage the same two live items, one of them a cold user (held out of
    live): the pair's support grows by one, as the nightly build would count it."""
    lake = lake_copy(cross_domain_lake[0], tmp_path)
    holdout = H.DomainHoldout("live")
    candidates = spark.createDataFrame([(f"batch-user-{i}",) for i in range(100)], [C.USER_ID])
    chosen = H.chosen(C.USER_ID, H.COLD_USER, holdout.cold_user_share, holdout.seed)
    flags = {
        r[C.USER_ID]: r["c"] for r in candidates.select(C.USER_ID, chosen.alias("c")).collect()
    }
    cold, warm = next(u for u, c in flags.items() if c), next(u for u, c in flags.items() if not c)
    catalog = _table(lake, "item_catalog")
    edges = _table(lake, "coengagement_edges")
    live = set(catalog.loc[catalog[C.DOMAIN] == "live", C.ITEM_ID])
    linked = edges[edges[C.SRC].isin(live) & edges[C.DST].isin(live)].iloc[0]
    a, b, support = linked[C.SRC], linked[C.DST], int(linked[C.SUPPORT])
    inbox = LakeLayout(lake).inbox
    inbox.mkdir(exist_ok=True)
    ts = [str(1_760_000_000 + s) for s in (0, 60, 0, 60)]
    pq.write_table(
        pa.table({C.USER_ID: [cold, cold, warm, warm], C.ITEM_ID: [a, b, a, b], C.TS: ts}),
        inbox / "interactions-held.parquet",
    )
    (inbox / "interactions-held.parquet.done").touch()
    result = dg.materialize(
        [*ASSETS, *CHECKS],
        selection=["batch_updates"],
        resources=resources(lake, target="live"),
    )
    meta = result.get_asset_materialization_events()[-1].materialization.metadata
    assert meta["interactions"].value == 4 and meta["applied_by"].value == "spark"
    after = _table(lake, "coengagement_edges").set_index([C.SRC, C.DST])
    assert int(after.loc[(a, b), C.SUPPORT]) == support + 1
