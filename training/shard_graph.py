"""A HASP shard as the flat tensors a full-batch trainer needs.

Nodes are laid out entities first, then each concept type in the order of
``relations``; messages flow into entities only: EELs in both directions (relation 0, or
with :func:`domain_relations` one per domain and one across domains) and concept -> entity
edges (one relation per concept relation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from training.kg_arrays import EEL, ENTITY

POPULARITY_BUCKETS = 16


@dataclass
class ShardGraph:
    entity_global: Tensor  # (n_e,) graph-wide entity ids
    concept_features: Tensor  # (n_c, F) pretrained concept embeddings
    edge_index: Tensor  # (2, E) message edges, source -> target entity
    edge_type: Tensor  # (E,) index into relations
    train_pairs: Tensor  # (2, P) undirected EEL pairs used as training targets
    val_pairs: Tensor  # (2, V) held-out EEL pairs, absent from message passing
    popularity: Tensor  # (n_e,) bucket of EEL degree in the message graph; 0 = none
    log_degree: Tensor  # (n_e,) log(1 + EEL degree): the popularity prior's feature

    @property
    def num_entities(self) -> int:
        return int(self.entity_global.numel())

    def eels_touching(self, entities: Tensor) -> Tensor:
        """Which message edges are EELs with an end among ``entities`` (a local bool mask
        over the shard's entities): what leaves message passing for a (pseudo-)new item."""
        src, dst = self.edge_index
        n = self.num_entities
        return (src < n) & (entities[src.clamp(max=n - 1)] | entities[dst])

    def to(self, device: torch.device) -> ShardGraph:
        return ShardGraph(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def domain_eel(domain: str) -> str:
    """The relation of EELs within ``domain`` (:func:`domain_relations`)."""
    return f"{EEL}@{domain}"


CROSS_DOMAIN_EEL = f"{EEL}@across-domains"


def domain_relations(domains: list[str] | tuple[str, ...]) -> list[str]:
    """EEL relation types by the domains of their ends: one within each domain and one
    across domains, for a graph of two or more domains (none for fewer). Relation-aware
    layers then weigh music→music, live→live and music↔live links apart."""
    if len(domains) < 2:
        return []
    return [*(domain_eel(d) for d in domains), CROSS_DOMAIN_EEL]


def eel_types(shard: HeteroData, src: Tensor, dst: Tensor, relations: list[str]) -> Tensor:
    """The relation of each EEL message ``src -> dst`` (shard-local entities): 0 (the
    plain EEL relation) unless ``relations`` holds :func:`domain_relations` and the shard
    knows its entities' domains; an end without a domain keeps 0."""
    out = torch.zeros(len(src), dtype=torch.long)
    codes = shard[ENTITY].get("domain")
    if CROSS_DOMAIN_EEL not in relations or codes is None:
        return out
    index = {r: i for i, r in enumerate(relations)}
    within = torch.tensor([index.get(domain_eel(d), 0) for d in shard.domains] or [0])
    a, b = codes[src], codes[dst]
    typed = torch.where(a == b, within[a.clamp(min=0)], index[CROSS_DOMAIN_EEL])
    return torch.where((a < 0) | (b < 0), out, typed)


def popularity_bucket(degree: Tensor) -> Tensor:
    """0 for no links, else 1 + floor(log2(degree)), capped at the last bucket."""
    bucket = 1 + torch.floor(torch.log2(degree.clamp(min=1).float())).long()
    return torch.where(degree > 0, bucket.clamp(max=POPULARITY_BUCKETS - 1), 0)


def shard_graph(
    shard: HeteroData,
    concept_embeddings: dict[str, Tensor],
    relations: list[str],
    val_share: float,
    seed: int,
) -> ShardGraph:
    """Flatten ``shard``; hold out ``val_share`` of its EEL pairs (seeded) for validation.

    ``relations`` is the model's vocabulary: ``relations[0]`` is the EEL relation, then
    optionally :func:`domain_relations` (EELs typed by their ends' domains), then the
    concept relations. A shard relation missing from it is an error.
    """
    if relations[0] != EEL:
        raise ValueError(f"relations[0] must be {EEL!r}, got {relations[0]!r}")
    n_e = int(shard[ENTITY].num_nodes)
    if n_e == 0:
        raise ValueError("The shard has no entities")
    eel = shard[ENTITY, EEL, ENTITY].edge_index
    pairs = eel[:, eel[0] < eel[1]]
    order = torch.randperm(pairs.shape[1], generator=torch.Generator().manual_seed(seed))
    n_val = int(val_share * pairs.shape[1])
    val_pairs, train_pairs = pairs[:, order[:n_val]], pairs[:, order[n_val:]]

    sources, targets = [train_pairs[0], train_pairs[1]], [train_pairs[1], train_pairs[0]]
    types = [eel_types(shard, torch.cat(sources), torch.cat(targets), relations)]
    offsets, features, offset = {}, [], n_e
    for ctype in sorted(t for t in shard.node_types if t != ENTITY):
        if ctype not in concept_embeddings:
            raise ValueError(f"No pretrained features for concept type {ctype!r}")
        feats = concept_embeddings[ctype][shard[ctype].global_id]
        if not torch.isfinite(feats).all():
            raise ValueError(f"Concept features of type {ctype!r} contain NaN or infinite values")
        offsets[ctype], offset = offset, offset + len(feats)
        features.append(feats)
    for edge_type in sorted(shard.edge_types):
        _, relation, ctype = edge_type
        if relation == EEL:
            continue
        if relation not in relations:
            raise ValueError(
                f"Shard relation {relation!r} is not in the model's relations {relations}"
            )
        ei = shard[edge_type].edge_index
        sources.append(ei[1] + offsets[ctype])  # concept -> entity
        targets.append(ei[0])
        types.append(torch.full((ei.shape[1],), relations.index(relation), dtype=torch.long))
    degree = torch.bincount(train_pairs.flatten(), minlength=n_e)
    return ShardGraph(
        entity_global=shard[ENTITY].global_id,
        concept_features=torch.cat(features) if features else torch.empty(0, 0),
        edge_index=torch.stack([torch.cat(sources), torch.cat(targets)]),
        edge_type=torch.cat(types),
        train_pairs=train_pairs,
        val_pairs=val_pairs,
        popularity=popularity_bucket(degree),
        log_degree=torch.log1p(degree.float()),
    )


def held_out_pairs(
    shards: list[HeteroData],
    features: dict[str, Tensor],
    relations: list[str],
    val_share: float,
    seed: int,
) -> Tensor:
    """Graph-wide held-out EEL pairs, exactly as the trainer split them."""
    held = []
    for k, shard in enumerate(shards):
        g = shard_graph(shard, features, relations, val_share, seed + k)
        held.append(g.entity_global[g.val_pairs])
    return torch.cat(held, dim=1)
