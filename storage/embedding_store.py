"""The served embedding matrix: a memory-mapped float32 file plus its row index.

A folder holds ``vectors.npy`` ``(N, dim)`` float32 (open with ``mmap_mode="r"``: loading is
free and pages come in on demand), ``entities.parquet`` (row -> entity id, item id,
log-degree, whether it was embedded inductively) and ``meta.json`` (model version, the
learned popularity-prior weight).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

VECTORS, ENTITIES, META = "vectors.npy", "entities.parquet", "meta.json"


@dataclass(frozen=True)
class EntityVectors:
    """Every entity's vectors from one model version (row = entity id), before serving."""

    model_version: str
    vectors: np.ndarray  # (N, dim) float32
    log_degree: np.ndarray  # (N,) log(1 + EEL degree)
    inductive: np.ndarray  # (N,) bool: embedded without a trained id


@dataclass
class EmbeddingMatrix:
    vectors: np.ndarray  # (N, dim) float32
    entities: pa.Table  # entity_id, item_id, log_degree, inductive; row i <-> vectors[i]
    meta: dict[str, Any]

    def __post_init__(self) -> None:
        if self.vectors.shape[0] != self.entities.num_rows:
            raise ValueError(
                f"{self.vectors.shape[0]} vectors but {self.entities.num_rows} entity rows"
            )

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / VECTORS, np.ascontiguousarray(self.vectors, dtype=np.float32))
        pq.write_table(self.entities, folder / ENTITIES)
        (folder / META).write_text(json.dumps(self.meta, indent=2))


def open_matrix(folder: Path) -> EmbeddingMatrix:
    """The matrix at ``folder``, vectors memory-mapped read-only."""
    missing = [f for f in (VECTORS, ENTITIES, META) if not (folder / f).exists()]
    if missing:
        raise FileNotFoundError(f"Embedding matrix at {folder} lacks {missing}")
    return EmbeddingMatrix(
        np.load(folder / VECTORS, mmap_mode="r"),
        pq.read_table(folder / ENTITIES),
        json.loads((folder / META).read_text()),
    )


def embedding_rows(
    entity_ids: np.ndarray,
    item_ids: pa.Array | list[str],
    model_version: str,
    vectors: np.ndarray,
    log_degree: np.ndarray,
    inductive: np.ndarray,
) -> pa.Table:
    """Rows of the ``entity_embeddings`` Delta table (contract in docs/architecture.md)."""
    return pa.table(
        {
            "entity_id": pa.array(entity_ids, pa.int64()),
            "item_id": pa.array(item_ids, pa.string()),
            "model_version": pa.array([model_version] * len(entity_ids), pa.string()),
            "embedding": pa.array(list(vectors.astype(np.float32)), type=pa.list_(pa.float32())),
            "log_degree": pa.array(log_degree, pa.float32()),
            "inductive": pa.array(inductive, pa.bool_()),
        }
    )
