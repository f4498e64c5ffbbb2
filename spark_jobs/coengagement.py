"""Item-item co-engagement edges from user interactions.

Two items are co-engaged when one user engaged both within a time window. Each user
contributes at most ``max_items_per_user`` (most recent) items, so a user adds at most
``cap * (cap - 1) / 2`` pairs and the cost grows linearly with interactions rather than
quadratically with the heaviest users.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from spark_jobs import constants as C

Score = Literal["cosine", "ppmi", "jaccard"]


@dataclass(frozen=True)
class CoengagementParams:
    window_days: float | None = C.DEFAULT_WINDOW_DAYS  # None: no window
    max_items_per_user: int = C.DEFAULT_MAX_ITEMS_PER_USER
    min_support: int = C.DEFAULT_MIN_SUPPORT
    min_weight: float = 0.0  # interactions below this weight are not engagement
    score: Score = "cosine"

    def __post_init__(self) -> None:
        if self.max_items_per_user < 2:
            raise ValueError(f"max_items_per_user must be >= 2, got {self.max_items_per_user}")
        if self.min_support < 1:
            raise ValueError(f"min_support must be >= 1, got {self.min_support}")
        if self.score not in ("cosine", "ppmi", "jaccard"):
            raise ValueError(f"score must be one of cosine, ppmi, jaccard; got {self.score!r}")


def user_items(interactions: DataFrame, params: CoengagementParams) -> DataFrame:
    """One row per (user, item): the latest engagement, capped to each user's most recent items."""
    latest = (
        interactions.where(F.col(C.WEIGHT) >= params.min_weight)
        .groupBy(C.USER_ID, C.ITEM_ID)
        .agg(F.max(C.TS).alias(C.TS))
    )
    recent = Window.partitionBy(C.USER_ID).orderBy(F.col(C.TS).desc(), F.col(C.ITEM_ID))
    return (
        latest.withColumn("_rank", F.row_number().over(recent))
        .where(F.col("_rank") <= params.max_items_per_user)
        .select(C.USER_ID, C.ITEM_ID, F.col(C.TS).cast("long").alias("_t"))
    )


def user_lists(interactions: DataFrame, params: CoengagementParams) -> DataFrame:
    """One row per user: ``_items``, its capped items as ``(_neg_t, item_id)`` structs, most
    recent first (ties: lower item id first, as :func:`user_items` orders them).

    One exchange: the rows are hash-partitioned by user once, and both the (user, item)
    latest-engagement aggregate and the per-user list reuse that partitioning.
    """
    engaged = interactions.where(F.col(C.WEIGHT) >= params.min_weight)
    latest = (
        engaged.repartition(C.USER_ID)
        .groupBy(C.USER_ID, C.ITEM_ID)
        .agg(F.max(C.TS).cast("long").alias("_t"))
    )
    return (
        latest.groupBy(C.USER_ID)
        # sorted ascending by (-t, item id): the most recent first, ties to the lower id
        .agg(
            F.sort_array(F.collect_list(F.struct((-F.col("_t")).alias("_neg_t"), C.ITEM_ID))).alias(
                "_all"
            )
        )
        .select(C.USER_ID, F.slice("_all", 1, params.max_items_per_user).alias("_items"))
    )


def _pairs_in(items: str, window_seconds: int | None) -> F.Column:
    """Every ``(a, b)`` of a user's list with ``a`` before ``b`` (within the window): a
    SQL higher-order expression over the array, so no join pairs the rows up."""
    close = (
        "true"
        if window_seconds is None
        else (f"abs({items}[i]._neg_t - {items}[j]._neg_t) <= {window_seconds}")
    )
    return F.expr(
        f"IF(size({items}) < 2, array(), flatten(transform(sequence(0, size({items}) - 2), "
        f"i -> transform(filter(sequence(i + 1, size({items}) - 1), j -> {close}), "
        f"j -> named_struct('a', {items}[i].{C.ITEM_ID}, 'b', {items}[j].{C.ITEM_ID})))))"
    )


def coengagement_edges(interactions: DataFrame, params: CoengagementParams) -> DataFrame:
    """``src < dst`` item pairs with ``support`` (distinct users) and a normalized ``score``.

    Scores, with ``n_i`` the users of item i after the cap and ``N`` all users:
    cosine ``s / sqrt(n_i n_j)``; jaccard ``s / (n_i + n_j - s)``; ppmi ``log(s N / (n_i n_j))``,
    pairs with PMI <= 0 dropped (they co-occur no more than chance), so every score is > 0.

    Pairs come from each user's capped, time-sorted list (:func:`user_lists`), counted
    with a partial aggregate before the one shuffle on the pair; the per-item counts are
    joined by broadcast.
    """
    window = None if params.window_days is None else int(params.window_days * 86_400)
    lists = user_lists(interactions, params).persist()
    pair = F.explode(_pairs_in("_items", window)).alias("_p")
    ordered = lists.select(pair).select(
        F.least("_p.a", "_p.b").alias(C.SRC), F.greatest("_p.a", "_p.b").alias(C.DST)
    )
    pairs = (
        ordered.groupBy(C.SRC, C.DST)
        .agg(F.count("*").alias(C.SUPPORT))
        .where(F.col(C.SUPPORT) >= params.min_support)
    )
    users_per_item = (
        lists.select(F.explode(f"_items.{C.ITEM_ID}").alias(C.ITEM_ID))
        .groupBy(C.ITEM_ID)
        .agg(F.count("*").alias("_n"))
    )
    n_i = F.broadcast(
        users_per_item.select(F.col(C.ITEM_ID).alias(C.SRC), F.col("_n").alias("_ni"))
    )
    n_j = F.broadcast(
        users_per_item.select(F.col(C.ITEM_ID).alias(C.DST), F.col("_n").alias("_nj"))
    )
    s = F.col(C.SUPPORT).cast("double")
    if params.score == "cosine":
        score = s / F.sqrt(F.col("_ni") * F.col("_nj"))
    elif params.score == "jaccard":
        score = s / (F.col("_ni") + F.col("_nj") - s)
    else:
        score = F.log(s * lists.count() / (F.col("_ni") * F.col("_nj")))
    return (
        pairs.join(n_i, C.SRC)
        .join(n_j, C.DST)
        .select(C.SRC, C.DST, F.col(C.SUPPORT).cast("long"), score.alias(C.SCORE))
        .where(F.col(C.SCORE) > 0)
    )
