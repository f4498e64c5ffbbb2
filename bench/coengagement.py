"""Co-engagement edges: the Spark job against the same SQL in DuckDB, side by side.

    python -m bench.coengagement [--sizes 100000 1000000 10000000]

For each size, synthetic interactions (the project's generator, users scaled with them)
are written to Parquet once; then the Spark job (``local[*]``) and DuckDB (what a user
on one machine would pick) each read that file, compute the cosine co-engagement pairs
with the same window, per-user cap and minimum support, and write Parquet. Reported:
seconds, peak memory of the process tree (Python + JVM for Spark), output pairs (which
must agree), and the time ratio. A plot of seconds against interactions goes beside
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from pyspark.sql import SparkSession

from bench.report import DOC, stamp, write_section
from bench.spark_stages import last_stage, profile_table, stage_profile, step
from resources.markdown import markdown_table
from resources.measure import Measure
from resources.plots import curves
from spark_jobs.coengagement import CoengagementParams, build_coengagement
from spark_jobs.ingest import ingest
from spark_jobs.session import SparkSettings, get_spark
from spark_jobs.synthetic import SyntheticSpec, synthetic_inputs

SQL = """
COPY (
  WITH latest AS (
    SELECT user_id, item_id, max(ts) AS ts FROM read_parquet('{src}')
    WHERE weight >= {min_weight} GROUP BY user_id, item_id
  ), ranked AS (
    SELECT *, row_number() OVER (PARTITION BY user_id ORDER BY ts DESC, item_id) AS r
    FROM latest
  ), ui AS (
    SELECT user_id, item_id, epoch(ts)::BIGINT AS t FROM ranked WHERE r <= {cap}
  ), pairs AS (
    SELECT a.item_id AS src, b.item_id AS dst, count(*) AS support
    FROM ui a JOIN ui b
      ON a.user_id = b.user_id AND a.item_id < b.item_id AND abs(a.t - b.t) <= {window}
    GROUP BY a.item_id, b.item_id HAVING count(*) >= {min_support}
  ), n AS (SELECT item_id, count(*) AS n FROM ui GROUP BY item_id)
  SELECT src, dst, support, support / sqrt(ni.n * nj.n) AS score
  FROM pairs JOIN n ni ON ni.item_id = src JOIN n nj ON nj.item_id = dst
) TO '{out}' (FORMAT parquet)
"""


def make_inputs(spark: SparkSession, n: int, folder: Path) -> dict[str, Path]:
    """The clean ``interactions``, ``catalog`` and ``concepts`` of a synthetic lake of
    ``n`` interactions (users and items scaled with it), as Parquet folders."""
    spec = SyntheticSpec(
        n_users=max(200, n // 50), n_items=max(1000, n // 25), n_interactions=n, bad_row_share=0
    )
    clean = ingest(synthetic_inputs(spark, spec), "bench")
    paths = {}
    for name in ("interactions", "catalog", "concepts"):
        paths[name] = folder / f"{name}-{n}.parquet"
        getattr(clean, name).write.parquet(str(paths[name]))
    return paths


def run_spark(
    spark: SparkSession, src: Path, out: Path, params: CoengagementParams
) -> tuple[float, float, int]:
    with Measure() as m, step(spark, "co-engagement pairs"):
        build_coengagement(spark.read.parquet(str(src)), params).write.parquet(str(out))
    return m.seconds, m.peak_rss_mb, pq.ParquetDataset(out).read().num_rows


def run_duckdb(src: Path, out: Path, params: CoengagementParams) -> tuple[float, float, int]:
    sql = SQL.format(
        src=f"{src}/*.parquet",
        out=out,
        min_weight=params.min_weight,
        cap=params.max_items_per_user,
        window=int(params.window_days * 86_400),
        min_support=params.min_support,
    )
    with Measure() as m, duckdb.connect() as con:
        con.execute(sql)
    return m.seconds, m.peak_rss_mb, pq.read_table(out).num_rows


def main(argv: list[str] | None = None) -> list[list[object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args(argv)
    spark, _ = get_spark(SparkSettings(shuffle_partitions=8))
    params = CoengagementParams()
    rows, spark_s, duck_s = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for n in args.sizes:
            src = make_inputs(spark, n, folder)["interactions"]
            before = last_stage(spark)
            s = run_spark(spark, src, folder / f"spark-{n}", params)
            stages = stage_profile(spark, before)  # the largest size's is reported
            d = run_duckdb(src, folder / f"duck-{n}.parquet", params)
            if s[2] != d[2]:
                raise RuntimeError(f"Spark found {s[2]} pairs, DuckDB {d[2]}, at {n} interactions")
            spark_s.append(s[0])
            duck_s.append(d[0])
            rows.append(
                [
                    f"{n:,}",
                    f"{s[2]:,}",
                    f"{s[0]:.1f}",
                    f"{s[1]:,.0f}",
                    f"{d[0]:.1f}",
                    f"{d[1]:,.0f}",
                    f"{s[0] / d[0]:.1f}",
                ]
            )
    plot = curves(
        args.sizes,
        {"Spark local[*]": spark_s, "DuckDB": duck_s},
        title="co-engagement seconds",
        xlabel="interactions",
    )
    png = args.doc.with_name("coengagement.png")
    png.write_bytes(plot)
    table = markdown_table(
        [
            "interactions",
            "pairs (both)",
            "Spark s",
            "Spark peak MiB",
            "DuckDB s",
            "DuckDB peak MiB",
            "Spark ÷ DuckDB",
        ],
        rows,
    )
    body = f"""## Co-engagement edges: Spark against DuckDB

{stamp("pyspark", "duckdb")}

Same synthetic interactions (Parquet), same window (30 days), per-user cap (200 most
recent items) and minimum support (2); cosine score. Both must find the same pairs.
Peak memory is the process tree's RSS (Python + the Spark JVM); DuckDB runs in the same
process while the JVM idles, so its column includes the JVM and overstates DuckDB.

{table}

![seconds against interactions](coengagement.png)

Spark's costliest stages at {args.sizes[-1]:,} interactions (from its UI's REST API):

{profile_table(stages)}

Where the time goes: items get integer codes in id order (a distinct and a one-partition
window over the items), and the (user, time, code) rows go through one exchange by user,
with no aggregation and a fixed partition count so that adaptive execution does not merge
them into fewer tasks than cores. Two stages then carry the work, with no self-join and no
shuffled row per pair: the first keeps each item's latest engagement and the user's most
recent items (the cap), enumerates the pairs within the window in numpy (items sorted by
time, each item's window end found by a binary search) and writes them as sorted, packed
blocks of int64 pair keys, one per key bucket, beside one self-pair key per kept item;
the second merges a bucket's sorted blocks (numpy's stable sort finds the runs) and counts
them, keeping the pairs with enough support. Only those become Spark rows: the self-pairs'
totals are the items' user counts after the cap, broadcast and joined to the pairs,
which are written. Both engines grow about linearly with the pair occurrences. At 10^5
Spark's fixed cost (the JVM's warm-up, the stages' scheduling, Python workers) is nearly
all its time; by 10^7 the ratio is set by the two pair stages, each about one pass over
the occurrences in numpy plus the shuffle of their blocks through local disk, against
DuckDB's single in-memory hash aggregate. On a cluster these two stages are the part that
spreads over machines.
"""
    write_section("coengagement", body, args.doc)
    return rows


if __name__ == "__main__":
    main()
