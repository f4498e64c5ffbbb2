"""Building the served bundle from an embedding matrix: index, tuning, concept labels."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from serving.artifact import IndexBundle
from serving.index import (
    IndexParams,
    Tuning,
    VectorIndex,
    build,
    item_vectors,
    sample_queries,
    tune,
)
from storage.embedding_store import EmbeddingMatrix

ITEM_FACTS = ("title", "domain")  # catalog columns served beside each result


def concept_labels(nodes: pa.Table, edges: pa.Table) -> pa.Table:
    """``entity_id, concept`` (``"<relation>:<concept key>"``) of every entity->concept edge."""
    concept = edges.filter(
        pc.and_(
            pc.equal(edges.column("src_type"), "entity"),
            pc.not_equal(edges.column("dst_type"), "entity"),
        )
    ).select(["src", "relation", "dst_type", "dst"])
    joined = concept.join(
        nodes.select(["node_type", "node_id", "key"]),
        keys=["dst_type", "dst"],
        right_keys=["node_type", "node_id"],
    )
    labels = pc.binary_join_element_wise(joined.column("relation"), joined.column("key"), ":")
    return pa.table({"entity_id": joined.column("src"), "concept": labels}).sort_by("entity_id")


def served_items(matrix: EmbeddingMatrix) -> np.ndarray:
    log_degree = matrix.entities.column("log_degree").to_numpy()
    return item_vectors(np.asarray(matrix.vectors), log_degree, matrix.meta["popularity_prior"])


def prior_weights(matrix: EmbeddingMatrix) -> tuple[float, float]:
    """The popularity prior's weight for queries with EELs and for new items (0 for a
    model without the prior; one weight for both in matrices from before the second)."""
    if not matrix.meta["popularity_prior"]:
        return 0.0, 0.0
    warm = matrix.meta["popularity_weight"]
    return warm, matrix.meta.get("new_item_popularity_weight", warm)


def described(entities: pa.Table, items: pa.Table | None) -> pa.Table:
    """``entities`` (``entity_id, item_id, ...``) with each item's title and domain from
    ``items`` (the catalog: ``item_id, title, domain``), so that answers can show them."""
    if items is None:
        return entities
    catalog = items.select(["item_id", *ITEM_FACTS]).cast(
        pa.schema([("item_id", pa.string()), *((c, pa.string()) for c in ITEM_FACTS)])
    )
    kept = entities.drop_columns([c for c in ITEM_FACTS if c in entities.column_names])
    return kept.join(catalog, keys="item_id", join_type="left outer").sort_by("entity_id")


@dataclass(frozen=True)
class Built:
    """An index built and tuned on the sample queries, and its build seconds."""

    index: VectorIndex
    tuning: Tuning
    seconds: float


Kind = tuple[str, str]  # (IndexParams.kind, IndexParams.quantize)


def _built(items: np.ndarray, ids: np.ndarray, params: IndexParams, queries: np.ndarray) -> Built:
    start = time.perf_counter()
    index = build(items, ids, params)
    seconds = time.perf_counter() - start
    return Built(index, tune(index, items, queries), seconds)


def _queries(matrix: EmbeddingMatrix, items: np.ndarray, params: IndexParams) -> np.ndarray:
    weight, _ = prior_weights(matrix)
    return sample_queries(items, weight, params.sample_queries, params.seed)


def build_bundle(
    matrix: EmbeddingMatrix,
    concepts: pa.Table,
    params: IndexParams,
    version: str,
    catalog: pa.Table | None = None,
    built: Mapping[Kind, Built] | None = None,
) -> tuple[IndexBundle, Tuning, float]:
    """The index over ``matrix`` with ``ef_search`` tuned to the target recall; the
    tuning and the build seconds. An HNSW index that misses the target at the largest
    ``ef_search`` tried is replaced by exact search when ``params.exact_fallback``
    (the bundle's meta keeps the HNSW recall it replaced). ``catalog``: the items whose
    titles and domains the answers show. ``built``: indexes of these params already built
    and tuned (by :func:`compare_variants`), used instead of building them again."""
    ids = matrix.entities.column("entity_id").to_numpy()
    if not np.array_equal(ids, np.arange(len(ids))):
        raise ValueError("embedding_matrix rows must be entity ids 0..N-1 in order")
    items = served_items(matrix)
    weight, new_item_weight = prior_weights(matrix)
    queries = _queries(matrix, items, params)
    built = built or {}

    def get(kind: str) -> Built:
        done = built.get((kind, params.quantize if kind == "hnsw" else "none"))
        return done or _built(items, ids, replace(params, kind=kind), queries)

    chosen = get(params.kind)
    seconds, replaced = chosen.seconds, {}
    missed = chosen.tuning.recall_at_10 < params.target_recall
    if params.kind == "hnsw" and params.exact_fallback and missed:
        replaced = {"replaced_hnsw_recall_at_10": chosen.tuning.recall_at_10}
        chosen = get("flat")
        seconds += chosen.seconds
    index, tuning = chosen.index, chosen.tuning
    meta = {
        "index_kind": index.params.kind,
        **replaced,
        "index_version": version,
        "model_version": matrix.meta["model_version"],
        "popularity_weight": weight,
        "new_item_popularity_weight": new_item_weight,
        "recall_at_10": tuning.recall_at_10,
        "ef_search": tuning.ef_search,
        "queries_per_second": tuning.queries_per_second,
    }
    entities = matrix.entities.select(["entity_id", "item_id", "log_degree"])
    entities = described(entities, catalog)
    return IndexBundle(index, np.asarray(matrix.vectors), entities, concepts, meta), tuning, seconds


def compare_variants(
    matrix: EmbeddingMatrix,
    params: IndexParams,
    variants: tuple[str, ...],
    keep: frozenset[Kind] = frozenset(),
) -> tuple[list[dict[str, float | str]], dict[Kind, Built]]:
    """Recall, rate and memory of each quantization (and exact search) on the same
    queries; the indexes of ``keep`` built and tuned (for :func:`build_bundle`, which
    would build them again)."""
    items = served_items(matrix)
    ids = matrix.entities.column("entity_id").to_numpy()
    queries = _queries(matrix, items, params)
    rows, kept = [], {}
    for kind, quantize in [("flat", "none"), *[("hnsw", q) for q in variants]]:
        done = _built(items, ids, replace(params, kind=kind, quantize=quantize), queries)
        if (kind, quantize) in keep:
            kept[kind, quantize] = done
        rows.append(
            {
                "index": "exact (flat)" if kind == "flat" else f"HNSW {quantize}",
                "ef_search": done.tuning.ef_search if kind == "hnsw" else 0,
                "recall_at_10": done.tuning.recall_at_10,
                "queries_per_second": done.tuning.queries_per_second,
                "bytes": done.index.nbytes(),
            }
        )
    return rows, kept
