"""Entity encoders: SemanticGNN and relational GCN/GAT/GraphSAGE baselines with the same inputs.

Every encoder embeds entities from the same inputs, so that the comparison is about the
message passing alone: an id embedding plus a popularity-bucket embedding per entity
(either masked per entity by ``known``: a brand-new entity has neither) and projected
pretrained features per concept node. Messages flow into entities only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GCNConv, SAGEConv

from training.layers import RelationAttentionConv
from training.shard_graph import POPULARITY_BUCKETS, ShardGraph

KINDS = ("semantic", "gcn", "gat", "sage")


@dataclass(frozen=True)
class ModelConfig:
    num_entities: int
    feature_dim: int
    relations: tuple[str, ...]
    dim: int = 64
    layers: int = 2
    heads: int = 1
    kind: str = "semantic"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Model kind {self.kind!r} is not one of {KINDS}")

    def to_dict(self) -> dict:
        return {**asdict(self), "relations": list(self.relations)}


class EntityEncoder(nn.Module):
    """Inputs and the layer loop shared by every encoder; subclasses define the layers.

    Shapes:
        - **input:** a :class:`ShardGraph` with ``n_e`` entities; ``known`` :math:`(n_e)` bool;
          ``edge_mask`` :math:`(|E|)` bool, the message edges to use
        - **output:** entity embeddings :math:`(n_e, \\text{dim})`
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.entity_id = nn.Embedding(config.num_entities, config.dim)
        self.popularity = nn.Embedding(POPULARITY_BUCKETS, config.dim, padding_idx=0)
        self.concept_proj = nn.Linear(config.feature_dim, config.dim)

    def reset_parameters(self) -> None:
        nn.init.normal_(self.entity_id.weight, std=0.1)
        nn.init.normal_(self.popularity.weight, std=0.1)
        with torch.no_grad():
            self.popularity.weight[0].zero_()
        self.concept_proj.reset_parameters()

    def layer(self, index: int, h: Tensor, edge_index: Tensor, edge_type: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(
        self, graph: ShardGraph, known: Tensor | None = None, edge_mask: Tensor | None = None
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
        for i in range(self.config.layers):
            h = self.layer(i, h, edge_index, edge_type)
        return h[: graph.num_entities]


class SemanticGNN(EntityEncoder):
    """Stacked :class:`RelationAttentionConv` layers with learned relation embeddings."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.relation_emb = nn.Parameter(torch.empty(len(config.relations), config.dim))
        self.convs = nn.ModuleList(
            RelationAttentionConv(config.dim, config.dim, len(config.relations), config.heads)
            for _ in range(config.layers)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        nn.init.normal_(self.relation_emb, std=0.1)
        for conv in self.convs:
            conv.reset_parameters()

    def layer(self, index: int, h: Tensor, edge_index: Tensor, edge_type: Tensor) -> Tensor:
        return self.convs[index](h, edge_index, edge_type, self.relation_emb)


class RelationalGNN(EntityEncoder):
    """One GCN, GAT or GraphSAGE convolution per relation, summed (as PyG's ``HeteroConv``
    with ``aggr="sum"`` over one node space), with the same residual as SemanticGNN:

    .. math::
        h_t \\leftarrow h_t + \\sigma\\Big(\\sum_r \\mathrm{conv}_r(h, E_r)_t\\Big)
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        d = config.dim

        def conv() -> nn.Module:
            if config.kind == "gcn":
                return GCNConv(d, d, add_self_loops=False)
            if config.kind == "gat":
                return GATConv(d, d // config.heads, heads=config.heads, add_self_loops=False)
            return SAGEConv(d, d)

        self.convs = nn.ModuleList(
            nn.ModuleList(conv() for _ in config.relations) for _ in range(config.layers)
        )
        self.act = nn.ELU()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for per_relation in self.convs:
            for conv in per_relation:
                conv.reset_parameters()

    def layer(self, index: int, h: Tensor, edge_index: Tensor, edge_type: Tensor) -> Tensor:
        total = torch.zeros_like(h)
        for r, conv in enumerate(self.convs[index]):
            total = total + conv(h, edge_index[:, edge_type == r])
        return h + self.act(total)


def build_model(config: ModelConfig) -> EntityEncoder:
    return SemanticGNN(config) if config.kind == "semantic" else RelationalGNN(config)


def link_logits(h: Tensor, pairs: Tensor) -> Tensor:
    """``h_iᵀ h_j`` for each pair column: the logit of :math:`p(e_{ij}) = σ(h_iᵀ h_j)`."""
    return (h[pairs[0]] * h[pairs[1]]).sum(-1)
