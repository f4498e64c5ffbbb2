"""Refreshing a served bundle in place: new and changed entities' vectors go into the
index without a rebuild (no retraining: the vectors come from the current checkpoint,
inductively for new items)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from serving.artifact import IndexBundle, load_bundle
from serving.build import concept_labels, described
from serving.index import item_vectors
from storage.embedding_store import EntityVectors
from storage.versions import latest, publish

INDUCTIVE_SINCE_RETRAIN = "inductive_since_retrain"


def refresh_bundle(
    bundle: IndexBundle,
    entities: pa.Table,
    vectors: np.ndarray,
    log_degree: np.ndarray,
    affected: np.ndarray,
    new_inductive: int,
    concepts: pa.Table,
    version: str,
    catalog: pa.Table | None = None,
) -> IndexBundle:
    """``bundle`` with ``affected`` entity ids moved to their rows of ``vectors``.

    ``entities`` (``entity_id, item_id``) and ``concepts`` describe the whole updated graph;
    ``vectors``/``log_degree`` hold every entity's new embedding and degree (row = id).
    ``new_inductive`` entities embedded without retraining are added to the running count
    that the drift check reads. ``catalog``: the items whose titles and domains answers show.
    """
    affected = np.unique(np.asarray(affected, dtype=np.int64))
    items = item_vectors(vectors[affected], log_degree[affected], True)
    bundle.index.upsert(affected, items)
    all_vectors = np.array(bundle.vectors, dtype=np.float32)
    if len(vectors) > len(all_vectors):
        grown = np.zeros((len(vectors), all_vectors.shape[1]), dtype=np.float32)
        grown[: len(all_vectors)] = all_vectors
        all_vectors = grown
    all_vectors[affected] = vectors[affected]
    table = entities.select(["entity_id", "item_id"]).sort_by("entity_id")
    table = table.append_column("log_degree", pa.array(log_degree[: table.num_rows], pa.float32()))
    table = described(table, catalog)
    meta = {
        **bundle.meta,
        "index_version": version,
        INDUCTIVE_SINCE_RETRAIN: int(bundle.meta.get(INDUCTIVE_SINCE_RETRAIN, 0)) + new_inductive,
        "entities": table.num_rows,
    }
    kept = concepts.filter(pc.is_in(concepts.column("entity_id"), pa.array(affected)))
    others = bundle.concepts.filter(
        pc.invert(pc.is_in(bundle.concepts.column("entity_id"), pa.array(affected)))
    )
    merged = pa.concat_tables([others, kept.cast(others.schema)]).sort_by("entity_id")
    return IndexBundle(bundle.index, all_vectors, table, merged, meta)


def publish_refresh(
    index_root: Path,
    nodes: pa.Table,
    edges: pa.Table,
    embedded: EntityVectors,
    affected: np.ndarray,
    new_entities: int,
    version: str,
    catalog: pa.Table,
) -> None:
    """Publish ``version`` under ``index_root``: the latest bundle with ``affected``
    entities moved to their vectors in ``embedded`` over the graph ``nodes``/``edges``
    (``catalog``: the items, for titles and domains)."""
    entities = nodes.filter(pc.equal(nodes.column("node_type"), "entity"))
    entities = entities.select(["node_id", "key"]).rename_columns(["entity_id", "item_id"])
    bundle = refresh_bundle(
        load_bundle(latest(index_root)),
        entities,
        embedded.vectors,
        embedded.log_degree,
        affected,
        new_entities,
        concept_labels(nodes, edges),
        version,
        catalog,
    )
    publish(bundle, index_root, version)
