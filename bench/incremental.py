"""Incremental update benchmark: batch landing -> searchable, against a full refresh.

    python -m bench.incremental [--items 4000 --interactions 100000] [--batches 1000 10000]

Materializes the whole lineage on a synthetic lake of the given size (the full refresh,
timed), then drops interaction batches of each size, each with 20 brand-new items, into
the inbox, and times the sensor tick, the ``batch_updates`` run and loading the new index
version until every new item is searchable. The ratio full ÷ incremental goes into
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from assets.raw import IngestConfig, SyntheticConfig
from bench.lineage import full_refresh
from bench.report import DOC, stamp, write_section
from orchestration.definitions import ASSETS, CHECKS, lake_resources
from orchestration.sensors import inbox_sensor
from resources.markdown import markdown_table
from resources.spark_lake import LakeResource, SparkResource
from serving.artifact import load_bundle
from spark_jobs.incremental_batch import STEPS
from storage.layout import LakeLayout
from storage.versions import latest

NEW_ITEMS = 20


def drop_batch(lake: Path, size: int, tag: str, seed: int) -> list[str]:
    """``size`` interactions over existing items and users, plus new items with concepts."""
    bundle = load_bundle(latest(LakeLayout(lake).index))
    items = bundle.entities["item_id"].to_pylist()
    concepts = bundle.concepts.to_pylist()
    rng = np.random.default_rng(seed)
    inbox = LakeLayout(lake).inbox
    inbox.mkdir(exist_ok=True)
    new = [f"bench-{tag}-{i}" for i in range(NEW_ITEMS)]
    rows = [concepts[int(j)] for j in rng.choice(len(concepts), size=3 * NEW_ITEMS)]
    pq.write_table(
        pa.table(
            {
                "item_id": [new[k // 3] for k in range(3 * NEW_ITEMS)],
                "relation": [r["concept"].split(":", 1)[0] for r in rows],
                "concept": [r["concept"].split(":", 1)[1] for r in rows],
            }
        ),
        inbox / f"items-{tag}.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "user_id": [f"bench-user-{u}" for u in rng.integers(size // 10 + 1, size=size)],
                "item_id": [items[int(i)] for i in rng.integers(len(items), size=size)],
                "ts": [str(1_750_000_000 + int(t)) for t in rng.integers(86_400, size=size)],
            }
        ),
        inbox / f"interactions-{tag}.parquet",
    )
    for name in (f"items-{tag}.parquet", f"interactions-{tag}.parquet"):
        (inbox / f"{name}.done").touch()
    return new


def incremental(lake: Path, resources: dict, new: list[str]) -> dict[str, float]:
    start = time.perf_counter()
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources={"lake": resources["lake"]})
        request = inbox_sensor(context)
    tick = time.perf_counter()
    result = dg.materialize(
        [*ASSETS, *CHECKS],
        selection=["batch_updates"],
        resources=resources,
        run_config=request.run_config,
    )
    ran = time.perf_counter()
    bundle = load_bundle(latest(LakeLayout(lake).index))
    ids = bundle.entity_ids()
    if not result.success or not all(bundle.index.contains(ids[i]) for i in new):
        raise RuntimeError("the batch's new items are not searchable")
    done = time.perf_counter()
    # the node also reports the upstream tables it wrote; the profile is on its own asset
    update = next(
        m
        for m in result.asset_materializations_for_node("batch_updates")
        if m.asset_key == dg.AssetKey("batch_updates")
    )
    steps = update.metadata["step_seconds"].value
    return {"sensor": tick - start, "run": ran - tick, "load": done - ran, "total": done - start,
            "steps": steps}  # fmt: skip


def main(argv: list[str] | None = None) -> list[list[object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=4000)
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--interactions", type=int, default=100_000)
    parser.add_argument("--batches", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--quick", action="store_true", help="tiny model (CI smoke)")
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args(argv)
    synthetic = SyntheticConfig(
        n_users=args.users, n_items=args.items, n_interactions=args.interactions
    )
    rows, profile = [], []
    with tempfile.TemporaryDirectory() as tmp:
        lake = Path(tmp)
        spark = SparkResource(master="local[2]", shuffle_partitions=4)
        resources = lake_resources(spark, LakeResource(root=str(lake)))
        full = full_refresh(resources, IngestConfig(synthetic=synthetic), args.quick).seconds
        for k, size in enumerate(args.batches):
            new = drop_batch(lake, size, f"b{k}", seed=k)
            t = incremental(lake, resources, new)
            rows.append(
                [
                    f"{size:,}",
                    NEW_ITEMS,
                    f"{t['sensor']:.2f}",
                    f"{t['run']:.1f}",
                    f"{t['load']:.2f}",
                    f"{t['total']:.1f}",
                    f"{full:.1f}",
                    f"{full / t['total']:.1f}",
                ]
            )
            profile.append([f"{size:,}", *(f"{t['steps'][s]:.2f}" for s in STEPS)])
    table = markdown_table(
        [
            "batch interactions",
            "new items",
            "sensor s",
            "run s",
            "load index s",
            "landing → searchable s",
            "full refresh s",
            "full ÷ incremental",
        ],
        rows,
    )
    body = f"""## Incremental update against full refresh

{stamp("pyspark", "dagster", "faiss-cpu")}

Synthetic lake of {args.items:,} items, {args.interactions:,} interactions
({"tiny model" if args.quick else "default training config"}). A batch lands in the inbox with its
`.done` marker; the clock stops when every new item is in the loaded index version.

{table}

Seconds per step of the run (measured inside `batch_updates`, `spark_jobs/incremental_batch.py`):

{markdown_table(["batch interactions", *STEPS], profile)}

Where the time goes: the incremental run is about 15 Spark actions on small frames
(validation, the touched-pair recompute and its MERGE, graph appends) and 9 Delta commits,
each a second or more of Spark job overhead on this 2-core machine, plus one full-graph
inference pass (under 2 s here); it barely depends on the batch size. The full refresh
adds retraining of every configured variant and the evaluation. What would move it: fewer
Spark actions (one persisted frame per step instead of counts and re-reads), or doing the
small-frame steps in Arrow/DuckDB in-process and keeping Spark for the full refresh.
"""
    write_section("incremental", body, args.doc)
    return rows


if __name__ == "__main__":
    main()
