"""Incremental updates from one batch of new interactions and items (pure DataFrames).

* :func:`touched_pairs`: item pairs that the batch's users co-engaged within the window
  (their whole history counts: a new interaction pairs with their older ones);
* :func:`recompute_pairs`: those pairs' support and score, recomputed exactly from all
  interactions of the items involved, ready to MERGE into ``coengagement_edges``;
* :func:`new_nodes` / :func:`new_edges`: nodes and edges to append to the knowledge graph,
  dense ids continuing after the current ones.

Top-k EEL pruning is global, so the incremental path adds EELs that pass ``min_support``
without re-ranking old ones; the nightly full refresh restores the pruned graph.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from py4j.protocol import Py4JJavaError
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs import constants as C
from spark_jobs.coengagement import CoengagementParams, build_coengagement, user_items
from spark_jobs.csv_lines import BAD_BYTES, LINE
from spark_jobs.graph import build_edges
from spark_jobs.readers import read_file
from spark_jobs.validation import (
    QUARANTINE_SCHEMA,
    check_catalog,
    check_concepts,
    check_interactions,
)

EDGE_KEYS = [C.SRC_TYPE, C.SRC, C.RELATION, C.DST_TYPE, C.DST]


def touched_pairs(
    batch: DataFrame, interactions: DataFrame, params: CoengagementParams
) -> DataFrame:
    """``src < dst`` pairs with at least one batch interaction, among the batch users' items."""
    users = batch.select(C.USER_ID).distinct()
    mine = user_items(interactions.join(users, C.USER_ID, "left_semi"), params)
    fresh = batch.select(C.USER_ID, C.ITEM_ID, F.lit(True).alias("_new")).distinct()
    mine = mine.join(fresh, [C.USER_ID, C.ITEM_ID], "left").fillna(False, subset=["_new"])
    a, b = mine.alias("a"), mine.alias("b")
    cond = (
        (F.col("a.user_id") == F.col("b.user_id"))
        & (F.col("a.item_id") < F.col("b.item_id"))
        & (F.col("a._new") | F.col("b._new"))
    )
    if params.window_days is not None:
        cond &= F.abs(F.col("a._t") - F.col("b._t")) <= int(params.window_days * 86_400)
    return (
        a.join(b, cond)
        .select(F.col("a.item_id").alias(C.SRC), F.col("b.item_id").alias(C.DST))
        .distinct()
    )


def recompute_pairs(
    interactions: DataFrame, pairs: DataFrame, params: CoengagementParams
) -> DataFrame:
    """Support and score of ``pairs`` from every interaction with their items.

    Exact for pairs and item counts; a user's most-recent-items cap is applied within
    these items only, which can keep a few more of a heavy user's pairs than the full job.
    """
    items = pairs.select(F.col(C.SRC).alias(C.ITEM_ID)).union(
        pairs.select(F.col(C.DST).alias(C.ITEM_ID))
    )
    subset = interactions.join(items.distinct(), C.ITEM_ID, "left_semi")
    return build_coengagement(subset, params).join(pairs, [C.SRC, C.DST], "left_semi")


def new_nodes(nodes: DataFrame, catalog: DataFrame, triples: DataFrame) -> DataFrame:
    """Entity and concept nodes not yet in ``nodes``, numbered after each type's last id."""
    wanted = catalog.select(
        F.lit(C.ENTITY).alias(C.NODE_TYPE), F.col(C.ITEM_ID).alias(C.KEY), C.DOMAIN
    ).unionByName(
        triples.select(
            F.col(C.RELATION).alias(C.NODE_TYPE),
            F.col(C.CONCEPT).alias(C.KEY),
            F.lit(None).cast("string").alias(C.DOMAIN),
        )
    )
    fresh = (
        wanted.groupBy(C.NODE_TYPE, C.KEY)
        .agg(F.max(C.DOMAIN).alias(C.DOMAIN))  # one node per key
        .join(nodes, [C.NODE_TYPE, C.KEY], "left_anti")
    )
    last = nodes.groupBy(C.NODE_TYPE).agg(F.max(C.NODE_ID).alias("_last"))
    order = Window.partitionBy(C.NODE_TYPE).orderBy(C.KEY)
    return (
        fresh.join(last, C.NODE_TYPE, "left")
        .withColumn(
            C.NODE_ID,
            (F.coalesce(F.col("_last"), F.lit(-1)) + F.row_number().over(order)).cast("long"),
        )
        .select(*C.NODE_COLUMNS)
    )


def new_edges(
    nodes: DataFrame,
    edges: DataFrame,
    pairs: DataFrame,
    triples: DataFrame,
    min_support: int,
) -> DataFrame:
    """EELs for ``pairs`` passing ``min_support`` (both directions, weight = score) and
    the concept edges of ``triples``, minus edges the graph already has. ``nodes`` must
    include the new nodes."""
    kept = pairs.where(F.col(C.SUPPORT) >= min_support)
    eel = kept.select(C.SRC, C.DST, F.col(C.SCORE).alias("weight")).unionByName(
        kept.select(
            F.col(C.DST).alias(C.SRC), F.col(C.SRC).alias(C.DST), F.col(C.SCORE).alias("weight")
        )
    )
    return build_edges(nodes, eel, triples).join(edges.select(EDGE_KEYS), EDGE_KEYS, "left_anti")


@dataclass(frozen=True)
class BatchRows:
    """One batch's validated rows: clean interactions, new catalog items, their concepts,
    and every rejected row (a whole unreadable file becomes one quarantine row)."""

    interactions: DataFrame
    catalog: DataFrame
    concepts: DataFrame
    quarantine: DataFrame


def is_items_file(path: Path) -> bool:
    """``items*`` files hold new items with concepts; every other file holds interactions."""
    return path.name.lower().startswith("items")


def unreadable_row(path: Path, reason: str, batch_id: str) -> tuple:
    """The quarantine row of a whole file (source, line, row, reason, batch id)."""
    return (str(path), None, json.dumps({"file": path.name}), reason[:500], batch_id)


def _unreadable(spark: SparkSession, path: Path, reason: str, batch_id: str) -> DataFrame:
    row = unreadable_row(path, reason, batch_id)
    schema = T.StructType(QUARANTINE_SCHEMA.fields[:-1])  # the time is set below
    return spark.createDataFrame([row], schema).withColumn(C.QUARANTINED_AT, F.current_timestamp())


def read_batch(
    spark: SparkSession,
    files: dict[Path, str],
    interactions: DataFrame,
    catalog: DataFrame,
    concepts: DataFrame,
    quarantine: DataFrame,
    *,
    encoding: str = "utf-8",
    staging: Path,
) -> BatchRows:
    """Validate ``files`` (path -> batch id) against the current tables (whose schemas the
    results take). Items files go first, so that a batch's interactions may name the items
    it introduces; a file that cannot be read, or holds no data row, is quarantined whole
    (one row) and the rest go on."""
    good_i, new_items, good_c = [interactions.limit(0)], [catalog.limit(0)], [concepts.limit(0)]
    bad = [quarantine.limit(0)]
    known = catalog.select(C.ITEM_ID)
    read = functools.partial(read_file, spark, encoding=encoding, staging=staging)
    for path, batch_id in sorted(files.items(), key=lambda f: not is_items_file(f[0])):
        try:
            if is_items_file(path):
                raw = read(path, C.CONCEPT_COLUMNS, (C.DOMAIN, C.TITLE))
            else:
                raw = read(path, (C.USER_ID, C.ITEM_ID, C.TS), (C.EVENT, C.WEIGHT))
            if raw.isEmpty():  # a corrupt file fails here, not in a later write
                bad.append(_unreadable(spark, path, "no data rows in file", batch_id))
                continue
            if is_items_file(path):
                decoded = raw.where(F.col(BAD_BYTES).isNull())
                items = check_catalog(
                    decoded.select(C.ITEM_ID, C.DOMAIN, C.TITLE, LINE).dropDuplicates([C.ITEM_ID]),
                    source=str(path),
                    batch_id=batch_id,
                )
                fresh = items.good.join(known, C.ITEM_ID, "left_anti")
                known = known.unionByName(fresh.select(C.ITEM_ID))
                triples = check_concepts(
                    raw.select(*C.CONCEPT_COLUMNS, LINE, BAD_BYTES),
                    known,
                    source=str(path),
                    batch_id=batch_id,
                )
                new_items.append(
                    fresh.withColumn(C.FIRST_SEEN, F.lit(None).cast(T.TimestampType()))
                )
                good_c.append(triples.good)
                bad += [items.bad, triples.bad]
            else:
                raw = raw.withColumn(
                    C.WEIGHT, F.coalesce(F.col(C.WEIGHT).cast("string"), F.lit("1.0"))
                )
                checked = check_interactions(raw, known, source=str(path), batch_id=batch_id)
                good_i.append(checked.good)
                bad.append(checked.bad)
        except (ValueError, OSError, AnalysisException, Py4JJavaError) as error:
            bad.append(_unreadable(spark, path, f"unreadable file: {error}", batch_id))

    def union(frames: list[DataFrame], like: DataFrame) -> DataFrame:
        cols = like.columns
        return functools.reduce(DataFrame.unionByName, [f.select(*cols) for f in frames]).select(
            *[F.col(c).cast(like.schema[c].dataType) for c in cols]
        )

    return BatchRows(
        union(good_i, interactions),
        union(new_items, catalog),
        union(good_c, concepts),
        union(bad, quarantine),
    )
