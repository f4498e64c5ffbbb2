"""Counts of knowledge-graph defects; each should be zero (asset checks read them)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_jobs import constants as C


def dangling_endpoints(nodes: DataFrame, edges: DataFrame) -> int:
    """Edge endpoints whose (type, id) is not a node."""
    keys = nodes.select(C.NODE_TYPE, C.NODE_ID)
    ends = edges.select(
        F.col(C.SRC_TYPE).alias(C.NODE_TYPE), F.col(C.SRC).alias(C.NODE_ID)
    ).unionAll(edges.select(F.col(C.DST_TYPE).alias(C.NODE_TYPE), F.col(C.DST).alias(C.NODE_ID)))
    return ends.join(keys, [C.NODE_TYPE, C.NODE_ID], "left_anti").count()


def eel_asymmetric(edges: DataFrame) -> int:
    """EELs whose reverse edge is missing."""
    eel = edges.where(F.col(C.RELATION) == C.EEL).select(C.SRC, C.DST)
    reverse = eel.select(F.col(C.DST).alias(C.SRC), F.col(C.SRC).alias(C.DST))
    return eel.join(reverse, [C.SRC, C.DST], "left_anti").count()


def eel_self_loops(edges: DataFrame) -> int:
    return edges.where((F.col(C.RELATION) == C.EEL) & (F.col(C.SRC) == F.col(C.DST))).count()


def duplicate_edges(edges: DataFrame) -> int:
    """Edges beyond the first per (relation, src, dst)."""
    return (
        edges.groupBy(C.RELATION, C.SRC, C.DST)
        .count()
        .where("count > 1")
        .selectExpr("coalesce(sum(count - 1), 0) AS extra")
        .first()["extra"]
    )


def bad_weights(edges: DataFrame) -> int:
    """Weights that are null, NaN, infinite or not positive."""
    w = F.col("weight")
    bad = w.isNull() | F.isnan(w) | (w == float("inf")) | (w <= 0)
    return edges.where(bad).count()


def duplicate_pairs(coengagement: DataFrame) -> int:
    """Co-engagement pairs stored more than once or not as ``src < dst``."""
    misordered = coengagement.where(F.col(C.SRC) >= F.col(C.DST)).count()
    dupes = coengagement.groupBy(C.SRC, C.DST).count().where("count > 1").count()
    return misordered + dupes
