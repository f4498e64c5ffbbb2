"""The inbox sensor: ready batch files in ``<lake>/inbox`` start an incremental run."""

import hashlib
import json

import dagster as dg

from resources.spark_lake import LakeResource
from storage.inbox import fingerprint, scan
from storage.lake_log import INCREMENTAL_UNIT, LakeLog

INCREMENTAL_JOB = "incremental_update"
MAX_REMEMBERED = 10_000  # fingerprints kept in the cursor


@dg.sensor(
    job_name=INCREMENTAL_JOB,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,  # on wherever the daemon runs (make ui)
)
def inbox_sensor(
    context: dg.SensorEvaluationContext, lake: LakeResource
) -> dg.RunRequest | dg.SkipReason:
    """One run per tick for the files that are ready (a ``.done`` marker, or size and
    mtime unchanged since the last tick). The cursor remembers what was handed out, so a
    file counts once; the run itself skips batches it has already applied, and finishes
    any batch a killed run left journaled, which a tick with no ready file requests too."""
    state = json.loads(context.cursor) if context.cursor else {"seen": {}, "done": []}
    ready, now = scan(lake.layout.inbox, state["seen"], set(state["done"]))
    marks = [fingerprint(p) for p in ready]
    context.update_cursor(
        json.dumps({"seen": now, "done": (state["done"] + marks)[-MAX_REMEMBERED:]})
    )
    if not ready:
        resumable = LakeLog(lake.layout.tables).journals(INCREMENTAL_UNIT)
        if resumable:  # a killed run left a batch half done: finish it without waiting
            key, journal = next(iter(sorted(resumable.items())))
            return dg.RunRequest(
                run_key=f"resume-{key}-{len(journal['steps'])}",  # once per point reached
                run_config={"ops": {"batch_updates": {"config": {"files": []}}}},
                tags={"cograph/resumes": key},
            )
        return dg.SkipReason(f"No ready file in {lake.layout.inbox}")
    return dg.RunRequest(
        run_key=hashlib.sha256("|".join(marks).encode()).hexdigest()[:24],
        run_config={"ops": {"batch_updates": {"config": {"files": [str(p) for p in ready]}}}},
        tags={"cograph/files": ",".join(p.name for p in ready)[:1000]},
    )
