"""The code location: assets by group, checks, jobs and resources for this deployment."""

from __future__ import annotations

import dagster as dg

from assets import (
    ann,
    cross_domain,
    e2e,
    embeddings,
    evaluation,
    graph,
    incremental,
    model,
    neural,
    raw,
    shards,
)
from orchestration.maintenance import lake_maintenance, weekly_lake_maintenance
from orchestration.sensors import INCREMENTAL_JOB, NEURAL_JOB, inbox_sensor, relevance_sensor
from resources.allocator import keep_freed_memory
from resources.cross_domain import CrossDomainResource
from resources.folder_io_manager import FolderIOManager
from resources.io_manager import DeltaIOManager
from resources.spark_lake import LakeResource, SparkResource
from settings import current

# the process that loads the code location materializes its assets: every run in it
# ranks and trains with large temporaries
keep_freed_memory(current().malloc_keep_mb)


def lake_resources(spark: SparkResource, lake: LakeResource) -> dict[str, object]:
    """The resources every deployment has, given its Spark and its lake."""
    return {
        "spark": spark,
        "lake": lake,
        "io_manager": DeltaIOManager(lake=lake, spark=spark),
        "folder_io_manager": FolderIOManager(lake=lake),
        "cross_domain": CrossDomainResource(),
    }


def local_resources() -> dict[str, object]:
    """One machine: Spark ``local[*]`` and a lake folder on local disk."""
    spark = SparkResource(driver_memory=current().spark_driver_memory or "4g")
    lake = LakeResource()
    return lake_resources(spark, lake)


def cluster_resources() -> dict[str, object]:
    """A Spark cluster and shared storage, both required from the environment."""
    spark = SparkResource(
        master=dg.EnvVar("COGRAPH_SPARK_MASTER"),
        driver_memory=current().spark_driver_memory or "8g",
    )
    lake = LakeResource(root=dg.EnvVar("COGRAPH_LAKE_ROOT"))
    return lake_resources(spark, lake)


RESOURCES_BY_DEPLOYMENT = {"local": local_resources, "cluster": cluster_resources}
# On one machine all steps share one process and so one SparkSession (a JVM per step
# would cost seconds each and gigabytes); a cluster deployment runs steps apart.
EXECUTOR_BY_DEPLOYMENT = {"local": dg.in_process_executor, "cluster": dg.multiprocess_executor}

DEPLOYMENT = current().deployment

ASSET_MODULES = [
    raw, graph, evaluation, shards, model, embeddings, ann, incremental, cross_domain, e2e, neural
]  # fmt: skip
# What each group runs on (kind icons in the UI; Dagster shows at most three per asset).
KINDS = {
    "ingest": {"spark", "delta"},
    "graph": {"spark", "delta"},
    "split": {"spark", "delta"},
    "shards": {"pymetis", "numpy"},
    "model": {"pytorch"},
    "embeddings": {"pytorch", "delta"},
    "evaluation": {"pytorch"},
    "serving": {"faiss"},
    "incremental": {"spark", "delta", "faiss"},
    "cross_domain": {"spark", "pytorch"},
    "e2e": {"spark", "pytorch"},
    "neural": {"pytorch", "faiss"},
}
OWNERS = ["team:cograph"]
ASSETS = dg.map_asset_specs(
    lambda spec: spec.merge_attributes(owners=OWNERS, kinds=KINDS[spec.group_name]),
    dg.load_assets_from_modules(ASSET_MODULES),
)
CHECKS = dg.load_asset_checks_from_modules(ASSET_MODULES)

UPDATES = dg.AssetSelection.assets("batch_updates")
CROSS_DOMAIN = dg.AssetSelection.groups(cross_domain.GROUP)
E2E = dg.AssetSelection.groups(e2e.GROUP)
NEURAL = dg.AssetSelection.groups(neural.GROUP)
# what a full refresh rebuilds
REFRESH = dg.AssetSelection.all() - UPDATES - CROSS_DOMAIN - E2E - NEURAL
# Runs that write the lake share this tag; the instance config that `make` writes limits
# it to one run at a time (the lake's own writer lease backs that up in the code).
LAKE_WRITER = {"cograph/lake-writer": "lake"}
full_refresh = dg.define_asset_job(
    "full_refresh",
    selection=REFRESH,
    tags=LAKE_WRITER,
    description="Ingest the configured source (each content once), rebuild co-engagement, "
    "the graph, the split and shards, retrain, embed, evaluate; the quality gate decides "
    "whether a new index is published.",
)
cross_domain_refresh = dg.define_asset_job(
    "cross_domain_refresh",
    selection=REFRESH | CROSS_DOMAIN,
    tags=LAKE_WRITER,
    description="full_refresh with the cross-domain evaluation: the target domain's cold-user "
    "and new-item rows are held out of the graph, walk models are trained on the joint and "
    "the target-only graph, the encoders get target-only twins, and every model is measured "
    "on what was held out (needs "
    "COGRAPH_CROSS_DOMAIN_TARGET or the cross_domain resource's target).",
)
e2e_refresh = dg.define_asset_job(
    "e2e_refresh",
    selection=E2E.upstream(depth=1).required_multi_asset_neighbors(),
    tags=LAKE_WRITER,
    description="Ingest the configured source, then train and measure the end-to-end ranker "
    "against two-stage and the other arms on a temporal split; the ranker is published for "
    "/v1/recommend strategy e2e unless it is worse than two-stage beyond the test users' noise.",
)
neural_refresh = dg.define_asset_job(
    NEURAL_JOB,
    selection=NEURAL,
    tags=LAKE_WRITER,
    description="After full_refresh: train the neural relevance (MUIRML) on the interactions' "
    "behaviours over the served embeddings and check its search over the served HNSW graph; "
    "published for /v1/recommend strategy neural when it beats the single-behaviour model.",
)
incremental_update = dg.define_asset_job(
    INCREMENTAL_JOB,
    selection=UPDATES,
    tags=LAKE_WRITER,
    description="Apply the inbox's new files to the lake and publish an index version with "
    "their items, without retraining (started by inbox_sensor).",
)
nightly_refresh = dg.ScheduleDefinition(
    name="nightly_full_refresh",
    job=full_refresh,
    cron_schedule=current().nightly_cron,
    execution_timezone="UTC",
    description="full_refresh every night; off unless COGRAPH_NIGHTLY_SCHEDULE_ON is set.",
    default_status=(
        dg.DefaultScheduleStatus.RUNNING
        if current().nightly_schedule_on
        else dg.DefaultScheduleStatus.STOPPED
    ),
)

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=CHECKS,
    jobs=[
        full_refresh,
        cross_domain_refresh,
        e2e_refresh,
        neural_refresh,
        incremental_update,
        lake_maintenance,
    ],  # fmt: skip
    schedules=[nightly_refresh, weekly_lake_maintenance],
    sensors=[inbox_sensor, relevance_sensor],
    resources=RESOURCES_BY_DEPLOYMENT[DEPLOYMENT](),
    executor=EXECUTOR_BY_DEPLOYMENT[DEPLOYMENT],
)
