"""HASP: heterogeneity-aware, semantic-preserving subgraphs for memory-bounded GNN training.

After SemanticGNN (Netflix, WWW'24, section 5.2):

* **Entity node partitioning.** Entities with entity-entity links (EELs) are split by a
  METIS min-cut partition (recursive bisection) of the EEL subgraph into N near-equal
  parts, so that few EELs are cut. Entities without EELs are then added one by one to
  the least-populated part. Partitioning all entities in one METIS call instead lets
  METIS balance parts with isolated nodes and skews EEL density across parts. Entities
  never overlap.
* **Semantic node duplication.** Every shard holds every concept node and, for its
  entities, all their entity-concept edges.
* **User-defined node sampling.** Node types named in ``sample_caps`` keep a seeded random
  sample of that many nodes per shard, with their edges.
* **N from a memory budget.** N is the smallest multiple of the device count for which
  every shard's estimated training memory (:func:`estimate_bytes`) fits the budget.

Pure functions over numpy arrays; no Spark or Dagster here.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np
import pymetis
import torch
from torch_geometric.data import HeteroData

from training.arrays import grouped, unique_ints
from training.kg_arrays import EEL, ENTITY, KGArrays
from training.shard_store import HaspShards

FLOAT_BYTES = 4


@dataclass(frozen=True)
class MemoryModel:
    """What one shard's training step holds, for :func:`estimate_bytes`."""

    hidden_dim: int = 64
    layers: int = 2
    heads: int = 1

    def __post_init__(self) -> None:
        if min(self.hidden_dim, self.layers, self.heads) < 1:
            raise ValueError(f"MemoryModel needs positive hidden_dim, layers and heads: {self}")


def estimate_bytes(entities: int, concepts: int, message_edges: int, model: MemoryModel) -> int:
    """Estimated peak training memory of one shard, in bytes (float32).

    ``16·n_e·d`` entity embeddings with gradient and Adam's two moments, ``4·n_c·d``
    frozen concept features, and per layer ``16·(n_e+n_c)·d`` saved node states
    (query, key, value, output), ``4·m·d`` messages and ``8·m·H`` attention logits and
    weights, where ``m`` counts message edges in both directions.
    """
    d, n = model.hidden_dim, entities + concepts
    per_layer = 4 * n * d + message_edges * d + 2 * message_edges * model.heads
    return FLOAT_BYTES * (4 * entities * d + concepts * d + model.layers * per_layer)


def csr(num_nodes: int, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric, loop-free, deduplicated CSR (xadj, adjncy) of an edge array ``(2, E)``."""
    src = np.concatenate([edges[0], edges[1]])
    dst = np.concatenate([edges[1], edges[0]])
    keep = src != dst
    # one int64 key per pair, sorted as (src, dst): np.unique(axis=1) compared the pairs
    # as opaque bytes and was most of HASP's time (88% at 10^6 links)
    key = unique_ints(src[keep].astype(np.int64) * num_nodes + dst[keep])
    xadj = np.zeros(num_nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(key // num_nodes, minlength=num_nodes), out=xadj[1:])
    return xadj, key % num_nodes


def metis_parts(xadj: np.ndarray, adjncy: np.ndarray, n_parts: int, seed: int) -> np.ndarray:
    """METIS min-cut partition of a :func:`csr` graph into ``n_parts`` (part per node)."""
    num_nodes = len(xadj) - 1
    if n_parts == 1 or num_nodes == 0:
        return np.zeros(num_nodes, dtype=np.int64)
    if n_parts > num_nodes:
        raise ValueError(f"Cannot cut {num_nodes} nodes into {n_parts} non-empty parts")
    options = pymetis.Options(seed=seed, ufactor=10)  # at most 1% above the mean part size
    # recursive bisection at every part count (pymetis switches to k-way above 8): on the
    # co-engagement graphs measured it was faster and cut fewer EELs (113 parts of 220,000
    # entities: 2.8 s and 86.5% cut against 12.9 s and 91.2%; 14 parts at 10^6
    # interactions: 54.7% against 56.4%)
    result = pymetis.part_graph(
        n_parts, adjacency=pymetis.CSRAdjacency(xadj, adjncy), options=options, recursive=True
    )
    return np.asarray(result.vertex_part, dtype=np.int64)


def fill_least_populated(parts: np.ndarray, items: np.ndarray, n_parts: int) -> np.ndarray:
    """Assign ``items`` in order, each to the part with the fewest members so far."""
    sizes = np.bincount(parts, minlength=n_parts)
    heap = [(int(s), k) for k, s in enumerate(sizes)]
    heapq.heapify(heap)
    out = np.empty(len(items), dtype=np.int64)
    for i in range(len(items)):
        size, k = heapq.heappop(heap)
        out[i] = k
        heapq.heappush(heap, (size + 1, k))
    return out


@dataclass(frozen=True)
class LinkGraph:
    """The EEL subgraph METIS cuts: the entities with a link (in id order) and its
    :func:`csr` on their local ids, built once for every part count tried."""

    num_entities: int
    linked: np.ndarray
    xadj: np.ndarray
    adjncy: np.ndarray

    @classmethod
    def of(cls, num_entities: int, eel: np.ndarray) -> LinkGraph:
        # a count per entity, not a sort of the link ends
        counts = np.bincount(eel[:, eel[0] != eel[1]].ravel(), minlength=num_entities)
        linked = np.flatnonzero(counts)
        local = np.full(num_entities, -1, dtype=np.int64)
        local[linked] = np.arange(len(linked))
        return cls(num_entities, linked, *csr(len(linked), local[eel]))

    def parts(self, n_parts: int, seed: int) -> np.ndarray:
        """Part of every entity: METIS on the EEL subgraph, then EEL-less entities filled in."""
        if n_parts < 1:
            raise ValueError(f"n_parts must be >= 1, got {n_parts}")
        if n_parts > self.num_entities:
            raise ValueError(
                f"{n_parts} shards for {self.num_entities} entities: a shard would be empty; "
                "lower the device count or raise the memory budget"
            )
        parts = np.full(self.num_entities, -1, dtype=np.int64)
        linked = self.linked
        if len(linked) >= n_parts:
            parts[linked] = metis_parts(self.xadj, self.adjncy, n_parts, seed)
        else:  # too few linked entities to cut: they join the fill like the rest
            linked = np.empty(0, dtype=np.int64)
        rest = np.flatnonzero(parts < 0)
        rest = np.random.default_rng(seed).permutation(rest)
        parts[rest] = fill_least_populated(parts[linked], rest, n_parts)
        return parts


def cut_fraction(parts: np.ndarray, eel: np.ndarray) -> float:
    """Share of EELs whose ends lie in different parts."""
    if eel.shape[1] == 0:
        return 0.0
    return float(np.mean(parts[eel[0]] != parts[eel[1]]))


def random_parts(num_entities: int, n_parts: int, seed: int) -> np.ndarray:
    """Equal-size random partition: the baseline a min-cut partition must beat."""
    return np.random.default_rng(seed).permutation(num_entities) % n_parts


@dataclass(frozen=True)
class HaspParams:
    memory_budget_bytes: int = 256 * 2**20
    device_count: int = 1
    model: MemoryModel = field(default_factory=MemoryModel)
    sample_caps: dict[str, int] = field(default_factory=dict)
    seed: int = 0
    max_shards: int | None = None  # stop searching for N here (default: one entity per shard)

    @classmethod
    def of_manifest(cls, manifest: dict) -> HaspParams:
        """The parameters a shard set's manifest records (to shard another view alike)."""
        return cls(
            manifest["memory_budget_bytes"],
            manifest["device_count"],
            MemoryModel(**manifest["model"]),
            dict(manifest["sample_caps"]),
            manifest["seed"],
        )


@dataclass
class ShardPlan:
    parts: np.ndarray
    n_shards: int
    estimates: list[int]
    cut_eel_fraction: float
    random_cut_eel_fraction: float


def concept_nodes(kg: KGArrays, caps: dict[str, int]) -> int:
    """Concept nodes in every shard: all of each type, or its sample cap."""
    return sum(min(kg.num_nodes[t], caps.get(t, kg.num_nodes[t])) for t in kg.concept_types)


def shard_counts(
    kg: KGArrays, parts: np.ndarray, n: int, caps: dict[str, int]
) -> list[tuple[int, int, int]]:
    """(entities, concept nodes, message edges) per shard, before building the shards."""
    entities = np.bincount(parts, minlength=n)
    concepts = concept_nodes(kg, caps)
    internal = parts[kg.eel[0]] == parts[kg.eel[1]]
    eel_edges = np.bincount(parts[kg.eel[0]][internal], minlength=n)
    concept_edges = np.zeros(n, dtype=np.int64)
    for (_, ctype), edges in kg.concept_edges.items():
        share = min(1.0, caps.get(ctype, math.inf) / max(kg.num_nodes[ctype], 1))
        concept_edges += np.ceil(np.bincount(parts[edges[0]], minlength=n) * share).astype(np.int64)
    return [
        (int(entities[k]), concepts, int(eel_edges[k] + 2 * concept_edges[k])) for k in range(n)
    ]


def plan_shards(kg: KGArrays, params: HaspParams) -> ShardPlan:
    """Smallest N (a multiple of the device count) whose shards all fit the budget."""
    for node_type in params.sample_caps:
        if node_type == ENTITY or node_type not in kg.num_nodes:
            raise ValueError(
                f"sample_caps names node type {node_type!r}; it must be one of the concept "
                f"types {kg.concept_types} (entities are partitioned, not sampled)"
            )
    if kg.num_entities == 0:
        raise ValueError("The knowledge graph has no entities to partition")
    if params.device_count < 1:
        raise ValueError(f"device_count must be >= 1, got {params.device_count}")
    concept_floor = estimate_bytes(0, concept_nodes(kg, params.sample_caps), 0, params.model)
    if concept_floor > params.memory_budget_bytes:
        raise ValueError(
            f"memory_budget_bytes={params.memory_budget_bytes} is below the {concept_floor} bytes "
            "that the concept nodes alone need in every shard; raise the budget or sample "
            "concept types with sample_caps"
        )
    limit = min(params.max_shards or kg.num_entities, kg.num_entities)
    n = params.device_count
    graph = LinkGraph.of(kg.num_entities, kg.eel)
    while n <= limit:
        parts = graph.parts(n, params.seed)
        estimates = [
            estimate_bytes(e, c, m, params.model)
            for e, c, m in shard_counts(kg, parts, n, params.sample_caps)
        ]
        if max(estimates) <= params.memory_budget_bytes:
            return ShardPlan(
                parts=parts,
                n_shards=n,
                estimates=estimates,
                cut_eel_fraction=cut_fraction(parts, kg.eel),
                random_cut_eel_fraction=cut_fraction(
                    random_parts(kg.num_entities, n, params.seed), kg.eel
                ),
            )
        # jump close to the N the estimate asks for instead of trying every multiple
        need = math.ceil(n * max(estimates) / params.memory_budget_bytes)
        n = max(
            n + params.device_count, math.ceil(need / params.device_count) * params.device_count
        )
    raise ValueError(
        f"No shard count up to {limit} fits memory_budget_bytes={params.memory_budget_bytes} "
        f"(device_count={params.device_count}); raise the budget"
    )


def build_shards(
    kg: KGArrays, parts: np.ndarray, n: int, caps: dict[str, int], seed: int
) -> list[HeteroData]:
    """Every shard ``k < n``: its entities, every (or a sample of each capped) concept
    type, their edges, each edge set in the graph's order.

    Every node store carries ``global_id`` (the graph-wide dense id) so that trained
    embeddings map back to the knowledge graph. Each edge set is grouped by shard with
    one stable sort, so building all shards is one pass over the graph, not one per
    shard (113 passes at 10^7 interactions, where the shard count grows with the graph).
    """
    members, member_bounds = grouped(parts, n)
    local = np.empty(kg.num_entities, dtype=np.int64)  # each entity's id in its shard
    local[members] = np.arange(kg.num_entities) - member_bounds[parts[members]]
    internal = np.flatnonzero(parts[kg.eel[0]] == parts[kg.eel[1]])
    eel_order, eel_bounds = grouped(parts[kg.eel[0, internal]], n)
    eel_rows = internal[eel_order]
    concept_groups = {key: grouped(parts[e[0]], n) for key, e in kg.concept_edges.items()}
    shards = []
    for k in range(n):
        data = HeteroData()
        entities = members[member_bounds[k] : member_bounds[k + 1]]
        data[ENTITY].global_id = torch.from_numpy(entities)
        data[ENTITY].num_nodes = len(entities)
        if kg.entity_domain is not None:  # what EELs are typed by where a model asks for it
            data[ENTITY].domain = torch.from_numpy(kg.entity_domain[entities])
            data.domains = list(kg.domains)
        rows = eel_rows[eel_bounds[k] : eel_bounds[k + 1]]
        data[ENTITY, EEL, ENTITY].edge_index = torch.from_numpy(local[kg.eel[:, rows]])
        data[ENTITY, EEL, ENTITY].edge_weight = torch.from_numpy(kg.eel_weight[rows]).float()

        rng = np.random.default_rng([seed, k])
        for ctype in kg.concept_types:
            n_type = kg.num_nodes[ctype]
            kept = np.arange(n_type)
            if ctype in caps and caps[ctype] < n_type:
                kept = np.sort(rng.choice(n_type, size=caps[ctype], replace=False))
            data[ctype].global_id = torch.from_numpy(kept)
            data[ctype].num_nodes = len(kept)
            concept_local = np.full(n_type, -1, dtype=np.int64)
            concept_local[kept] = np.arange(len(kept))
            for (relation, dst_type), edges in kg.concept_edges.items():
                if dst_type != ctype:
                    continue
                order, bounds = concept_groups[relation, dst_type]
                mine = order[bounds[k] : bounds[k + 1]]
                mine = mine[concept_local[edges[1, mine]] >= 0]
                data[ENTITY, relation, ctype].edge_index = torch.from_numpy(
                    np.stack([local[edges[0, mine]], concept_local[edges[1, mine]]])
                )
        shards.append(data)
    return shards


def shard_summary(shard: HeteroData) -> dict[str, int]:
    concept_types = [t for t in shard.node_types if t != ENTITY]
    return {
        "entities": int(shard[ENTITY].num_nodes),
        "concept_nodes": sum(int(shard[t].num_nodes) for t in concept_types),
        "eel_edges": int(shard[ENTITY, EEL, ENTITY].edge_index.shape[1]),
        "concept_edges": sum(
            int(shard[et].edge_index.shape[1]) for et in shard.edge_types if et[1] != EEL
        ),
    }


def build_hasp(kg: KGArrays, params: HaspParams) -> HaspShards:
    """Plan N, partition, build every shard; return the shards and their manifest."""
    plan = plan_shards(kg, params)
    shards = build_shards(kg, plan.parts, plan.n_shards, params.sample_caps, params.seed)
    per_shard = [
        {**shard_summary(s), "estimated_bytes": est}
        for s, est in zip(shards, plan.estimates, strict=True)
    ]
    manifest = {
        "n_shards": plan.n_shards,
        "seed": params.seed,
        "device_count": params.device_count,
        "memory_budget_bytes": params.memory_budget_bytes,
        "model": {
            "hidden_dim": params.model.hidden_dim,
            "layers": params.model.layers,
            "heads": params.model.heads,
        },
        "sample_caps": dict(params.sample_caps),
        "num_nodes": dict(kg.num_nodes),
        "eel_edges_directed": int(kg.eel.shape[1]),
        "cut_eel_fraction": plan.cut_eel_fraction,
        "random_cut_eel_fraction": plan.random_cut_eel_fraction,
        "shards": per_shard,
    }
    return HaspShards(shards, manifest)
