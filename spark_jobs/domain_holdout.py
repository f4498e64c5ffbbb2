"""The cross-domain evaluation's held-out interactions, chosen by hash so that every stage
picks the same rows without a table of them.

Two kinds of target-domain interactions are held out of everything a model learns from
(co-engagement, the graph, user-item edges):

* every target interaction of the **cold users**, a ``cold_user_share`` of users chosen by
  a hash of their id: they keep only their other-domain history, as a user who has never
  opened the live tab;
* every interaction of the **new target items**, a ``new_item_share`` of the target items
  chosen by a hash of their id: they enter the graph by their concepts alone.

A hash of ``(seed, id)`` instead of a sample: the same ids are chosen by the graph build,
by the user-item edges and by the evaluation, however the rows are partitioned, and an
interaction added later for a chosen user or item is held out too.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from spark_jobs import constants as C
from spark_jobs.graph import entity_ids

HELD_OUT = "held_out"
COLD_USER = "cold_user"
NEW_ITEM = "new_item"
_BUCKETS = 1 << 30


@dataclass(frozen=True)
class DomainHoldout:
    target: str = ""  # empty: nothing is held out
    cold_user_share: float = 0.2
    new_item_share: float = 0.1
    seed: int = 0
    default_domain: str = "default"  # the domain of an item whose catalog row names none

    def __post_init__(self) -> None:
        for name in ("cold_user_share", "new_item_share"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    @property
    def enabled(self) -> bool:
        return bool(self.target) and (self.cold_user_share > 0 or self.new_item_share > 0)


def chosen(column: str, tag: str, share: float, seed: int) -> Column:
    """Whether ``column``'s value falls in the first ``share`` of its seeded hash range."""
    draw = F.pmod(F.xxhash64(F.lit(seed), F.lit(tag), F.col(column)), F.lit(_BUCKETS))
    return draw < F.lit(int(share * _BUCKETS))


def marked(interactions: DataFrame, catalog: DataFrame, holdout: DomainHoldout) -> DataFrame:
    """``interactions`` with ``domain`` and booleans ``cold_user``, ``new_item`` and
    ``held_out`` (a target interaction of a cold user or of a new item). An item without a
    catalog domain is in the default domain."""
    domains = F.broadcast(item_domains(catalog, holdout.default_domain))  # one row per item
    in_target = F.coalesce(F.col(C.DOMAIN), F.lit(holdout.default_domain)) == holdout.target
    cold_user = chosen(C.USER_ID, COLD_USER, holdout.cold_user_share, holdout.seed)
    new_item = in_target & chosen(C.ITEM_ID, NEW_ITEM, holdout.new_item_share, holdout.seed)
    return (
        interactions.join(domains, C.ITEM_ID, "left")
        .withColumn(COLD_USER, cold_user)
        .withColumn(NEW_ITEM, new_item)
        .withColumn(HELD_OUT, in_target & (cold_user | new_item))
    )


def training_interactions(
    interactions: DataFrame, catalog: DataFrame, holdout: DomainHoldout
) -> DataFrame:
    """The interactions a model may learn from: all of them when the holdout is off."""
    if not holdout.enabled:
        return interactions
    return (
        marked(interactions, catalog, holdout).where(~F.col(HELD_OUT)).select(*interactions.columns)
    )


ENTITY = "entity"


def _entities(nodes: DataFrame) -> DataFrame:
    return F.broadcast(entity_ids(nodes)).select(
        F.col("_k").alias(C.ITEM_ID), F.col(C.NODE_ID).alias(ENTITY)
    )


def evaluation_rows(
    interactions: DataFrame, catalog: DataFrame, nodes: DataFrame, holdout: DomainHoldout
) -> DataFrame:
    """One row per (user, graph entity) engaged: ``user_id, entity, held_out, cold_user,
    new_item``."""
    return (
        marked(interactions, catalog, holdout)
        .join(_entities(nodes), C.ITEM_ID)
        .groupBy(C.USER_ID, ENTITY)
        .agg(*(F.max(c).alias(c) for c in (HELD_OUT, COLD_USER, NEW_ITEM)))
    )


def item_domains(catalog: DataFrame, default: str) -> DataFrame:
    """``item_id, domain`` of the catalog, ``default`` where it names none."""
    return catalog.select(C.ITEM_ID, F.coalesce(C.DOMAIN, F.lit(default)).alias(C.DOMAIN))


def entity_domains(catalog: DataFrame, nodes: DataFrame, default: str) -> DataFrame:
    """``entity, domain`` of every graph entity (``default`` where the catalog has none)."""
    return (
        _entities(nodes)
        .join(item_domains(catalog, default), C.ITEM_ID, "left")
        .select(ENTITY, F.coalesce(C.DOMAIN, F.lit(default)).alias(C.DOMAIN))
    )
