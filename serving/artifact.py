"""The served bundle: an ANN index plus what answers need beyond ids.

A folder holds the index (see :mod:`serving.index`), ``vectors.npy`` (every entity's
embedding, row = entity id: query vectors are built from it), ``entities.parquet``
(entity id, item id, log-degree), ``concepts.parquet`` (entity id, concept label) and
``bundle.json`` (model version, popularity-prior weights, tuning results), written last.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
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

    @cached_property
    def log_degree(self) -> np.ndarray:
        """``log(1 + EEL degree)`` by entity id (rows are entity ids in order)."""
        return self.entities.column("log_degree").to_numpy()

    def prior_weights(self, entity_ids: np.ndarray, prior: float | None = None) -> np.ndarray:
        """Each query's popularity-prior weight: ``prior`` when the caller names one, else
        the model's validated weight, or its weight for new items for an entity without
        EELs (bundles from before that weight existed use the one weight for both)."""
        if prior is not None:
            return np.full(len(entity_ids), prior, dtype=np.float32)
        warm = self.meta["popularity_weight"]
        new = self.meta.get("new_item_popularity_weight", warm)
        return np.where(self.log_degree[entity_ids] > 0, warm, new).astype(np.float32)

    def query(self, entity_ids: np.ndarray, prior: float | None = None) -> np.ndarray:
        """Query-side vectors ``[h, w]`` of entities (see :meth:`prior_weights`)."""
        return query_vectors(self.vectors[entity_ids], self.prior_weights(entity_ids, prior))


def bundle_meta(folder: Path) -> dict[str, Any]:
    """A bundle's metadata alone (its model version, ...), without loading its index."""
    return json.loads((folder / BUNDLE).read_text())


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
