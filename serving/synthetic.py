"""Clustered embedding matrices for tests and seconds-long benchmark runs."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from storage.embedding_store import EmbeddingMatrix


def clustered_matrix(
    n: int, dim: int = 16, clusters: int = 20, new_share: float = 0.1, seed: int = 0
) -> tuple[EmbeddingMatrix, pa.Table]:
    """``n`` vectors around ``clusters`` centres (a cluster shares a genre); the last
    ``new_share`` are new items sitting exactly on their centre, so they share one vector
    per cluster, as items with the same concepts and no history do. Also the concepts."""
    rng = np.random.default_rng(seed)
    cluster = np.arange(n) % clusters
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    vectors = centres[cluster] + 0.3 * rng.normal(size=(n, dim)).astype(np.float32)
    new = np.arange(n) >= n - int(new_share * n)
    vectors[new] = centres[cluster[new]]
    log_degree = np.where(new, 0, rng.uniform(0, 4, n)).astype(np.float32)
    entities = pa.table(
        {
            "entity_id": np.arange(n),
            "item_id": [f"item-{i}" for i in range(n)],
            "log_degree": log_degree,
            "inductive": new,
        }
    )
    concepts = pa.table({"entity_id": np.arange(n), "concept": [f"genre:g{c}" for c in cluster]})
    meta = {
        "model_version": f"synthetic-{seed}",
        "popularity_prior": True,
        "popularity_weight": 0.05,
    }
    return EmbeddingMatrix(vectors, entities, meta), concepts
