"""Incremental updates between nightly retrains: new interactions and new items become
searchable with the current checkpoint, no retraining (``spark_jobs/incremental.py``,
``serving/refresh.py``)."""

import json
import logging
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import dagster as dg
from pydantic import Field

from assets.graph import CoengagementConfig, GraphConfig
from resources.cross_domain import CrossDomainResource
from resources.io_manager import lake_tables, recorded_config
from resources.measure import Measure
from resources.spark_lake import LakeResource, SparkResource
from serving.artifact import BUNDLE
from serving.refresh import INDUCTIVE_SINCE_RETRAIN, publish_refresh
from settings import config_field, current
from spark_jobs.coengagement import CoengagementParams
from spark_jobs.domain_holdout import DomainHoldout
from spark_jobs.incremental_batch import (
    LOG_TABLE,
    STEPS,
    TABLE_COUNTS,
    Applied,
    BatchSettings,
    apply_batch,
    pending_batches,
)
from storage import inbox
from storage.lake_transaction import LakeTables
from storage.versions import latest
from training.inference import embed_with_latest

GROUP = "incremental"


class BatchConfig(dg.Config):
    """``files`` empty: every file in the inbox whose batch is not recorded yet."""

    files: list[str] = Field(
        [], description="Inbox files to apply (empty: every file not applied yet)."
    )
    memory_budget_mb: int = config_field("inference_memory_budget_mb")
    encoding: str = config_field("input_encoding")
    small_batch_max_rows: int = config_field("small_batch_max_rows")


def batch_settings(
    tables: LakeTables,
    config: BatchConfig,
    lake: LakeResource,
    log: logging.Logger,
    holdout: DomainHoldout | None = None,
) -> BatchSettings:
    """The batch's settings, with the co-engagement and graph configs that the nightly
    build recorded in its tables, so that merged pairs and EELs follow its rules."""
    coengagement = recorded_config(tables, "coengagement_edges")
    graph = recorded_config(tables, "knowledge_graph/edges")
    if coengagement is None or graph is None:
        log.warning(
            "The graph tables recorded no config (written by an older version): "
            "this batch uses the default co-engagement and graph configs"
        )
    index_root = lake.layout.index
    return BatchSettings(
        coengagement=CoengagementParams(**CoengagementConfig(**(coengagement or {})).model_dump()),
        min_support=GraphConfig(**(graph or {})).min_support,
        index_root=index_root,
        embed=partial(embed_with_latest, lake.layout.checkpoints, config.memory_budget_mb),
        publish=partial(publish_refresh, index_root),
        encoding=config.encoding,
        small_batch_max_rows=config.small_batch_max_rows,
        holdout=holdout or DomainHoldout(),
    )


def upstream_events(applied: list[Applied]) -> list[dg.AssetMaterialization]:
    """What the batches wrote upstream, as events on those assets (the lineage graph can
    draw no edge back to them): per table the rows added and the Delta version it is at,
    and on ``ann_index`` the version published."""
    metadata: dict[str, dict] = {}
    for a in applied:
        for table in a.tables:
            asset, _, part = table.partition("/")
            if asset == LOG_TABLE:
                continue
            meta = metadata.setdefault(asset, {"incremental": True})
            prefix = f"{part}_" if part else ""
            added = f"{prefix}rows_added"
            meta[added] = meta.get(added, 0) + a.counts.get(TABLE_COUNTS[table], 0)
            meta[f"{prefix}delta_version"] = a.versions[table]
        if a.new_index:
            metadata["ann_index"] = {"incremental": True, "index_version": a.index_version}
    batches = sorted({b for a in applied for b in a.batches.values()})
    return [
        dg.AssetMaterialization(
            asset, description=f"Written by batch_updates for batches {batches}", metadata=meta
        )
        for asset, meta in sorted(metadata.items())
    ]


@dg.asset(
    group_name=GROUP,
    deps=["ann_index"],
    output_required=False,  # a batch seen before writes nothing
)
def batch_updates(
    context: dg.AssetExecutionContext,
    config: BatchConfig,
    spark: SparkResource,
    lake: LakeResource,
    cross_domain: CrossDomainResource,
) -> Iterator[dg.MaterializeResult]:  # yields only when something was new
    """Apply the inbox batch to the lake: append its rows, MERGE recomputed co-engagement
    pairs, extend the graph, embed new and affected entities inductively, log one row per
    file, then publish a new index version (``spark_jobs/incremental_batch.py``). A small
    batch runs in-process (Arrow, no Spark session); a large one with Spark.

    One writer at a time holds the lake. The batch is one unit: readers see all of it or
    none, a killed run resumes from its last finished step, and a batch is applied once.
    """
    tables = lake_tables(lake, spark)
    settings = batch_settings(tables, config, lake, context.log, cross_domain.holdout)
    files = [Path(f) for f in config.files] or inbox.candidates(lake.layout.inbox)
    with tables.log.writer_lease(lake.writer_lease_seconds), Measure() as m:
        work = pending_batches(tables, {f: inbox.batch_id(f) for f in files if f.exists()})
        session = partial(getattr, spark, "session")  # started only for a batch Spark applies
        applied = [
            apply_batch(session, tables, w, settings, context.run_id, context.log.info)
            for w in work
        ]
    if not applied:
        context.log.info(f"Nothing new in {[f.name for f in files]}: every batch was applied")
        return
    for event in upstream_events(applied):
        context.log_event(event)
    counts = {k: sum(a.counts.get(k, 0) for a in applied) for k in applied[-1].counts}
    context.log.info(f"Batches {[sorted(a.batches.values()) for a in applied]}: {counts}")
    yield dg.MaterializeResult(
        metadata={
            **counts,
            "files": dg.MetadataValue.json(sorted(f for a in applied for f in a.batches)),
            "resumed_from": dg.MetadataValue.json([a.resumed_from for a in applied]),
            "index_version": applied[-1].index_version,
            "applied_by": ", ".join(sorted({a.engine for a in applied})),  # arrow or spark
            # where the run's time went, summed over its batches
            "step_seconds": dg.MetadataValue.json(
                {s: round(sum(a.step_seconds.get(s, 0.0) for a in applied), 3) for s in STEPS}
            ),
            **m.metadata("update"),
        },
    )


@dg.asset_check(asset=batch_updates)
def inductive_drift(lake: LakeResource) -> dg.AssetCheckResult:
    """Warns when the share of served entities embedded inductively since the last
    retrain passes ``COGRAPH_DRIFT_MAX_SHARE``: time for the nightly retrain, or an early one."""
    limit = current().drift_max_share
    meta = json.loads((latest(lake.layout.index) / BUNDLE).read_text())
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
