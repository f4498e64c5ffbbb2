"""SemanticGNN: entity embeddings from concepts, co-engagement and (when known) identity."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from training.layers import RelationAttentionConv
from training.shard_graph import POPULARITY_BUCKETS, ShardGraph


@dataclass(frozen=True)
class ModelConfig:
    num_entities: int
    feature_dim: int
    relations: tuple[str, ...]
    dim: int = 64
    layers: int = 2
    heads: int = 1

    def to_dict(self) -> dict:
        return {**asdict(self), "relations": list(self.relations)}


class SemanticGNN(nn.Module):
    """Stacked :class:`RelationAttentionConv` layers over a shard's entities and concepts.

    An entity's input is its id embedding plus a popularity-bucket embedding. Either can
    be masked per entity (``known``): a brand-new entity has neither, so its embedding
    comes from its concepts (and any EELs) through message passing alone. Training masks
    them for a random share of entities so that this path is learned. Concept inputs are
    the pretrained (TransE) features, projected to the model width.

    Shapes:
        - **input:** a :class:`ShardGraph` with ``n_e`` entities; ``known`` :math:`(n_e)` bool
        - **output:** entity embeddings :math:`(n_e, \\text{dim})`
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.entity_id = nn.Embedding(config.num_entities, config.dim)
        self.popularity = nn.Embedding(POPULARITY_BUCKETS, config.dim, padding_idx=0)
        self.concept_proj = nn.Linear(config.feature_dim, config.dim)
        self.relation_emb = nn.Parameter(torch.empty(len(config.relations), config.dim))
        self.convs = nn.ModuleList(
            RelationAttentionConv(config.dim, config.dim, len(config.relations), config.heads)
            for _ in range(config.layers)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.entity_id.weight, std=0.1)
        nn.init.normal_(self.popularity.weight, std=0.1)
        with torch.no_grad():
            self.popularity.weight[0].zero_()
        self.concept_proj.reset_parameters()
        nn.init.normal_(self.relation_emb, std=0.1)
        for conv in self.convs:
            conv.reset_parameters()

    def forward(
        self,
        graph: ShardGraph,
        known: Tensor | None = None,
        edge_mask: Tensor | None = None,
    ) -> Tensor:
        if int(graph.entity_global.max()) >= self.config.num_entities:
            raise ValueError(
                f"Entity id {int(graph.entity_global.max())} is outside the model's "
                f"{self.config.num_entities} entities (a checkpoint from another graph?)"
            )
        ids = self.entity_id(graph.entity_global)
        buckets = graph.popularity
        if known is not None:
            ids = ids * known.unsqueeze(-1)
            buckets = buckets * known
        h = torch.cat([ids + self.popularity(buckets), self.concept_proj(graph.concept_features)])
        edge_index, edge_type = graph.edge_index, graph.edge_type
        if edge_mask is not None:
            edge_index, edge_type = edge_index[:, edge_mask], edge_type[edge_mask]
        for conv in self.convs:
            h = conv(h, edge_index, edge_type, self.relation_emb)
        return h[: graph.num_entities]


def link_logits(h: Tensor, pairs: Tensor) -> Tensor:
    """``h_iᵀ h_j`` for each pair column: the logit of :math:`p(e_{ij}) = σ(h_iᵀ h_j)`."""
    return (h[pairs[0]] * h[pairs[1]]).sum(-1)
