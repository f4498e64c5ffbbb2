"""The lake maintenance job: housekeeping (``storage/housekeeping.py``) on a schedule."""

import dagster as dg

from resources.io_manager import lake_tables
from resources.spark_lake import LakeResource, SparkResource
from settings import config_field, current
from storage.housekeeping import tidy_lake


class HousekeepingConfig(dg.Config):
    grace_hours: float = config_field("housekeeping_grace_hours")


@dg.op
def lake_housekeeping(
    context: dg.OpExecutionContext,
    config: HousekeepingConfig,
    lake: LakeResource,
    spark: SparkResource,
) -> dg.Output[None]:
    """Restore tables to their recorded versions, vacuum files no kept version references,
    drop dead runs' journals and staging copies, prune old lake records."""
    tables = lake_tables(lake, spark)
    with tables.log.writer_lease(lake.writer_lease_seconds):
        done = tidy_lake(tables, lake.layout, config.grace_hours)
    context.log.info(f"Housekeeping: {done}")
    return dg.Output(
        None,
        metadata={
            "tables_restored": dg.MetadataValue.json(done.restored),
            "files_removed": done.files_removed,
            "folders_removed": done.folders_removed,
            "journals_dropped": done.journals_dropped,
            "records_pruned": done.records_pruned,
        },
    )


@dg.job(
    description="Housekeeping of the lake: what killed writes left behind, once it is old enough.",
    tags={"cograph/lake-writer": "lake"},
)
def lake_maintenance() -> None:
    lake_housekeeping()


weekly_lake_maintenance = dg.ScheduleDefinition(
    name="weekly_lake_maintenance",
    job=lake_maintenance,
    cron_schedule=current().maintenance_cron,
    execution_timezone="UTC",
)
