"""The incremental flow on a materialized synthetic lake: inbox sensor, run, searchable."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from orchestration.definitions import ASSETS, CHECKS
from orchestration.sensors import inbox_sensor
from serving.artifact import load_bundle
from spark_jobs.incremental_batch import STEPS
from storage.layout import LakeLayout
from storage.versions import latest
from tests.assets.lakes import lake_copy, resources, versions

NEW = ["new-item-a", "new-item-b", "new-item-c"]


@pytest.fixture(scope="module")
def lake(materialized_lake, tmp_path_factory) -> Path:
    return lake_copy(materialized_lake.lake, tmp_path_factory.mktemp("incremental"))


def tick(lake: Path, cursor: str | None) -> tuple[list[dg.RunRequest], str | None]:
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"lake": resources(lake)["lake"]}
        )
        result = inbox_sensor(context)
        requests = [result] if isinstance(result, dg.RunRequest) else []
        return requests, context.cursor


def execute(lake: Path, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*ASSETS, *CHECKS],
        selection=["batch_updates"],
        resources=resources(lake),
        run_config=request.run_config,
    )


def concepts_of(lake: Path, item: str) -> list[tuple[str, str]]:
    table = pq.read_table(latest(LakeLayout(lake).index) / "concepts.parquet")
    entities = pq.read_table(latest(LakeLayout(lake).index) / "entities.parquet").to_pylist()
    entity = next(e["entity_id"] for e in entities if e["item_id"] == item)
    labels = [
        c
        for e, c in zip(table["entity_id"].to_pylist(), table["concept"].to_pylist(), strict=True)
        if e == entity
    ]
    return [tuple(label.split(":", 1)) for label in labels]


def write_batch(lake: Path, template: str, name: str) -> None:
    inbox = LakeLayout(lake).inbox
    inbox.mkdir(exist_ok=True)
    concepts = concepts_of(lake, template)
    items = pa.table(
        {
            "item_id": [i for i in NEW for _ in concepts],
            "relation": [r for _ in NEW for r, _ in concepts],
            "concept": [c for _ in NEW for _, c in concepts],
            "title": [f"title of {i}" for i in NEW for _ in concepts],
        }
    )
    pacsv.write_csv(items, inbox / f"items-{name}.csv")
    users = [f"u{i}" for i in range(40)]
    old = pq.read_table(latest(LakeLayout(lake).index) / "entities.parquet")["item_id"].to_pylist()
    rng = np.random.default_rng(0)
    picks = rng.choice(old[:50], size=(40, 3))
    interactions = pa.table(
        {
            "user_id": [u for u in users for _ in range(3)],
            "item_id": [str(i) for row in picks for i in row],
            "ts": [str(1_700_000_000 + k) for k in range(120)],
        }
    )
    pq.write_table(interactions, inbox / f"interactions-{name}.parquet")
    for f in (f"items-{name}.csv", f"interactions-{name}.parquet"):
        (inbox / f"{f}.done").touch()


def test_batch_lands_and_becomes_searchable(lake):
    # the template: an item nobody engaged yet, embedded from its concepts as the new
    # items will be
    entities = pq.read_table(latest(LakeLayout(lake).index) / "entities.parquet").to_pylist()
    template = next(e["item_id"] for e in entities if e["log_degree"] == 0)
    write_batch(lake, template, "0001")
    before = versions(lake)
    requests, cursor = tick(lake, None)
    assert len(requests) == 1
    assert sorted(
        Path(f).name for f in requests[0].run_config["ops"]["batch_updates"]["config"]["files"]
    ) == [
        "interactions-0001.parquet",
        "items-0001.csv",
    ]
    result = execute(lake, requests[0])
    assert result.success
    after = versions(lake)
    for table in (
        "tables/raw_interactions",
        "tables/item_catalog",
        "tables/knowledge_graph/nodes",
        "tables/entity_embeddings",
    ):
        assert after[table] == before[table] + 1, table
    meta = result.get_asset_materialization_events()[-1].materialization.metadata
    assert meta["new_items"].value == 3 and meta["interactions"].value == 120
    # the upstream assets' pages show what the batch wrote into them
    upstream = {
        e.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()[:-1]
    }
    assert upstream["raw_interactions"]["rows_added"].value == 120
    assert upstream["raw_interactions"]["delta_version"].value == after["tables/raw_interactions"]
    assert upstream["item_catalog"]["rows_added"].value == 3
    assert upstream["knowledge_graph"]["nodes_rows_added"].value == meta["new_nodes"].value
    assert upstream["ann_index"]["index_version"].value == meta["index_version"].value
    steps = meta["step_seconds"].value  # every step ran in this run (recording takes ~1 ms)
    assert list(steps) == list(STEPS) and all(seconds >= 0 for seconds in steps.values())
    assert steps["appended"] > 0 and steps["embedded"] > 0

    bundle = load_bundle(latest(LakeLayout(lake).index))
    ids = bundle.entity_ids()
    new_ids = [ids[i] for i in NEW]
    assert all(bundle.index.contains(e) for e in new_ids)
    # the new items share every concept of the template, so the model embeds them alike
    # (same inputs: concepts only): one vector, stored in one index row, so any search that
    # finds one finds all. The template's vector is the one the full refresh gave it: the
    # batch moved its concept neighbours' walk factors a little, not its own
    vectors = bundle.vectors[new_ids]
    np.testing.assert_allclose(vectors, vectors[[0, 0, 0]], atol=1e-5)
    (row,) = {bundle.index.entity_row[e] for e in new_ids}
    members = bundle.index.members[row]
    np.testing.assert_allclose(bundle.vectors[members], vectors[[0] * len(members)], atol=1e-5)
    template_vector = bundle.vectors[ids[template]]
    cosine = (
        vectors[0] @ template_vector / np.linalg.norm(vectors[0]) / np.linalg.norm(template_vector)
    )
    assert cosine > 0.999
    _, found = bundle.index.search(bundle.query(np.array([ids[template], new_ids[0]])), 10)
    # nearly the same neighbours
    assert (found >= 0).all() and len(set(found[0]) & set(found[1])) >= 8
    # and an existing item's neighbour list now holds the new items wherever it holds
    # the template (the popularity prior keeps items without history low for popular
    # queries; a query from the template's own concepts finds them)
    concepts_query = bundle.query(np.array([ids[template]]))
    _, mine = bundle.index.search(concepts_query, len(ids))
    listed = mine[0].tolist()
    if ids[template] in listed:
        assert set(new_ids) <= set(listed)

    # the same file again: the sensor does not hand it out, and a forced run changes nothing
    requests, cursor = tick(lake, cursor)
    assert requests == []
    again = versions(lake)
    assert execute(lake, dg.RunRequest(run_config=result.dagster_run.run_config)).success
    assert versions(lake) == again


def test_corrupt_file_is_quarantined_and_the_next_goes_through(lake):
    inbox = LakeLayout(lake).inbox
    inbox.mkdir(exist_ok=True)
    (inbox / "interactions-bad.parquet").write_bytes(b"this is not parquet")
    (inbox / "interactions-bad.parquet.done").touch()
    requests, cursor = tick(lake, json.dumps({"seen": {}, "done": []}))
    assert execute(lake, requests[0]).success  # earlier files were recorded: only this one
    files = DeltaTable(str(LakeLayout(lake).table("quarantine"))).file_uris()
    quarantine = ds.dataset(files).to_table()
    reasons = [r for r in quarantine["reason"].to_pylist() if r.startswith("unreadable file")]
    assert reasons
    good = pa.table(
        {"user_id": ["z1", "z1"], "item_id": [NEW[0], NEW[1]], "ts": ["1700000500", "1700000600"]}
    )
    pq.write_table(good, inbox / "interactions-0002.parquet")
    (inbox / "interactions-0002.parquet.done").touch()
    requests, _ = tick(lake, cursor)
    result = execute(lake, requests[0])
    assert result.success
    meta = result.get_asset_materialization_events()[-1].materialization.metadata
    assert meta["interactions"].value == 2


def test_batches_follow_the_graph_config_the_nightly_build_recorded(materialized_lake, tmp_path):
    """A nightly build with a non-default window and minimum support records them in its
    commits; the incremental batch's settings read them back instead of the defaults."""
    import logging

    from assets.graph import CoengagementConfig, GraphConfig
    from assets.incremental import BatchConfig, batch_settings
    from resources.io_manager import lake_tables

    lake = lake_copy(materialized_lake.lake, tmp_path)
    res = resources(lake)
    before = batch_settings(
        lake_tables(res["lake"], res["spark"]), BatchConfig(), res["lake"], logging.getLogger()
    )
    assert (before.coengagement.window_days, before.min_support) == (30, 2)  # the defaults
    dg.materialize(
        [*ASSETS, *CHECKS],
        selection=["coengagement_edges", "knowledge_graph"],
        resources=res,
        run_config=dg.RunConfig(
            ops={
                "coengagement_edges": CoengagementConfig(window_days=7, min_support=3),
                "knowledge_graph": GraphConfig(min_support=3),
            }
        ),
    )
    after = batch_settings(
        lake_tables(res["lake"], res["spark"]), BatchConfig(), res["lake"], logging.getLogger()
    )
    assert after.coengagement.window_days == 7 and after.coengagement.min_support == 3
    assert after.min_support == 3
