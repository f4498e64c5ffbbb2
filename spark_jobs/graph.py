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


def semantic_triples(concepts: DataFrame, params: GraphParams) -> DataFrame:
    """Entity-concept triples after concept pruning.

    Concepts used by fewer than ``min_concept_entities`` entities carry no similarity
    signal and are dropped. Concepts used by more than ``max_concept_fanout`` entities
    keep a seeded random sample of that many entities (recorded in ``sampled``), so a
    hub such as a top genre cannot dominate attention or memory unnoticed.
    """
    per_concept = Window.partitionBy(C.RELATION, C.CONCEPT)
    draw = F.xxhash64(F.lit(params.seed), C.RELATION, C.CONCEPT, C.ITEM_ID)
    ranked = (
        concepts.select(C.ITEM_ID, C.RELATION, C.CONCEPT)
        .distinct()
        .withColumn("_n", F.count("*").over(per_concept))
        .where(F.col("_n") >= params.min_concept_entities)
        .withColumn("_draw", F.row_number().over(per_concept.orderBy(draw, C.ITEM_ID)))
    )
    return ranked.where(F.col("_draw") <= params.max_concept_fanout).select(
        C.ITEM_ID,
        C.RELATION,
        C.CONCEPT,
        F.col("_n").alias("concept_entities"),
        (F.col("_n") > params.max_concept_fanout).alias("sampled"),
    )


def _dense_ids(keys: DataFrame) -> DataFrame:
    """``node_type, key`` -> plus ``node_id`` numbered 0.. within each type, ordered by key."""
    order = Window.partitionBy(C.NODE_TYPE).orderBy(C.KEY)
    return keys.withColumn(C.NODE_ID, (F.row_number().over(order) - 1).cast("long"))


def build_nodes(catalog: DataFrame, triples: DataFrame) -> DataFrame:
    entities = catalog.select(F.lit(C.ENTITY).alias(C.NODE_TYPE), F.col(C.ITEM_ID).alias(C.KEY))
    concepts = triples.select(F.col(C.RELATION).alias(C.NODE_TYPE), F.col(C.CONCEPT).alias(C.KEY))
    return _dense_ids(entities.unionByName(concepts).distinct()).select(
        C.NODE_ID, C.NODE_TYPE, C.KEY
    )


def prune_eel(edges: DataFrame, params: GraphParams) -> DataFrame:
    """Symmetric EELs (``src, dst, weight`` on item ids) after min support and top-k.

    Top-k is taken per entity over both directions; an edge stays when either end keeps
    it, so the result is symmetric and no entity loses all its strongest links.
    """
    kept = edges.where(F.col(C.SUPPORT) >= params.min_support).select(C.SRC, C.DST, C.SCORE)
    both = kept.unionByName(
        kept.select(F.col(C.DST).alias(C.SRC), F.col(C.SRC).alias(C.DST), C.SCORE)
    )
    rank = Window.partitionBy(C.SRC).orderBy(F.col(C.SCORE).desc(), F.col(C.DST))
    top = both.withColumn("_r", F.row_number().over(rank)).where(F.col("_r") <= params.top_k)
    top = top.select(C.SRC, C.DST, F.col(C.SCORE).alias("weight"))
    mirrored = top.select(F.col(C.DST).alias(C.SRC), F.col(C.SRC).alias(C.DST), "weight")
    return top.unionByName(mirrored).dropDuplicates([C.SRC, C.DST])


def build_edges(nodes: DataFrame, eel: DataFrame, triples: DataFrame) -> DataFrame:
    """Edges on dense node ids: EELs (both directions) and entity -> concept edges."""
    ent = nodes.where(F.col(C.NODE_TYPE) == C.ENTITY).select(F.col(C.KEY).alias("_k"), C.NODE_ID)
    src_ids = ent.select(F.col("_k").alias(C.SRC), F.col(C.NODE_ID).alias("_s"))
    dst_ids = ent.select(F.col("_k").alias(C.DST), F.col(C.NODE_ID).alias("_d"))
    eel_edges = (
        eel.join(src_ids, C.SRC)
        .join(dst_ids, C.DST)
        .select(
            F.lit(C.ENTITY).alias(C.SRC_TYPE),
            F.col("_s").alias(C.SRC),
            F.lit(C.EEL).alias(C.RELATION),
            F.lit(C.ENTITY).alias(C.DST_TYPE),
            F.col("_d").alias(C.DST),
            F.col("weight").cast("double"),
        )
    )
    concept_ids = nodes.where(F.col(C.NODE_TYPE) != C.ENTITY).select(
        F.col(C.NODE_TYPE).alias(C.RELATION),
        F.col(C.KEY).alias(C.CONCEPT),
        F.col(C.NODE_ID).alias("_d"),
    )
    concept_edges = (
        triples.join(src_ids.withColumnRenamed(C.SRC, C.ITEM_ID), C.ITEM_ID)
        .join(concept_ids, [C.RELATION, C.CONCEPT])
        .select(
            F.lit(C.ENTITY).alias(C.SRC_TYPE),
            F.col("_s").alias(C.SRC),
            F.col(C.RELATION),
            F.col(C.RELATION).alias(C.DST_TYPE),
            F.col("_d").alias(C.DST),
            F.lit(1.0).alias("weight"),
        )
    )
    return eel_edges.unionByName(concept_edges)


def knowledge_graph(
    catalog: DataFrame, coengagement: DataFrame, triples: DataFrame, params: GraphParams
) -> dict[str, DataFrame]:
    """``nodes`` and ``edges`` tables of the pruned graph (contracts in docs/architecture.md)."""
    nodes = build_nodes(catalog, triples)
    edges = build_edges(nodes, prune_eel(coengagement, params), triples)
    return {"nodes": nodes, "edges": edges}
