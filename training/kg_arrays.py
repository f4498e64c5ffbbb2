"""Knowledge-graph tables (Arrow) to the arrays that HASP and the trainers index by."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from training.hasp import EEL, ENTITY, KGArrays


def kg_arrays(nodes: pa.Table, edges: pa.Table) -> KGArrays:
    """``kg_nodes`` and ``kg_edges`` (contracts in docs/architecture.md) as :class:`KGArrays`."""
    counts = nodes.group_by("node_type").aggregate([("node_id", "max")])
    num_nodes = {
        t: int(m) + 1
        for t, m in zip(
            counts.column("node_type").to_pylist(),
            counts.column("node_id_max").to_pylist(),
            strict=True,
        )
    }
    num_nodes.setdefault(ENTITY, 0)
    is_eel = pc.equal(edges.column("relation"), EEL)
    eel = edges.filter(is_eel)
    concept = edges.filter(pc.invert(is_eel))
    pairs = concept.group_by(["relation", "dst_type"]).aggregate([]).to_pylist()
    concept_edges = {}
    for pair in sorted((p["relation"], p["dst_type"]) for p in pairs):
        rows = concept.filter(
            pc.and_(
                pc.equal(concept.column("relation"), pair[0]),
                pc.equal(concept.column("dst_type"), pair[1]),
            )
        )
        concept_edges[pair] = np.stack(
            [rows.column("src").to_numpy(), rows.column("dst").to_numpy()]
        ).astype(np.int64)
    return KGArrays(
        num_nodes=num_nodes,
        eel=np.stack([eel.column("src").to_numpy(), eel.column("dst").to_numpy()]).astype(np.int64)
        if eel.num_rows
        else np.empty((2, 0), dtype=np.int64),
        eel_weight=eel.column("weight").to_numpy().astype(np.float32),
        concept_edges=concept_edges,
    )


def kg_from_frames(knowledge_graph: dict) -> KGArrays:
    """:func:`kg_arrays` of the ``knowledge_graph`` asset's Spark DataFrames."""
    return kg_arrays(knowledge_graph["nodes"].toArrow(), knowledge_graph["edges"].toArrow())
