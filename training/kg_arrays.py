"""The knowledge graph as the arrays that HASP and the trainers index by, and its
conversion from the ``kg_nodes``/``kg_edges`` tables (Arrow)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ENTITY = "entity"
EEL = "coengaged"


@dataclass(frozen=True)
class KGArrays:
    """The knowledge graph as arrays on dense per-type ids.

    ``eel`` holds each EEL in both directions, shape ``(2, E_eel)``;
    ``concept_edges[(relation, concept_type)]`` holds entity -> concept edges ``(2, E_r)``.
    """

    num_nodes: dict[str, int]
    eel: np.ndarray
    eel_weight: np.ndarray
    concept_edges: dict[tuple[str, str], np.ndarray]
    # each entity's domain as an index into ``domains`` (-1: none); None where the nodes
    # table has no domain column (a graph built before it had one)
    entity_domain: np.ndarray | None = None
    domains: tuple[str, ...] = ()

    @property
    def num_entities(self) -> int:
        return self.num_nodes[ENTITY]

    @property
    def concept_types(self) -> list[str]:
        return sorted(t for t in self.num_nodes if t != ENTITY)

    def without_eels(self, pairs: np.ndarray) -> KGArrays:
        """The graph with the EELs in ``pairs`` ``(2, P)`` removed in both directions."""
        n = self.num_entities
        drop = np.concatenate([pairs[0] * n + pairs[1], pairs[1] * n + pairs[0]])
        keep = ~np.isin(self.eel[0] * n + self.eel[1], drop)
        return self.with_eels(self.eel[:, keep], self.eel_weight[keep])

    def with_eels(self, eel: np.ndarray, weight: np.ndarray) -> KGArrays:
        """The same nodes and concept edges with ``eel`` ``(2, E)`` and their weights."""
        return replace(self, eel=eel, eel_weight=weight)


@dataclass(frozen=True)
class NodeSpace:
    """One id space over all node types: entities first, then each concept type."""

    offsets: dict[str, int]
    total: int

    @classmethod
    def of(cls, kg: KGArrays) -> NodeSpace:
        offsets, total = {}, 0
        for node_type in [ENTITY, *kg.concept_types]:
            offsets[node_type] = total
            total += kg.num_nodes[node_type]
        return cls(offsets, total)


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
    entity_domain, domains = _entity_domains(nodes, num_nodes[ENTITY])
    return KGArrays(
        num_nodes=num_nodes,
        eel=np.stack([eel.column("src").to_numpy(), eel.column("dst").to_numpy()]).astype(np.int64)
        if eel.num_rows
        else np.empty((2, 0), dtype=np.int64),
        eel_weight=eel.column("weight").to_numpy().astype(np.float32),
        concept_edges=concept_edges,
        entity_domain=entity_domain,
        domains=domains,
    )


def _entity_domains(nodes: pa.Table, n: int) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """Each entity's domain index (-1 where it has none) and the sorted domain names."""
    if "domain" not in nodes.column_names:
        return None, ()
    entities = nodes.filter(pc.equal(nodes.column("node_type"), ENTITY))
    named = entities.filter(pc.is_valid(entities.column("domain")))
    domains = tuple(sorted(set(named.column("domain").to_pylist())))
    codes = np.full(n, -1, dtype=np.int64)
    codes[named.column("node_id").to_numpy()] = pc.index_in(
        named.column("domain"), pa.array(domains, pa.string())
    ).to_numpy()
    return codes, domains


def kg_from_frames(knowledge_graph: dict) -> KGArrays:
    """:func:`kg_arrays` of the ``knowledge_graph`` asset's Spark DataFrames."""
    return kg_arrays(knowledge_graph["nodes"].toArrow(), knowledge_graph["edges"].toArrow())
