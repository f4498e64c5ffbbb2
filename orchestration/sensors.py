"""The sensors: ready batch files in ``<lake>/inbox`` start an incremental run; newly served
embeddings start a neural refresh once one has run."""

import hashlib
import json

import dagster as dg

from resources.spark_lake import LakeResource
from serving.artifact import bundle_meta
from storage.inbox import fingerprint, scan
from storage.lake_log import INCREMENTAL_UNIT, LakeLog
from storage.versions import LATEST, latest
from training.muirml_run import load_report as load_relevance_report

INCREMENTAL_JOB = "incremental_update"
NEURAL_JOB = "neural_refresh"
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


@dg.sensor(
    job_name=NEURAL_JOB,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,  # acts only once neural_refresh has run
)
def relevance_sensor(
    context: dg.SensorEvaluationContext, lake: LakeResource
) -> dg.RunRequest | dg.SkipReason:
    """A relevance model fits only the embeddings it was trained on: when a retrain serves
    new ones (the nightly refresh), strategy neural answers 409 until neural_refresh runs
    again. Once neural_refresh has run (it is opt-in), this requests it once per newly
    served embedding version."""
    layout = lake.layout
    if not (layout.relevance_models / LATEST).exists():
        return dg.SkipReason("neural_refresh has not run here (it is opt-in)")
    if not (layout.index / LATEST).exists():
        return dg.SkipReason("No index is served yet")
    served = str(bundle_meta(latest(layout.index)).get("model_version", ""))
    trained = load_relevance_report(latest(layout.relevance_models)).embedding_version
    if served == trained:
        return dg.SkipReason(f"The relevance model is for the served embeddings ({served})")
    return dg.RunRequest(run_key=f"relevance-{served}", tags={"cograph/embeddings": served})
