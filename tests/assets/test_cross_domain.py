"""The cross-domain lineage on a small two-domain lake: the graph never sees the held-out
rows, every model is measured on them, and the service recommends live items to a
music-only history."""

from __future__ import annotations

import asyncio
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from deltalake import DeltaTable

from assets.raw import IngestConfig
from orchestration.definitions import ASSETS, CHECKS
from orchestration.summary import cross_domain_headline
from serving.artifact import load_bundle
from serving.retrieval import nearest
from spark_jobs import constants as C
from spark_jobs import domain_holdout as H
from storage.layout import LakeLayout
from storage.versions import latest
from tests.assets.lakes import SMALL, lake_copy, resources, run
from training.cross_domain import COLD_USERS, EXPOSURE, NEW_ITEMS, load_report

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
    assert {"semantic", "sage", "deepwalk", "metapath2vec", "metapath2vec_target_only"} <= scorers
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
