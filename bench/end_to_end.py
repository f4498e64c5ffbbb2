"""End to end: the main command's lineage on the demo default and on ml-latest-small,
wall time per asset from Dagster's event log.

    python -m bench.end_to_end [--movielens ../shared/datasets/ml-latest-small] [--quick]

Each lake is materialized in process from scratch (every asset but ``batch_updates``,
the default configs), on a fresh temporary lake.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from assets.raw import IngestConfig, SyntheticConfig
from bench.lineage import full_refresh
from bench.report import DOC, markdown_table, stamp, write_section
from orchestration.definitions import lake_resources
from orchestration.resources import LakeResource, SparkResource


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--movielens", type=Path, default=Path("../shared/datasets/ml-latest-small")
    )
    parser.add_argument("--quick", action="store_true", help="tiny model (CI smoke)")
    parser.add_argument("--skip-movielens", action="store_true")
    parser.add_argument(
        "--interactions", type=int, default=0, help="a smaller synthetic lake (CI smoke)"
    )
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args(argv)
    demo = IngestConfig(source="synthetic")
    if args.interactions:
        n = args.interactions
        demo = IngestConfig(
            synthetic=SyntheticConfig(
                n_users=max(100, n // 30), n_items=max(200, n // 25), n_interactions=n
            )
        )
    cases = {"demo default (synthetic)" if not args.interactions else f"synthetic {n:,}": demo}
    if not args.skip_movielens and (args.movielens / "ratings.csv").exists():
        cases["ml-latest-small"] = IngestConfig(
            source="movielens", movielens_path=str(args.movielens)
        )
    spark = SparkResource(master="local[*]", shuffle_partitions=8)
    steps: dict[str, dict[str, float]] = {}
    totals = {}
    for name, ingest in cases.items():
        with tempfile.TemporaryDirectory() as tmp:
            refresh = full_refresh(
                lake_resources(spark, LakeResource(root=tmp)), ingest, args.quick
            )
        steps[name], totals[name] = refresh.step_seconds, refresh.seconds
    keys = sorted(
        {k for s in steps.values() for k in s},
        key=lambda k: -max(s.get(k, 0) for s in steps.values()),
    )
    rows = [[k, *(f"{steps[c].get(k, float('nan')):.1f}" for c in cases)] for k in keys]
    rows.append(["**whole run (wall)**", *(f"**{totals[c]:.1f}**" for c in cases)])
    table = markdown_table(["step (asset or check)", *(f"{c} s" for c in cases)], rows)
    body = f"""## End to end: the main command's lineage, seconds per step

{stamp("pyspark", "dagster", "torch")}

From Dagster's event log (step durations), one in-process run per lake, fresh lake,
{"tiny model" if args.quick else "default configs (6 trained variants)"}; steps run one
after another (in-process executor).

{table}

Where the time goes: `gnn_checkpoint` (six variants trained, then the validation
comparison) is the largest step; `raw_tables` includes starting Spark's JVM. The
10^7-interaction synthetic lake was not run on this 2-core machine (the co-engagement
self-join alone is minutes at 10^6).
"""
    write_section("end-to-end", body, args.doc)
    return steps


if __name__ == "__main__":
    main()
