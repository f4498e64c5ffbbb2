"""Incremental updates between nightly retrains: new interactions and new items become
searchable with the current checkpoint, no retraining (``spark_jobs/incremental.py``,
``serving/refresh.py``)."""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from assets.embeddings import INFERENCE_BUDGET_MB
from assets.graph import CoengagementConfig, GraphConfig
from orchestration import delta_tables, inbox
from orchestration.measure import Measure
from orchestration.resources import LakeResource, SparkResource, env
from orchestration.versions import latest, publish
from serving.artifact import BUNDLE, load_bundle
from serving.build import concept_labels
from serving.refresh import INDUCTIVE_SINCE_RETRAIN, refresh_bundle
from spark_jobs import constants as C
from spark_jobs.coengagement import CoengagementParams
from spark_jobs.incremental import (
    is_items_file,
    new_edges,
    new_nodes,
    read_batch,
    recompute_pairs,
    touched_pairs,
)
from training.checkpoint import load_model_set
from training.device import pick_device
from training.embedding_store import embedding_rows
from training.inference import embed_graph
from training.kg_arrays import kg_arrays

GROUP = "incremental"


class BatchConfig(dg.Config):
    """``files`` empty: every file in the inbox whose batch is not recorded yet."""

    files: list[str] = []
    memory_budget_mb: int = INFERENCE_BUDGET_MB


@dg.asset(
    group_name=GROUP,
    deps=["ann_index"],
    output_required=False,  # a batch seen before writes nothing
    metadata={"write_mode": "append"},
)
def batch_updates(
    context: dg.AssetExecutionContext,
    config: BatchConfig,
    spark: SparkResource,
    lake: LakeResource,
) -> Iterator[dg.Output]:  # yields only when something was new
    """Append the batch's interactions and items, MERGE recomputed co-engagement pairs,
    extend the graph, embed new and affected entities inductively and publish a new index
    version; one log row per file. Every table change is its own Delta version, and the
    index moves only after the tables did."""
    session, use_delta = spark.session, spark.capabilities.delta
    tables = lake.path("tables")

    def read(name: str) -> DataFrame:
        return delta_tables.read_table(session, tables / name, use_delta_spark=use_delta)

    inbox_dir = lake.path("inbox")
    files = [Path(f) for f in config.files] or inbox.candidates(inbox_dir)
    seen = {r[0] for r in read("raw_interactions").select(C.BATCH_ID).distinct().collect()}
    if delta_tables.is_table(tables / "batch_updates"):
        seen |= {r[0] for r in read("batch_updates").select(C.BATCH_ID).collect()}
    batches = {f: inbox.batch_id(f) for f in files if f.exists()}
    fresh = {f: b for f, b in batches.items() if b not in seen}
    if not fresh:
        context.log.info(f"Nothing new in {[f.name for f in files]}: every batch was seen")
        return
    with Measure() as m:
        rows = read_batch(
            session,
            fresh,
            read("raw_interactions"),
            read("item_catalog"),
            read("item_concepts"),
            read("quarantine"),
        )
        batch = rows.interactions.persist()
        counts = {
            "interactions": batch.count(),
            "new_items": rows.catalog.count(),
            "new_concepts": rows.concepts.count(),
            "quarantined": rows.quarantine.count(),
        }
        custom = {"dagster_run_id": context.run_id, "asset": "batch_updates"}

        def append(df: DataFrame, name: str) -> None:
            delta_tables.write_table(
                df, tables / name, use_delta_spark=use_delta, mode="append", custom_metadata=custom
            )
            context.log_event(dg.AssetMaterialization(name, metadata={"incremental": True}))

        for df, name, key in (
            (rows.quarantine, "quarantine", "quarantined"),
            (rows.catalog, "item_catalog", "new_items"),
            (rows.concepts, "item_concepts", "new_concepts"),
            (batch, "raw_interactions", "interactions"),
        ):
            if counts[key]:  # an empty append would still be a version
                append(df, name)
        version = latest(lake.path("ann_index")).name
        if counts["interactions"] or counts["new_items"]:
            update = extend_and_publish(
                context, spark, lake, batch, rows.catalog, rows.concepts, config
            )
            counts.update(update.counts)
            version = update.index_version
    log = session.createDataFrame(
        [(b, str(f), "items" if is_items_file(f) else "interactions") for f, b in fresh.items()],
        [C.BATCH_ID, "file", "kind"],
    ).select(
        C.BATCH_ID,
        "file",
        "kind",
        F.lit(context.run_id).alias("run_id"),
        F.lit(version).alias("index_version"),
        F.lit(json.dumps(counts)).alias("counts"),
        F.current_timestamp().alias("ts"),
    )
    batch.unpersist()  # the session outlives the run
    context.log.info(f"Batch {sorted(fresh.values())}: {counts}")
    yield dg.Output(
        log,
        metadata={
            **{k: int(v) for k, v in counts.items()},
            "files": dg.MetadataValue.json([str(f) for f in fresh]),
            "index_version": version,
            **m.metadata("update"),
        },
    )


@dataclass(frozen=True)
class Published:
    counts: dict[str, int]
    index_version: str


def extend_and_publish(
    context: dg.AssetExecutionContext,
    spark: SparkResource,
    lake: LakeResource,
    batch: DataFrame,
    new_catalog: DataFrame,
    new_concepts: DataFrame,
    config: BatchConfig,
) -> Published:
    """After the batch's rows are appended: MERGE recomputed co-engagement pairs, extend
    the graph, embed new and affected entities and publish the next index version."""
    session, use_delta = spark.session, spark.capabilities.delta
    tables = lake.path("tables")
    custom = {"dagster_run_id": context.run_id, "asset": "batch_updates"}
    counts: dict[str, int] = {}

    def read(name: str) -> DataFrame:
        return delta_tables.read_table(session, tables / name, use_delta_spark=use_delta)

    params = CoengagementParams(**CoengagementConfig().model_dump())
    interactions = read("raw_interactions")
    pairs = recompute_pairs(interactions, touched_pairs(batch, interactions, params), params)
    pairs = pairs.persist()
    counts["pairs_merged"] = pairs.count()
    if counts["pairs_merged"]:
        delta_tables.merge_table(
            pairs, tables / "coengagement_edges", [C.SRC, C.DST], use_delta_spark=use_delta
        )
        context.log_event(dg.AssetMaterialization("coengagement_edges"))

    nodes, edges = read("knowledge_graph/nodes"), read("knowledge_graph/edges")
    added_nodes = new_nodes(nodes, new_catalog, new_concepts).persist()
    all_nodes = nodes.unionByName(added_nodes)
    min_support = GraphConfig().min_support
    added_edges = new_edges(all_nodes, edges, pairs, new_concepts, min_support).persist()
    counts["new_nodes"], counts["new_edges"] = added_nodes.count(), added_edges.count()
    for name, df in (("nodes", added_nodes), ("edges", added_edges)):
        delta_tables.write_table(
            df,
            tables / "knowledge_graph" / name,
            use_delta_spark=use_delta,
            mode="append",
            custom_metadata=custom,
        )
    context.log_event(dg.AssetMaterialization("knowledge_graph"))

    node_table, edge_table = all_nodes.toArrow(), read("knowledge_graph/edges").toArrow()
    kg = kg_arrays(node_table, edge_table)
    checkpoints = latest(lake.path("gnn_checkpoint"))
    models = load_model_set(checkpoints)
    embedded = embed_graph(models.best, kg, config.memory_budget_mb, pick_device())
    new_entities = added_nodes.where(F.col(C.NODE_TYPE) == C.ENTITY).toArrow()
    touched = added_edges.where(F.col(C.SRC_TYPE) == C.ENTITY).select(C.SRC).toArrow()
    affected = np.unique(
        np.concatenate(
            [
                new_entities.column(C.NODE_ID).to_numpy(),
                touched.column(C.SRC).to_numpy(),
            ]
        )
    ).astype(np.int64)
    counts["embedded"] = len(affected)
    entities = node_table.filter(pc.equal(node_table.column(C.NODE_TYPE), C.ENTITY))
    entities = entities.select([C.NODE_ID, C.KEY]).rename_columns(["entity_id", "item_id"])
    bundle = refresh_bundle(
        load_bundle(latest(lake.path("ann_index"))),
        entities,
        embedded.vectors.numpy(),
        embedded.log_degree.numpy(),
        affected,
        new_entities.num_rows,
        concept_labels(node_table, edge_table),
        context.run_id,
    )
    update = session.createDataFrame(
        embedding_rows(
            affected,
            entities.sort_by("entity_id").column("item_id").take(pa.array(affected)),
            checkpoints.name,
            embedded.vectors.numpy()[affected],
            embedded.log_degree.numpy()[affected],
            embedded.inductive.numpy()[affected],
        )
    )
    delta_tables.merge_table(
        update, tables / "entity_embeddings", ["entity_id"], use_delta_spark=use_delta
    )
    context.log_event(dg.AssetMaterialization("entity_embeddings"))
    folder = publish(bundle, lake.path("ann_index"), context.run_id)
    context.log_event(dg.AssetMaterialization("ann_index", metadata={"path": str(folder)}))
    for df in (pairs, added_nodes, added_edges):  # the session outlives the run
        df.unpersist()
    return Published(counts, bundle.version)


@dg.asset_check(asset=batch_updates)
def inductive_drift(lake: LakeResource) -> dg.AssetCheckResult:
    """Warns when the share of served entities embedded inductively since the last
    retrain passes ``COGRAPH_DRIFT_MAX_SHARE``: time for the nightly retrain, or an early one."""
    limit = float(env("DRIFT_MAX_SHARE", "0.1"))
    meta = json.loads((latest(lake.path("ann_index")) / BUNDLE).read_text())
    since = int(meta.get(INDUCTIVE_SINCE_RETRAIN, 0))
    entities = int(meta.get("entities") or 1)
    share = since / max(entities, 1)
    return dg.AssetCheckResult(
        passed=share <= limit,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{since} of {entities} entities ({share:.1%}) embedded since the last "
        f"retrain; the limit is {limit:.0%}",
        metadata={"inductive_since_retrain": since, "share": share, "limit": limit},
    )
