"""Where a Spark job's time goes: stage times from Spark's own UI (its REST API).

Wrap each step of a job in ``step(spark, "name")``: its jobs carry that description, and
:func:`stage_profile` then lists the costliest stages since a given one, with their step,
wall time (submission to completion), their tasks' run time and the bytes they read and
shuffled, as the Spark UI's stage page shows them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

import requests
from pyspark.sql import SparkSession

from resources.markdown import markdown_table


def _stages(spark: SparkSession) -> list[dict]:
    sc = spark.sparkContext
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/stages"
    reply = requests.get(url, params={"status": "complete"}, timeout=30)
    reply.raise_for_status()
    return reply.json()


def last_stage(spark: SparkSession) -> int:
    """The highest completed stage id so far (``-1``: none), to profile what follows."""
    return max((s["stageId"] for s in _stages(spark)), default=-1)


@contextmanager
def step(spark: SparkSession, name: str) -> Iterator[None]:
    sc = spark.sparkContext
    sc.setJobDescription(name)
    try:
        yield
    finally:
        sc.setJobDescription(None)  # type: ignore[arg-type]


def _seconds(stage: dict) -> float:
    def parse(stamp: str) -> dt.datetime:
        return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%Z")  # "...07:10:00.123GMT"

    return (parse(stage["completionTime"]) - parse(stage["submissionTime"])).total_seconds()


def stage_profile(spark: SparkSession, after: int, top: int = 8) -> list[list[object]]:
    """The ``top`` costliest stages (by their tasks' run time; wall times overlap, as a
    stage's clock runs while it waits for cores) completed after stage ``after``: step (job
    description), stage id, tasks, wall s, task s, input, shuffle read and write MiB."""
    stages = [s for s in _stages(spark) if s["stageId"] > after and "completionTime" in s]
    stages.sort(key=lambda s: s["executorRunTime"], reverse=True)
    return [
        [
            s.get("description") or s["name"],
            s["stageId"],
            s["numTasks"],
            f"{_seconds(s):.1f}",
            f"{s['executorRunTime'] / 1000:.1f}",
            *(
                f"{s[key] / 2**20:,.0f}"
                for key in ("inputBytes", "shuffleReadBytes", "shuffleWriteBytes")
            ),
        ]
        for s in stages[:top]
    ]


def profile_table(rows: list[list[object]]) -> str:
    header = ["step", "stage", "tasks", "wall s", "task s", "input MiB", "shuffle read MiB"]
    return markdown_table([*header, "shuffle write MiB"], rows)
