"""The served bundle: an ANN index plus what answers need beyond ids.

A folder holds the index (see :mod:`serving.index`), ``vectors.npy`` (every entity's
embedding, row = entity id: query vectors are built from it), ``entities.parquet``
(entity id, item id, log-degree), ``concepts.parquet`` (entity id, concept label) and
``bundle.json`` (model version, popularity-prior weight, tuning results), written last.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from serving.index import VectorIndex, load_index, query_vectors

VECTORS, ENTITIES, CONCEPTS, BUNDLE = (
    "vectors.npy",
    "entities.parquet",
    "concepts.parquet",
    "bundle.json",
)


@dataclass
class IndexBundle:
    index: VectorIndex
    vectors: np.ndarray  # (N, dim) float32, row = entity id
    entities: pa.Table  # entity_id, item_id, log_degree
    concepts: pa.Table  # entity_id, concept
    meta: dict[str, Any]

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.index.save(folder)
        np.save(folder / VECTORS, np.ascontiguousarray(self.vectors, dtype=np.float32))
        pq.write_table(self.entities, folder / ENTITIES)
        pq.write_table(self.concepts, folder / CONCEPTS)
        (folder / BUNDLE).write_text(json.dumps(self.meta, indent=2))

    @property
    def version(self) -> str:
        return str(self.meta["index_version"])

    def entity_ids(self) -> dict[str, int]:
        """Item id -> entity id of every entity the bundle describes."""
        return dict(
            zip(
                self.entities.column("item_id").to_pylist(),
                self.entities.column("entity_id").to_pylist(),
                strict=True,
            )
        )

    def query(self, entity_ids: np.ndarray) -> np.ndarray:
        """Query-side vectors ``[h, w]`` of entities."""
        return query_vectors(self.vectors[entity_ids], self.meta["popularity_weight"])


def load_bundle(folder: Path) -> IndexBundle:
    if not (folder / BUNDLE).exists():
        raise FileNotFoundError(f"No index bundle at {folder} (no {BUNDLE})")
    return IndexBundle(
        load_index(folder),
        np.load(folder / VECTORS, mmap_mode="r"),
        pq.read_table(folder / ENTITIES),
        pq.read_table(folder / CONCEPTS),
        json.loads((folder / BUNDLE).read_text()),
    )
