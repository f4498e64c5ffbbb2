"""Refreshed embeddings: the primary model run over the whole graph, new items included."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame

from resources.measure import Measure
from resources.metadata import rounded
from settings import config_field
from storage.embedding_store import EmbeddingMatrix, embedding_rows
from training.checkpoint import load_model_set
from training.device import pick_device
from training.inference import embed_graph
from training.kg_arrays import kg_arrays

GROUP = "embeddings"


# one setting for every full-graph inference (refresh, evaluation, incremental updates)


class InferenceConfig(dg.Config):
    memory_budget_mb: int = config_field("inference_memory_budget_mb")


@dg.multi_asset(
    group_name=GROUP,
    outs={
        "entity_embeddings": dg.AssetOut(
            description="One row per entity: its vector, model version, log-degree, and "
            "whether it was embedded inductively (no trained id).",
        ),
        "embedding_matrix": dg.AssetOut(
            io_manager_key="folder_io_manager",
            description="The same vectors as a memory-mapped float32 matrix for fast loading.",
        ),
    },
)
def entity_embeddings(
    context: dg.AssetExecutionContext,
    config: InferenceConfig,
    gnn_checkpoint: Path,
    knowledge_graph: dict[str, pa.Table],
) -> Iterator[dg.Output]:
    """Full-graph inference with the primary checkpoint, chunked to the memory budget."""
    models = load_model_set(gnn_checkpoint)
    checkpoint = models.primary_checkpoint
    version = gnn_checkpoint.name
    device = pick_device()
    nodes = knowledge_graph["nodes"]
    kg = kg_arrays(nodes, knowledge_graph["edges"])

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 10) == 0:
            context.log.info(f"Inference: {done}/{total} chunk steps")

    with Measure() as m:
        out = embed_graph(
            checkpoint, kg, config.memory_budget_mb, device, progress, refine_walk=True
        )
    entities = nodes.filter(pc.equal(nodes.column("node_type"), "entity")).sort_by("node_id")
    ids = np.arange(kg.num_entities, dtype=np.int64)
    if not np.array_equal(entities.column("node_id").to_numpy(), ids):
        raise ValueError("knowledge_graph entity ids are not dense 0..N-1")
    vectors = out.vectors.numpy().astype(np.float32)
    if not np.isfinite(vectors).all():
        raise ValueError(f"Inference produced non-finite vectors for model {version}")
    table = embedding_rows(
        ids,
        entities.column("key"),
        version,
        vectors,
        out.log_degree.numpy(),
        out.inductive.numpy(),
    )
    state = checkpoint.result.state_dict
    weight = float(state["popularity_weight"])
    meta = {
        "model_version": version,
        "model": models.primary,
        "dim": int(vectors.shape[1]),
        "popularity_prior": checkpoint.config.popularity_prior,
        "popularity_weight": weight,
        "new_item_popularity_weight": weight + float(state.get("cold_prior_shift", 0.0)),
        # how much of a new item's walk factors come from its concept neighbours'
        "new_item_concept_share": float(state.get("concept_walk_share", 0.0)),
    }
    inductive = int(out.inductive.sum())
    context.log.info(
        f"Embedded {len(ids)} entities ({inductive} inductively) in {out.chunks} chunks/layer"
    )
    common = {
        "rows": len(ids),
        "inductive_entities": inductive,
        "model_version": version,
        "chunks_per_layer": out.chunks,
        "memory_budget_mb": config.memory_budget_mb,
        "entities_per_second": len(ids) / max(m.seconds, 1e-9),
        "device": str(device),
        **m.metadata("compute"),
    }
    yield dg.Output(table, output_name="entity_embeddings", metadata=rounded(common))
    matrix = EmbeddingMatrix(vectors, table.drop_columns(["embedding", "model_version"]), meta)
    yield dg.Output(matrix, output_name="embedding_matrix", metadata=rounded(common))


@dg.asset_check(
    asset="entity_embeddings",
    blocking=True,
    additional_ins={"knowledge_graph": dg.AssetIn("knowledge_graph")},
)
def embeddings_cover_graph(
    entity_embeddings: DataFrame, knowledge_graph: dict[str, DataFrame]
) -> dg.AssetCheckResult:
    """Every entity of the graph has exactly one vector, of one model version."""
    rows = entity_embeddings.count()
    distinct = entity_embeddings.select("entity_id").distinct().count()
    versions = entity_embeddings.select("model_version").distinct().count()
    entities = knowledge_graph["nodes"].filter("node_type = 'entity'").count()
    return dg.AssetCheckResult(
        passed=rows == distinct == entities and versions == 1,
        metadata={"rows": rows, "distinct_entities": distinct, "graph_entities": entities},
    )
