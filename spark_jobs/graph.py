"""The pruned heterogeneous knowledge graph: entity and concept nodes, EEL and concept edges.

Node ids are dense per node type (``0..n_type-1``), which is what the GNN's embedding
tables and the HASP partitioner index by. Entity-entity co-engagement links (EEL) are
stored in both directions; entity-concept edges once, entity to concept.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from spark_jobs import blocks, top_k
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


def prune_triples(concepts: DataFrame, params: GraphParams) -> DataFrame:
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
    entity loses all its strongest links. Each entity's k-th link is found in numpy
    (:mod:`spark_jobs.top_k`); a pair is then kept by comparing it with its two ends'
    bounds, with no window and no further shuffle of the pairs.
    """
    # cached: the bounds and the filter both scan it, and a scan of the stored pairs is a
    # Parquet read and two joins (the caller's write ends its use)
    kept = (
        edges.where(F.col(C.SUPPORT) >= params.min_support).select(C.SRC, C.DST, C.SCORE).persist()
    )
    # cached too: each end's join broadcasts it, and Spark does not reuse one broadcast
    # of a Python map's output for the other (measured: the links' shuffle ran twice)
    bounds = blocks.exchange(
        kept, top_k.directed_blocks, top_k.kth_links(params.top_k), top_k.BOUNDS
    ).persist()

    def ranked_by(end: str, other: str) -> tuple[DataFrame, Column]:
        # one row per entity with more than k links (24 B): broadcast, so that the
        # pairs are filtered where they lie instead of shuffled to the bounds
        b = F.broadcast(bounds).select(
            F.col(top_k.NODE).alias(f"_{end}"),
            F.col(top_k.BOUND_SCORE).alias(f"_{end}_score"),
            F.col(top_k.BOUND_OTHER).alias(f"_{end}_other"),
        )
        score, bound = F.col(C.SCORE), F.col(f"_{end}_score")
        within = (
            bound.isNull()  # k links or fewer: all kept
            | (score > bound)
            | ((score == bound) & (F.col(other) <= F.col(f"_{end}_other")))
        )
        return b, within

    by_src, in_src = ranked_by(C.SRC, C.DST)
    by_dst, in_dst = ranked_by(C.DST, C.SRC)
    # both directions from one scan (a union of the pairs and their mirror would scan twice)
    ways = F.array(
        F.struct(F.col(C.SRC).alias(C.SRC), F.col(C.DST).alias(C.DST)),
        F.struct(F.col(C.DST).alias(C.SRC), F.col(C.SRC).alias(C.DST)),
    )
    return (
        kept.join(by_src, F.col(C.SRC) == F.col(f"_{C.SRC}"), "left")
        .join(by_dst, F.col(C.DST) == F.col(f"_{C.DST}"), "left")
        .where(in_src | in_dst)
        .select(F.explode(ways).alias("_way"), F.col(C.SCORE).alias("weight"))
        .select(f"_way.{C.SRC}", f"_way.{C.DST}", "weight")
    )


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
