"""The ANN index the service loads: built only from a model that passed the quality gate."""

from datetime import timedelta
from pathlib import Path

import dagster as dg
import pyarrow as pa
from pydantic import Field

from resources.markdown import markdown_table
from resources.measure import Measure
from resources.metadata import rounded
from serving.artifact import IndexBundle
from serving.build import build_bundle, compare_variants, concept_labels
from serving.index import IndexParams
from settings import config_field
from spark_jobs import constants as C
from storage.embedding_store import open_matrix

GROUP = "serving"


class AnnIndexConfig(dg.Config):
    m: int = Field(32, description="HNSW links per node.")
    ef_construction: int = Field(200, description="HNSW candidate list while building.")
    quantize: str = config_field("index_quantize")
    target_recall: float = Field(
        0.95, description="Recall@10 against exact search that the search depth is tuned to."
    )
    sample_queries: int = Field(500, description="Queries that measure recall.")
    compare_quantized: bool = Field(
        False,
        description="Also build and measure sq8 and fp16 indexes against exact search (off by "
        "default: two more indexes, each tuned up its ef grid, were most of the step's 373 s "
        "at 400,000 entities; turn it on to see what quantization costs on these vectors).",
    )
    seed: int = Field(0, description="Seed of the recall queries.")


@dg.asset(
    group_name=GROUP,
    io_manager_key="folder_io_manager",
    # after the evaluation: its blocking quality gate keeps a bad model out of the index
    deps=["embedding_evaluation"],
    # the nightly refresh rebuilds it; incremental updates publish versions in between
    freshness_policy=dg.FreshnessPolicy.time_window(
        fail_window=timedelta(hours=26), warn_window=timedelta(hours=24)
    ),
)
def ann_index(
    context: dg.AssetExecutionContext,
    config: AnnIndexConfig,
    embedding_matrix: Path,
    knowledge_graph: dict[str, pa.Table],
    item_catalog: pa.Table,
) -> dg.Output[IndexBundle]:
    """HNSW over the served score, ef_search tuned to the target recall@10 against exact
    search, reached with 95% confidence over the sample queries (exact search itself where
    HNSW misses the target at the largest ef_search);
    item concepts, titles and domains beside it (so answers can say what two items share
    and what they are)."""
    params = IndexParams(
        m=config.m,
        ef_construction=config.ef_construction,
        quantize=config.quantize,
        target_recall=config.target_recall,
        sample_queries=config.sample_queries,
        seed=config.seed,
    )
    matrix = open_matrix(embedding_matrix)
    with Measure() as m:
        concepts = concept_labels(knowledge_graph["nodes"], knowledge_graph["edges"])
        items = item_catalog.select(C.CATALOG_COLUMNS)
        rows, built = [], {}
        if config.compare_quantized:  # first: the served index is one of those it builds
            keep = frozenset({("hnsw", params.quantize), ("flat", "none")})
            rows, built = compare_variants(matrix, params, ("none", "sq8", "fp16"), keep)
        bundle, tuning, build_seconds = build_bundle(
            matrix, concepts, params, context.run_id, items, built
        )
    replaced = bundle.meta.get("replaced_hnsw_recall_at_10")
    if replaced is not None:
        context.log.warning(
            f"HNSW reached recall@10 {replaced:.3f} at the largest ef_search tried "
            f"({max(params.ef_grid)}), below the target {config.target_recall}: serving exact "
            f"search (recall@10 {tuning.recall_at_10:.3f})"
        )
    elif tuning.recall_at_10 < config.target_recall:
        context.log.warning(
            f"recall@10 {tuning.recall_at_10:.3f} is below the target {config.target_recall} "
            f"at the largest ef_search tried ({tuning.ef_search})"
        )
    curve = markdown_table(
        ["ef_search", "recall@10", "recall@10, 95% lower bound", "QPS"],
        [
            (p["ef"], f"{p['recall']:.3f}", f"{p['recall_low']:.3f}", f"{p['qps']:,.0f}")
            for p in tuning.curve
        ],
    )
    metadata = {
        "model_version": bundle.meta["model_version"],
        "index_kind": bundle.index.params.kind,  # "flat" where HNSW missed the target
        "entities": len(bundle.index),
        "distinct_vectors": len(bundle.index.members),
        "norm_parts": len(bundle.index.parts),  # faiss indexes, one per norm range
        "recall_at_10": tuning.recall_at_10,
        # what ef_search was chosen by: the target reached with 95% confidence over queries
        "recall_at_10_lower_bound": tuning.recall_at_10_low,
        "target_recall_at_10": config.target_recall,
        # how far below the target the largest ef_search tried stayed (0: met)
        "recall_shortfall": round(max(0.0, config.target_recall - tuning.recall_at_10), 4),
        **({"replaced_hnsw_recall_at_10": replaced} if replaced is not None else {}),
        "ef_search": tuning.ef_search,
        "queries_per_second": tuning.queries_per_second,
        "build_seconds": build_seconds,
        "ef_curve": dg.MetadataValue.md(curve),
        **m.metadata("compute"),
    }
    if rows:
        table = markdown_table(
            ["index", "ef_search", "recall@10", "QPS", "bytes"],
            [
                (
                    r["index"],
                    r["ef_search"],
                    f"{r['recall_at_10']:.3f}",
                    f"{r['queries_per_second']:,.0f}",
                    f"{r['bytes']:,}",
                )
                for r in rows
            ],
        )
        metadata["variants"] = dg.MetadataValue.md(table)
    search = "exact search" if replaced is not None else f"ef_search {tuning.ef_search}"
    context.log.info(
        f"Index over {len(bundle.index)} entities: recall@10 {tuning.recall_at_10:.3f} at "
        f"{search}, {tuning.queries_per_second:,.0f} QPS"
    )
    return dg.Output(bundle, metadata=rounded(metadata))
