"""The pruned heterogeneous knowledge graph: entity and concept nodes, EEL and concept edges.

Node ids are dense per node type (``0..n_type-1``), which is what the GNN's embedding
tables and the HASP partitioner index by. Entity-entity co-engagement links (EEL) are
stored in both directions; entity-concept edges once, entity to concept.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from spark_jobs import constants as C
from spark_jobs import top_k


@dataclass(frozen=True)
class GraphParams:
    min_support: int = C.DEFAULT_MIN_SUPPORT
    top_k: int = (
        C.DEFAULT_TOP_K
    )  # EEL neighbours kept per entity (an edge stays if either end keeps it)
    min_concept_entities: int = C.DEFAULT_MIN_CONCEPT_ENTITIES
    max_concept_fanout: int = C.DEFAULT_MAX_CONCEPT_FANOUT  # larger concepts are sampled down
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("min_support", "top_k", "min_concept_entities", "max_concept_fanout"):
            if getattr(self, name) < 1:
                raise ValueError(f"GraphParams.{name} must be >= 1, got {getattr(self, name)}")


def prune_triples(concepts: DataFrame, params: GraphParams) -> DataFrame:
    """Entity-concept triples after concept pruning.

    Concepts used by fewer than ``min_concept_entities`` entities carry no similarity
    signal and are dropped. Concepts used by more than ``max_concept_fanout`` entities
    keep a seeded random sample of that many entities (recorded in ``sampled``), so a
    hub such as a top genre cannot dominate attention or memory unnoticed. A triple given
    twice counts once.
    """
    per_concept = Window.partitionBy(C.RELATION, C.CONCEPT)
    draw = per_concept.orderBy(
        F.xxhash64(F.lit(params.seed), C.RELATION, C.CONCEPT, C.ITEM_ID), C.ITEM_ID
    )
    # one shuffle and one sort: in draw order a repeated triple follows its first copy, so
    # the dense rank is the draw among distinct triples and its maximum their count
    ranked = (
        concepts.select(C.ITEM_ID, C.RELATION, C.CONCEPT)
        .repartition(C.RELATION, C.CONCEPT)
        .select(
            "*",
            F.dense_rank().over(draw).alias("_draw"),
            F.lag(C.ITEM_ID).over(draw).alias("_previous"),
        )
        .withColumn("_n", F.max("_draw").over(per_concept))
    )
    first = F.col("_previous").isNull() | (F.col("_previous") != F.col(C.ITEM_ID))
    return ranked.where(
        first
        & (F.col("_n") >= params.min_concept_entities)
        & (F.col("_draw") <= params.max_concept_fanout)
    ).select(
        C.ITEM_ID,
        C.RELATION,
        C.CONCEPT,
        F.col("_n").cast("long").alias("concept_entities"),
        (F.col("_n") > params.max_concept_fanout).alias("sampled"),
    )


def _dense_ids(keys: DataFrame) -> DataFrame:
    """``node_type, key`` -> plus ``node_id`` numbered 0.. within each type, ordered by key."""
    order = Window.partitionBy(C.NODE_TYPE).orderBy(C.KEY)
    return keys.withColumn(C.NODE_ID, (F.row_number().over(order) - 1).cast("long"))


def build_nodes(catalog: DataFrame, triples: DataFrame) -> DataFrame:
    """Entities (with their catalog domain: the cross-domain encoders type EELs by it) and
    concepts (no domain), numbered densely per type."""
    entities = catalog.select(
        F.lit(C.ENTITY).alias(C.NODE_TYPE), F.col(C.ITEM_ID).alias(C.KEY), C.DOMAIN
    )
    concepts = triples.select(
        F.col(C.RELATION).alias(C.NODE_TYPE),
        F.col(C.CONCEPT).alias(C.KEY),
        F.lit(None).cast("string").alias(C.DOMAIN),
    )
    keys = entities.unionByName(concepts).groupBy(C.NODE_TYPE, C.KEY)
    return _dense_ids(keys.agg(F.max(C.DOMAIN).alias(C.DOMAIN))).select(*C.NODE_COLUMNS)


def prune_eel(edges: DataFrame, params: GraphParams) -> DataFrame:
    """Symmetric EELs (``src, dst, weight``) after min support and top-k, for ``src <
    dst`` pairs on integer ids below 2^31 (:func:`on_entity_ids`).

    Top-k is taken per entity over both directions (score descending, then the other
    end's id); an edge stays when either end keeps it, so the result is symmetric and no
    entity loses all its strongest links. The ranking runs in numpy
    (:func:`spark_jobs.top_k.symmetric_top_k`): no window, and the pairs are read once.
    """
    kept = edges.where(F.col(C.SUPPORT) >= params.min_support).select(C.SRC, C.DST, C.SCORE)
    return top_k.symmetric_top_k(kept, params.top_k)


def entity_ids(nodes: DataFrame) -> DataFrame:
    """``_k`` (an item id) and ``node_id`` of every entity node."""
    return nodes.where(F.col(C.NODE_TYPE) == C.ENTITY).select(F.col(C.KEY).alias("_k"), C.NODE_ID)


def on_entity_ids(pairs: DataFrame, nodes: DataFrame) -> DataFrame:
    """``pairs`` with ``src`` and ``dst`` replaced by entity node ids; pairs with an end
    that is not an entity node are dropped (ingest quarantines interactions of items
    outside the catalog, so none are). Node ids follow item id order, so ``src < dst``
    and every order by id hold on the ids too."""
    ent = F.broadcast(entity_ids(nodes))  # one row per item: small beside the pairs
    return (
        pairs.join(ent.withColumnRenamed("_k", C.SRC), C.SRC)
        .drop(C.SRC)
        .withColumnRenamed(C.NODE_ID, C.SRC)
        .join(ent.withColumnRenamed("_k", C.DST), C.DST)
        .drop(C.DST)
        .withColumnRenamed(C.NODE_ID, C.DST)
    )


def eel_edges(eel: DataFrame) -> DataFrame:
    """Edge rows of EELs already on entity node ids (``src, dst, weight``)."""
    return eel.select(
        F.lit(C.ENTITY).alias(C.SRC_TYPE),
        F.col(C.SRC).cast("long"),
        F.lit(C.EEL).alias(C.RELATION),
        F.lit(C.ENTITY).alias(C.DST_TYPE),
        F.col(C.DST).cast("long"),
        F.col("weight").cast("double"),
    )


def concept_edges(nodes: DataFrame, triples: DataFrame) -> DataFrame:
    """Entity -> concept edge rows of ``triples`` on node ids."""
    ent = F.broadcast(entity_ids(nodes)).withColumnRenamed("_k", C.ITEM_ID)
    concept_ids = nodes.where(F.col(C.NODE_TYPE) != C.ENTITY).select(
        F.col(C.NODE_TYPE).alias(C.RELATION),
        F.col(C.KEY).alias(C.CONCEPT),
        F.col(C.NODE_ID).alias("_d"),
    )
    return (
        triples.join(ent, C.ITEM_ID)
        .join(concept_ids, [C.RELATION, C.CONCEPT])
        .select(
            F.lit(C.ENTITY).alias(C.SRC_TYPE),
            F.col(C.NODE_ID).alias(C.SRC),
            F.col(C.RELATION),
            F.col(C.RELATION).alias(C.DST_TYPE),
            F.col("_d").alias(C.DST),
            F.lit(1.0).alias("weight"),
        )
    )


def build_edges(nodes: DataFrame, eel: DataFrame, triples: DataFrame) -> DataFrame:
    """Edges on dense node ids: EELs given on item ids (both directions) and entity ->
    concept edges."""
    return eel_edges(on_entity_ids(eel, nodes)).unionByName(concept_edges(nodes, triples))


def build_graph(
    catalog: DataFrame, coengagement: DataFrame, triples: DataFrame, params: GraphParams
) -> dict[str, DataFrame]:
    """``nodes`` and ``edges`` tables of the pruned graph (contracts in docs/architecture.md)."""
    nodes = build_nodes(catalog, triples)
    eel = prune_eel(on_entity_ids(coengagement, nodes), params)
    edges = eel_edges(eel).unionByName(concept_edges(nodes, triples))
    return {"nodes": nodes, "edges": edges}
