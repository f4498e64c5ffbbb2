"""User-item edges on graph ids: the user nodes that Metapath2Vec walks through.

One edge per (user, item) of the training interactions, capped to each user's most recent
items exactly as co-engagement caps them (:func:`spark_jobs.coengagement.user_items`), so
that a heavy user weighs no more in the walks than in the graph. Users are numbered
``0..U-1`` in id order; items carry their entity node id and domain.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from spark_jobs import constants as C
from spark_jobs.coengagement import CoengagementParams, user_items
from spark_jobs.graph import entity_ids

USER = "user"
ENTITY = "entity"


def user_item_edges(
    interactions: DataFrame, domains: DataFrame, nodes: DataFrame, params: CoengagementParams
) -> DataFrame:
    """``user_id, user, item_id, entity, domain`` rows, one per kept (user, item);
    ``domains`` has one ``item_id, domain`` row per item."""
    pairs = user_items(interactions, params).select(C.USER_ID, C.ITEM_ID)
    users = (
        pairs.select(C.USER_ID)
        .distinct()
        .withColumn(USER, (F.row_number().over(Window.orderBy(C.USER_ID)) - 1).cast("long"))
    )
    entities = F.broadcast(entity_ids(nodes)).select(
        F.col("_k").alias(C.ITEM_ID), F.col(C.NODE_ID).alias(ENTITY)
    )
    return (
        pairs.join(users, C.USER_ID)
        .join(entities, C.ITEM_ID)
        .join(F.broadcast(domains), C.ITEM_ID, "left")
        .select(C.USER_ID, USER, C.ITEM_ID, ENTITY, C.DOMAIN)
    )
