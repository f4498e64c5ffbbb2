"""Item-item co-engagement edges from user interactions.

Two items are co-engaged when one user engaged both within a time window. Each user
contributes at most ``max_items_per_user`` (most recent) items, so a user adds at most
``cap * (cap - 1) / 2`` pairs and the cost grows linearly with interactions rather than
quadratically with the heaviest users.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from spark_jobs import blocks, user_pairs
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
        .select(C.USER_ID, C.ITEM_ID, F.col(C.TS).cast("long").alias(user_pairs.T))
    )


def build_coengagement(interactions: DataFrame, params: CoengagementParams) -> DataFrame:
    """``src < dst`` item pairs with ``support`` (distinct users) and a normalized ``score``.

    Scores, with ``n_i`` the users of item i after the cap and ``N`` all users:
    cosine ``s / sqrt(n_i n_j)``; jaccard ``s / (n_i + n_j - s)``; ppmi ``log(s N / (n_i n_j))``,
    pairs with PMI <= 0 dropped (they co-occur no more than chance), so every score is > 0.
    """
    engaged = interactions.where(F.col(C.WEIGHT) >= params.min_weight)
    # integer codes in id order, so pairs aggregate on one long and code order is id order
    codes = (
        engaged.select(C.ITEM_ID)
        .distinct()
        .withColumn(user_pairs.CODE, F.row_number().over(Window.orderBy(C.ITEM_ID)) - 1)
        .persist()
    )
    # one exchange by user and no aggregation: the latest engagement per item and the cap
    # happen in numpy, on each user's rows. Its partition count is fixed: adaptive
    # execution would coalesce these few MiB into fewer tasks than cores, while their
    # pairs are most of the job's work
    parts = int(interactions.sparkSession.conf.get("spark.sql.shuffle.partitions") or 8)
    engagements = (
        engaged.join(F.broadcast(codes), C.ITEM_ID)
        .select(user_pairs.OWNER, F.unix_micros(C.TS).alias(user_pairs.MICROS), user_pairs.CODE)
        .repartition(parts, user_pairs.OWNER)
    )
    window = None if params.window_days is None else int(params.window_days * 86_400)
    key = F.col(user_pairs.KEY)
    # pair keys travel as a few packed blocks per bucket, not as one shuffled row each;
    # persisted because the item counts (self-pairs) and the pairs both read it
    totals = (
        blocks.exchange(
            engagements,
            functools.partial(user_pairs.partition_pairs, window, params.max_items_per_user),
            user_pairs.pair_totals(params.min_support),
            user_pairs.TOTALS,
        )
        .select(
            F.shiftright(key, 32).cast("int").alias("_lo"),
            (key.bitwiseAND(0xFFFFFFFF)).cast("int").alias("_hi"),
            C.SUPPORT,
        )
        .persist()
    )
    counts = (
        totals.where(F.col("_lo") == F.col("_hi"))
        .select(F.col("_lo").alias(user_pairs.CODE), F.col(C.SUPPORT).alias("_n"))
        .join(F.broadcast(codes), user_pairs.CODE)
    )
    pairs = totals.where(F.col("_lo") < F.col("_hi"))
    n_i = counts.select(
        F.col(C.ITEM_ID).alias(C.SRC), F.col("_n").alias("_ni"), F.col(user_pairs.CODE).alias("_lo")
    )
    n_j = counts.select(
        F.col(C.ITEM_ID).alias(C.DST), F.col("_n").alias("_nj"), F.col(user_pairs.CODE).alias("_hi")
    )
    s = F.col(C.SUPPORT).cast("double")
    if params.score == "cosine":
        score = s / F.sqrt(F.col("_ni") * F.col("_nj"))
    elif params.score == "jaccard":
        score = s / (F.col("_ni") + F.col("_nj") - s)
    else:
        n_users = engaged.select(C.USER_ID).distinct().count()
        score = F.log(s * n_users / (F.col("_ni") * F.col("_nj")))
    return (
        pairs.join(F.broadcast(n_i), "_lo")
        .join(F.broadcast(n_j), "_hi")
        .select(C.SRC, C.DST, F.col(C.SUPPORT).cast("long"), score.alias(C.SCORE))
        .where(F.col(C.SCORE) > 0)
    )
