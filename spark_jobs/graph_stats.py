"""Degrees and connected components of the EEL graph.

Components come from GraphFrames when its JVM package is loaded, otherwise from
min-label propagation with pointer jumping on DataFrames; both label a component by
its smallest node id, so the two agree row for row.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_jobs import constants as C

MAX_ITERATIONS = 100


def eel_edges(edges: DataFrame) -> DataFrame:
    return edges.where(F.col(C.RELATION) == C.EEL).select(C.SRC, C.DST)


def entity_ids(nodes: DataFrame) -> DataFrame:
    return nodes.where(F.col(C.NODE_TYPE) == C.ENTITY).select(C.NODE_ID)


def eel_degrees(nodes: DataFrame, edges: DataFrame) -> DataFrame:
    """``node_id, degree`` for every entity; entities without EELs have degree 0."""
    deg = eel_edges(edges).groupBy(F.col(C.SRC).alias(C.NODE_ID)).agg(F.count("*").alias(C.DEGREE))
    return entity_ids(nodes).join(deg, C.NODE_ID, "left").fillna(0, [C.DEGREE])


def components_dataframe(vertices: DataFrame, edges: DataFrame) -> DataFrame:
    """``node_id, component`` by min-label propagation; the label is the component's min id.

    Each round every node takes the smallest label among itself and its neighbours, then
    jumps to its label's label (which is never larger and in the same component), so
    long paths collapse in logarithmically many rounds rather than one hop per round.
    """
    both = edges.select(C.SRC, C.DST).unionByName(
        edges.select(F.col(C.DST).alias(C.SRC), F.col(C.SRC).alias(C.DST))
    )
    labels = vertices.select(C.NODE_ID, F.col(C.NODE_ID).alias(C.COMPONENT)).localCheckpoint()
    for _ in range(MAX_ITERATIONS):
        neighbour_min = (
            both.join(labels.withColumnRenamed(C.NODE_ID, C.DST), C.DST)
            .groupBy(F.col(C.SRC).alias(C.NODE_ID))
            .agg(F.min(C.COMPONENT).alias("_m"))
        )
        stepped = labels.join(neighbour_min, C.NODE_ID, "left").select(
            C.NODE_ID, F.least(C.COMPONENT, F.coalesce("_m", C.COMPONENT)).alias("_l")
        )
        target = stepped.select(F.col(C.NODE_ID).alias("_l"), F.col("_l").alias("_ll"))
        jumped = (
            stepped.join(target, "_l")
            .select(C.NODE_ID, F.least("_l", "_ll").alias(C.COMPONENT))
            .localCheckpoint()
        )
        changed = jumped.join(labels.withColumnRenamed(C.COMPONENT, "_old"), C.NODE_ID).where(
            F.col(C.COMPONENT) != F.col("_old")
        )
        labels = jumped
        if changed.isEmpty():
            return labels
    raise RuntimeError(f"Connected components did not converge in {MAX_ITERATIONS} rounds")


def components_graphframes(vertices: DataFrame, edges: DataFrame) -> DataFrame:
    """``node_id, component`` from GraphFrames (needs its JVM package and a checkpoint dir)."""
    from graphframes import GraphFrame

    graph = GraphFrame(
        vertices.select(F.col(C.NODE_ID).alias("id")),
        edges.select(F.col(C.SRC).alias("src"), F.col(C.DST).alias("dst")),
    )
    found = graph.connectedComponents()
    # GraphFrames names a component by its smallest vertex id, as components_dataframe does.
    return found.select(F.col("id").alias(C.NODE_ID), F.col("component").alias(C.COMPONENT))


def connected_components(nodes: DataFrame, edges: DataFrame, use_graphframes: bool) -> DataFrame:
    vertices, eel = entity_ids(nodes), eel_edges(edges)
    if use_graphframes:
        return components_graphframes(vertices, eel)
    return components_dataframe(vertices, eel)


def component_sizes(components: DataFrame) -> DataFrame:
    return components.groupBy(C.COMPONENT).agg(F.count("*").alias("size")).orderBy(F.desc("size"))
