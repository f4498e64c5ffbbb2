"""Graph assets: co-engagement edges, semantic triples, the knowledge graph and its profile."""

from typing import Literal

import dagster as dg
from pydantic import Field
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from resources.cross_domain import CrossDomainResource
from resources.io_manager import CONFIG, TableWrite
from resources.markdown import markdown_table
from resources.measure import Measure
from resources.metadata import rounded
from resources.plots import log_histogram, loglog_distribution, png_markdown
from resources.spark_lake import SparkResource
from settings import config_field, current
from spark_jobs import constants as C
from spark_jobs import graph_checks
from spark_jobs.coengagement import CoengagementParams, build_coengagement
from spark_jobs.domain_holdout import training_interactions
from spark_jobs.graph import GraphParams, build_graph, prune_triples
from spark_jobs.graph_stats import component_sizes, connected_components, eel_degrees

GROUP = "graph"


class CoengagementConfig(dg.Config):
    window_days: float | None = config_field("window_days")
    max_items_per_user: int = Field(
        C.DEFAULT_MAX_ITEMS_PER_USER,
        description="A user's most recent items that count (heavy users are capped).",
    )
    min_support: int = Field(
        C.DEFAULT_MIN_SUPPORT, description="Users a pair needs in common to be kept."
    )
    min_weight: float = Field(0.0, description="Interactions below this weight are ignored.")
    score: Literal["cosine", "ppmi", "jaccard"] = Field(
        "cosine", description="How a pair's co-engagement is scored."
    )


class GraphConfig(dg.Config):
    min_support: int = Field(
        C.DEFAULT_MIN_SUPPORT, description="Co-engagement support an EEL needs."
    )
    top_k: int = Field(
        C.DEFAULT_TOP_K, description="EELs kept per entity, its strongest (both ends vote)."
    )
    min_concept_entities: int = Field(
        C.DEFAULT_MIN_CONCEPT_ENTITIES,
        description="Concepts with fewer entities carry no similarity and are dropped.",
    )
    max_concept_fanout: int = Field(
        C.DEFAULT_MAX_CONCEPT_FANOUT,
        description="Concepts with more entities keep a seeded sample of this many.",
    )
    seed: int = Field(0, description="Seed of the concept sampling.")


@dg.asset(group_name=GROUP)
def coengagement_edges(
    context: dg.AssetExecutionContext,
    config: CoengagementConfig,
    cross_domain: CrossDomainResource,
    raw_interactions: DataFrame,
    item_catalog: DataFrame,
) -> dg.Output[TableWrite]:
    """Item pairs co-engaged by the same users within a window, with support and score.
    With a cross-domain target configured, its held-out interactions are left out."""
    holdout = cross_domain.holdout
    with Measure() as m:
        interactions = training_interactions(raw_interactions, item_catalog, holdout)
        edges = build_coengagement(
            interactions, CoengagementParams(**config.model_dump())
        ).persist()
        stats = edges.agg(
            F.count("*").alias("edges"),
            F.countDistinct(C.SRC).alias("src_items"),
            F.max(C.SUPPORT).alias("max_support"),
            F.avg(C.SCORE).alias("mean_score"),
        ).first()
    context.log.info(f"{stats['edges']} co-engagement pairs")
    held = {}
    if holdout.enabled:
        held["cross_domain_held_out_rows"] = raw_interactions.count() - interactions.count()
        context.log.info(f"{held['cross_domain_held_out_rows']} {holdout.target} rows held out")
    return dg.Output(
        TableWrite(edges, "overwrite", {CONFIG: config.model_dump_json()}),
        metadata=rounded(
            {
                "edges": stats["edges"],
                "max_support": stats["max_support"] or 0,
                "mean_score": float(stats["mean_score"] or 0.0),
                **held,
                **m.metadata("compute"),
            }
        ),
    )


@dg.asset(group_name=GROUP)
def semantic_triples(
    context: dg.AssetExecutionContext, config: GraphConfig, item_concepts: DataFrame
) -> dg.Output[DataFrame]:
    """Entity-concept triples after dropping rare concepts and sampling hub concepts."""
    with Measure() as m:
        triples = prune_triples(item_concepts, GraphParams(**config.model_dump())).persist()
        per_relation = {
            r[C.RELATION]: (r["triples"], r["concepts"], r["sampled"])
            for r in triples.groupBy(C.RELATION)
            .agg(
                F.count("*").alias("triples"),
                F.countDistinct(C.CONCEPT).alias("concepts"),
                F.countDistinct(F.when(F.col("sampled"), F.col(C.CONCEPT))).alias("sampled"),
            )
            .collect()
        }
        rows_in = item_concepts.count()
    kept = sum(t for t, _, _ in per_relation.values())
    table = markdown_table(
        ["relation", "triples", "concepts", "concepts sampled down"],
        [(rel, *counts) for rel, counts in sorted(per_relation.items())],
    )
    context.log.info(f"{kept} of {rows_in} triples kept after concept pruning")
    return dg.Output(
        triples,
        metadata=rounded(
            {
                "triples_in": rows_in,
                "triples_kept": kept,
                "by_relation": dg.MetadataValue.md(table),
                **m.metadata("compute"),
            }
        ),
    )


@dg.asset(group_name=GROUP)
def knowledge_graph(
    context: dg.AssetExecutionContext,
    config: GraphConfig,
    item_catalog: DataFrame,
    coengagement_edges: DataFrame,
    semantic_triples: DataFrame,
) -> dg.Output[TableWrite]:
    """Entity and concept nodes with dense ids; symmetric top-k EELs and entity-concept edges."""
    with Measure() as m:
        graph = build_graph(
            item_catalog, coengagement_edges, semantic_triples, GraphParams(**config.model_dump())
        )
        nodes, edges = graph["nodes"].persist(), graph["edges"].persist()
        node_counts = dict(nodes.groupBy(C.NODE_TYPE).count().collect())
        edge_counts = dict(edges.groupBy(C.RELATION).count().collect())
        histogram = eel_degrees(nodes, edges).groupBy(C.DEGREE).count().orderBy(C.DEGREE).collect()
    degrees = {r[C.DEGREE]: r["count"] for r in histogram}
    entities = node_counts.get(C.ENTITY, 0)
    cold_share = degrees.get(0, 0) / max(entities, 1)
    eel_total = edge_counts.get(C.EEL, 0)
    plot = loglog_distribution(
        list(degrees),
        list(degrees.values()),
        title="Entities by EEL degree",
        xlabel="EEL degree",
        cap=config.top_k,
        cap_label=f"top_k = {config.top_k} (each end keeps its strongest)",
    )
    context.log.info(
        f"Graph: {node_counts} nodes, {edge_counts} edges, cold-start {cold_share:.1%}"
    )
    return dg.Output(
        TableWrite(
            {"nodes": nodes, "edges": edges}, "overwrite", {CONFIG: config.model_dump_json()}
        ),
        metadata=rounded(
            {
                "nodes_by_type": dg.MetadataValue.json(node_counts),
                "edges_by_relation": dg.MetadataValue.json(edge_counts),
                "entities": entities,
                "eel_edges_directed": eel_total,
                "mean_eel_degree": eel_total / max(entities, 1),
                "max_eel_degree": max(degrees, default=0),
                "cold_start_share": cold_share,
                "plot_eel_degrees": png_markdown(plot, "Entities by EEL degree"),
                **m.metadata("compute"),
            }
        ),
    )


@dg.asset(group_name=GROUP)
def graph_profile(
    context: dg.AssetExecutionContext, spark: SparkResource, knowledge_graph: dict[str, DataFrame]
) -> dg.Output[dict[str, DataFrame]]:
    """EEL degrees and connected components (GraphFrames when loaded, else DataFrames)."""
    nodes, edges = knowledge_graph["nodes"], knowledge_graph["edges"]
    use_graphframes = spark.capabilities.graphframes
    with Measure() as m:
        degrees = eel_degrees(nodes, edges)
        components = connected_components(nodes, edges, use_graphframes).persist()
        sizes = component_sizes(components).collect()
    entities = sum(r["size"] for r in sizes)
    size_hist: dict[int, int] = {}
    for r in sizes:
        size_hist[r["size"]] = size_hist.get(r["size"], 0) + 1
    plot = log_histogram(
        [r["size"] for r in sizes], title="Connected components by size", xlabel="entities"
    )
    largest = sizes[0]["size"] if sizes else 0
    context.log.info(f"{len(sizes)} components, largest {largest} of {entities} entities")
    return dg.Output(
        {"degrees": degrees, "components": components},
        metadata=rounded(
            {
                "algorithm": "graphframes"
                if use_graphframes
                else "dataframe min-label propagation",
                "components": len(sizes),
                "largest_component": largest,
                "largest_component_share": largest / max(entities, 1),
                "singletons": size_hist.get(1, 0),
                "plot_component_sizes": png_markdown(plot, "Connected components by size"),
                **m.metadata("compute"),
            }
        ),
    )


def _zero(name: str, count: int, what: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=count == 0,
        metadata={name: count},
        description=f"{count} {what}" if count else None,
    )


@dg.asset_check(asset=knowledge_graph, blocking=True)
def kg_ids_resolve(knowledge_graph: dict[str, DataFrame]) -> dg.AssetCheckResult:
    """Every edge endpoint is a node of the named type."""
    n = graph_checks.dangling_endpoints(knowledge_graph["nodes"], knowledge_graph["edges"])
    return _zero("dangling_endpoints", n, "edge endpoints name no node")


@dg.asset_check(asset=knowledge_graph, blocking=True)
def kg_eel_symmetric_loop_free(knowledge_graph: dict[str, DataFrame]) -> dg.AssetCheckResult:
    """Every EEL has its reverse; no entity links to itself."""
    edges = knowledge_graph["edges"]
    asym, loops = graph_checks.eel_asymmetric(edges), graph_checks.eel_self_loops(edges)
    return dg.AssetCheckResult(
        passed=asym == 0 and loops == 0,
        metadata={"asymmetric_eels": asym, "self_loops": loops},
    )


@dg.asset_check(asset=knowledge_graph, blocking=True)
def kg_no_duplicate_edges(knowledge_graph: dict[str, DataFrame]) -> dg.AssetCheckResult:
    n = graph_checks.duplicate_edges(knowledge_graph["edges"])
    return _zero("duplicate_edges", n, "duplicate edges")


@dg.asset_check(asset=knowledge_graph, blocking=True)
def kg_weights_finite_positive(knowledge_graph: dict[str, DataFrame]) -> dg.AssetCheckResult:
    n = graph_checks.bad_weights(knowledge_graph["edges"])
    return _zero("bad_weights", n, "edges with a null, NaN, infinite or non-positive weight")


@dg.asset_check(asset=knowledge_graph)
def kg_cold_start_share(
    knowledge_graph: dict[str, DataFrame],
) -> dg.AssetCheckResult:
    """Share of entities with no EEL: the items the graph must embed from concepts alone.

    Reported, and a warning above the configured share: a graph that is mostly cold
    start means the co-engagement thresholds or the interaction data need a look.
    """
    limit = current().max_cold_start_share
    degrees = eel_degrees(knowledge_graph["nodes"], knowledge_graph["edges"])
    row = degrees.agg(
        F.count("*").alias("n"), F.sum((F.col(C.DEGREE) == 0).cast("int")).alias("cold")
    ).first()
    share = (row["cold"] or 0) / max(row["n"], 1)
    return dg.AssetCheckResult(
        passed=share <= limit,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"cold_start_share": share, "cold_entities": row["cold"] or 0, "limit": limit},
    )


@dg.asset_check(asset=coengagement_edges, blocking=True)
def coengagement_pairs_unique(coengagement_edges: DataFrame) -> dg.AssetCheckResult:
    """Each pair stored once, as ``src < dst`` (so no self-loops either)."""
    n = graph_checks.duplicate_pairs(coengagement_edges)
    return _zero("bad_pairs", n, "pairs duplicated or not stored as src < dst")
