"""The code location: assets by group, checks, jobs and resources for this deployment."""

from __future__ import annotations

import dagster as dg

from assets import ann, embeddings, evaluation, graph, incremental, model, raw, shards
from orchestration.maintenance import lake_maintenance, weekly_lake_maintenance
from orchestration.sensors import INCREMENTAL_JOB, inbox_sensor
from resources.folder_io_manager import FolderIOManager
from resources.io_manager import DeltaIOManager
from resources.spark_lake import LakeResource, SparkResource
from settings import current


def lake_resources(spark: SparkResource, lake: LakeResource) -> dict[str, object]:
    """The resources every deployment has, given its Spark and its lake."""
    return {
        "spark": spark,
        "lake": lake,
        "io_manager": DeltaIOManager(lake=lake, spark=spark),
        "folder_io_manager": FolderIOManager(lake=lake),
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

ASSET_MODULES = [raw, graph, evaluation, shards, model, embeddings, ann, incremental]
ASSETS = dg.load_assets_from_modules(ASSET_MODULES)
CHECKS = dg.load_asset_checks_from_modules(ASSET_MODULES)

UPDATES = dg.AssetSelection.assets("batch_updates")
# Runs that write the lake share this tag; the instance config that `make` writes limits
# it to one run at a time (the lake's own writer lease backs that up in the code).
LAKE_WRITER = {"cograph/lake-writer": "lake"}
# ingest the configured source (added once), rebuild edges, graph, shards, retrain,
# evaluate, gate, rebuild the index
full_refresh = dg.define_asset_job(
    "full_refresh", selection=dg.AssetSelection.all() - UPDATES, tags=LAKE_WRITER
)
incremental_update = dg.define_asset_job(INCREMENTAL_JOB, selection=UPDATES, tags=LAKE_WRITER)
nightly_refresh = dg.ScheduleDefinition(
    name="nightly_full_refresh",
    job=full_refresh,
    cron_schedule=current().nightly_cron,
    execution_timezone="UTC",
)

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=CHECKS,
    jobs=[full_refresh, incremental_update, lake_maintenance],
    schedules=[nightly_refresh, weekly_lake_maintenance],
    sensors=[inbox_sensor],
    resources=RESOURCES_BY_DEPLOYMENT[DEPLOYMENT](),
    executor=EXECUTOR_BY_DEPLOYMENT[DEPLOYMENT],
)
