"""Full-graph inference: every entity embedded over the whole knowledge graph.

Layer by layer, in chunks of target entities: a chunk's layer output needs only the
edges into it, so each step holds node-level tensors plus the per-edge tensors of one
chunk, and chunks are cut so that those fit ``memory_budget_mb``. Exact: the result
equals one full forward pass. Concept nodes receive no messages, so their rows come in
one cheap chunk of their own (a convolution's bias can still move them).

Entities whose id embedding was never trained (new items, held-out entities) are
embedded as the trainer's pseudo-new ones: id and popularity inputs masked, from their
concept edges and whatever EELs they have. The walk factors are those of the graph being
embedded, so a new item's EELs give it factors of its own; one without EELs gets them
predicted, partly from its concept neighbours' (:mod:`training.concept_neighbours`). No
retraining.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor

from storage.embedding_store import EntityVectors
from storage.versions import latest
from training.checkpoint import Checkpoint, load_model_set
from training.concept_neighbours import ConceptNeighbours, concept_matrix
from training.device import pick_device
from training.hasp import build_shards
from training.kg_arrays import ENTITY, KGArrays, kg_arrays
from training.model import EntityEncoder
from training.shard_graph import ShardGraph, shard_graph
from training.spectral import aligned, refined_walk, walk_factors

# subspace steps refining the trained walk factors for the graph embedded: top-10
# neighbours by the walk agree 0.94 with a fresh randomized SVD's on the benchmark lake
# (two fresh ones with different seeds agree 0.96), in a third of its time
REFINE_STEPS = 3


@dataclass(frozen=True)
class Embedded:
    vectors: Tensor  # (n_e, out_dim): served vectors (walk part, then h)
    log_degree: Tensor  # (n_e,) log(1 + EEL degree) in the inference graph
    inductive: Tensor  # (n_e,) bool: embedded without a trained id
    chunks: int  # target chunks per layer


def as_trained(
    kg: KGArrays, features: dict[str, Tensor], relations: list[str]
) -> tuple[KGArrays, dict[str, Tensor]]:
    """``kg`` as a checkpoint can read it, after incremental batches added to it: concept
    types and relations it was not trained on are left out, and concepts added since
    get their type's mean pretrained feature (all that is known of an unseen concept is
    that the item has one of that type)."""
    edges = {
        (relation, ctype): e
        for (relation, ctype), e in kg.concept_edges.items()
        if ctype in features and relation in relations
    }
    padded = {}
    for ctype, feats in features.items():
        extra = kg.num_nodes.get(ctype, len(feats)) - len(feats)
        unseen = feats.mean(0, keepdim=True).expand(max(extra, 0), -1)
        padded[ctype] = torch.cat([feats, unseen]) if extra > 0 else feats
    num_nodes = {t: n for t, n in kg.num_nodes.items() if t == ENTITY or t in features}
    return replace(kg, num_nodes=num_nodes, concept_edges=edges), padded


def whole_graph(kg: KGArrays, features: dict[str, Tensor], relations: list[str]) -> ShardGraph:
    """All of ``kg`` as one shard: every EEL a message edge, nothing held out."""
    kg, features = as_trained(kg, features, relations)
    (shard,) = build_shards(kg, np.zeros(kg.num_entities, dtype=np.int64), 1, {}, 0)
    return shard_graph(shard, features, relations, val_share=0.0, seed=0)


def chunk_bounds(targets: Tensor, num_nodes: int, max_edges: int) -> list[tuple[int, int]]:
    """Contiguous node ranges ``[lo, hi)`` each receiving at most ``max_edges`` edges
    (a single node with more gets a range of its own)."""
    counts = torch.bincount(targets, minlength=num_nodes)[:num_nodes].tolist()
    bounds, lo, load = [], 0, 0
    for t, c in enumerate(counts):
        if load and load + c > max_edges:
            bounds.append((lo, t))
            lo, load = t, 0
        load += c
    bounds.append((lo, num_nodes))
    return bounds


@torch.no_grad()
def embed(
    model: EntityEncoder,
    graph: ShardGraph,
    known: Tensor,
    memory_budget_mb: float,
    progress: Callable[[int, int], None] | None = None,
    walk: Tensor | None = None,
    neighbour_walk: Tensor | None = None,
) -> Embedded:
    """Embed every entity of ``graph``; ``known`` ``(n_e,)`` marks those with trained ids,
    ``walk`` are the graph's own walk factors (default: the trained ones),
    ``neighbour_walk`` those of the concept neighbours (:meth:`EntityEncoder.readout`)."""
    n_e = graph.num_entities
    if memory_budget_mb <= 0:
        raise ValueError(f"memory_budget_mb must be > 0, got {memory_budget_mb}")
    # the budget bounds the message chunks; the node states (4 per node and layer width)
    # are held whole beside them: at 400,000 entities they alone took 391 MiB, above the
    # default budget, and the 10^7 run's evaluation stopped there
    max_edges = max(1, int(memory_budget_mb * 2**20 // model.edge_bytes()))
    order = torch.argsort(graph.edge_index[1], stable=True)
    edge_index, edge_type = graph.edge_index[:, order], graph.edge_type[order]
    h = model.inputs(graph, keep_id=known, keep_popularity=known)
    bounds = chunk_bounds(edge_index[1], len(h), max_edges)
    # each chunk's first and last edge: targets are sorted, so node ranges are edge ranges
    edge_spans = torch.searchsorted(edge_index[1], torch.tensor(bounds, device=h.device))
    spans = list(zip(bounds, edge_spans.tolist(), strict=True))
    for i in range(model.config.layers):
        out = h.clone()
        for c, ((lo, hi), (a, b)) in enumerate(spans):
            out[lo:hi] = model.layer(i, h, edge_index[:, a:b], edge_type[a:b])[lo:hi]
            if progress is not None:
                progress(i * len(bounds) + c + 1, model.config.layers * len(bounds))
        h = out
    z = model.readout(graph, h[:n_e], known, walk, neighbour_walk)
    return Embedded(z, graph.log_degree, ~known, len(bounds))


def kg_walk_factors(kg: KGArrays, rank: int, seed: int) -> Tensor:
    """The walk factors of ``kg``'s EELs (before alignment to a model's basis)."""
    pairs, weights = torch.from_numpy(kg.eel), torch.from_numpy(kg.eel_weight)
    return walk_factors(pairs, weights, kg.num_entities, rank, seed)


def kg_refined_walk(kg: KGArrays, trained: Tensor) -> Tensor:
    """:func:`kg_walk_factors` refined from a model's ``trained`` walk factors
    (:func:`refined_walk`, :data:`REFINE_STEPS` steps): the graph that a checkpoint
    embeds is the one it was trained on plus the EELs that training held out or that came
    since, whose walk subspace is close to the trained one's."""
    pairs, weights = torch.from_numpy(kg.eel), torch.from_numpy(kg.eel_weight)
    return refined_walk(pairs, weights, kg.num_entities, trained, REFINE_STEPS)


def embed_graph(
    checkpoint: Checkpoint,
    kg: KGArrays,
    memory_budget_mb: float,
    device: torch.device,
    progress: Callable[[int, int], None] | None = None,
    walk: Tensor | None = None,
    refine_walk: bool = False,
    neighbours: ConceptNeighbours | None = None,
) -> Embedded:
    """:func:`embed` over all of ``kg`` with ``checkpoint``'s weights and concept features.
    ``walk``: ``kg``'s walk factors for the checkpoint's rank, where the caller has them
    (the models of one run share them), else computed here: afresh
    (:func:`kg_walk_factors`), or with ``refine_walk`` refined from the trained factors
    (:func:`kg_refined_walk`: a third of the time; what the served vectors use).
    ``neighbours``: ``kg``'s concept neighbours, where the caller keeps them for its
    models (else found here)."""
    graph = whole_graph(kg, checkpoint.concept_features, list(checkpoint.config.relations))
    model = checkpoint.model()
    if model.config.walk_rank:  # this graph's walk: its EELs count, whenever they came
        if walk is None and refine_walk:
            walk = kg_refined_walk(kg, model.walk)
        elif walk is None:
            walk = kg_walk_factors(kg, model.config.walk_rank, checkpoint.params.seed)
        walk = aligned(walk, model.walk).to(device)
    neighbour_walk = None
    if walk is not None and float(model.concept_walk_share):  # new items' concept neighbours
        if neighbours is None:
            neighbours = ConceptNeighbours(concept_matrix(kg))
        neighbour_walk = neighbours.walk(walk, walk.abs().sum(1) > 0)
    model = model.to(device)
    known = torch.zeros(kg.num_entities, dtype=torch.bool, device=device)
    n = min(kg.num_entities, checkpoint.config.num_entities)
    known[:n] = model.trained[:n]  # entities added after training are all new
    out = embed(model, graph.to(device), known, memory_budget_mb, progress, walk, neighbour_walk)
    return Embedded(out.vectors.cpu(), out.log_degree.cpu(), out.inductive.cpu(), out.chunks)


def embed_with_latest(
    checkpoint_root: Path, memory_budget_mb: float, nodes: pa.Table, edges: pa.Table
) -> EntityVectors:
    """Every entity of the graph ``nodes``/``edges`` embedded by the primary model of the
    latest checkpoint version under ``checkpoint_root`` (new entities inductively)."""
    version = latest(checkpoint_root)
    checkpoint = load_model_set(version).primary_checkpoint
    kg = kg_arrays(nodes, edges)
    out = embed_graph(checkpoint, kg, memory_budget_mb, pick_device(), refine_walk=True)
    return EntityVectors(
        version.name, out.vectors.numpy(), out.log_degree.numpy(), out.inductive.numpy()
    )
