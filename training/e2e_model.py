r"""The end-to-end model: a relation-aware GNN over sampled subgraphs and a two-tower ranker
that fuses its embeddings at two levels (after E2E-GRec, TikTok).

**GNN.** A node's input is ``W_x x_v`` (its fixed features) plus, for an item with
training interactions, its id embedding, or a concept's own embedding; ``L`` layers of
SemanticGNN's :class:`~training.layers.RelationAttentionConv` give its output ``g_v``.

**Towers.** An item's own features are ``[e_i ; x_i]`` (its ranker id embedding, zero for an
item without training interactions, and its features); a user's are the mean of their
history's, ``[ē_u ; x̄_u]``, and their graph embedding the mean of their history's GNN
outputs, ``ḡ_u`` (users are readouts, not nodes). Each tower fuses twice:

.. math::
    t = \mathrm{MLP}([\,\text{own} \,;\, g\,]) \quad\text{(input level)}, \qquad
    a = \sigma(W_a [\,t \,;\, g\,] + b_a), \qquad
    o = a \odot t + (1 - a) \odot P g \quad\text{(gated, last hidden level)}

and the score is ``cos(o_u, o_i) / τ``. Without a graph (``graph_dim = 0``) a tower is its
MLP alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.layers import RelationAttentionConv

TEMPERATURE = 0.1


class GraphEncoder(nn.Module):
    def __init__(
        self,
        num_items: int,
        num_nodes: int,
        features: int,
        relations: int,
        dim: int,
        layers: int,
    ) -> None:
        super().__init__()
        self.num_items = num_items
        self.node_emb = nn.Embedding(num_nodes, dim)
        self.feature_proj = nn.Linear(features, dim)
        self.relation_emb = nn.Parameter(torch.randn(relations, dim) * 0.1)
        self.convs = nn.ModuleList(
            RelationAttentionConv(dim, dim, relations) for _ in range(layers)
        )
        nn.init.normal_(self.node_emb.weight, std=0.1)

    def shared_weight(self) -> Tensor:
        """The last shared layer's weight, where GradNorm measures each task's gradient."""
        return self.convs[-1].lin_v.weight

    def forward(
        self, nodes: Tensor, x: Tensor, known: Tensor, edge_index: Tensor, edge_type: Tensor
    ) -> Tensor:
        """Outputs of ``nodes`` (global ids) with features ``x``, over local edges."""
        own = self.node_emb(nodes)
        is_item = nodes < self.num_items
        keep = ~is_item | known[nodes.clamp(max=self.num_items - 1)]
        h = self.feature_proj(x) + own * keep.unsqueeze(-1)
        for conv in self.convs:
            h = conv(h, edge_index, edge_type, self.relation_emb)
        return h


class Tower(nn.Module):
    def __init__(self, own_dim: int, dim: int, graph_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(own_dim + graph_dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim)
        )
        self.graph_dim = graph_dim
        if graph_dim:
            self.gate = nn.Linear(dim + graph_dim, dim)
            self.project = nn.Linear(graph_dim, dim, bias=False)

    def forward(self, own: Tensor, g: Tensor | None) -> Tensor:
        if not self.graph_dim:
            return F.normalize(self.mlp(own), dim=-1)
        t = self.mlp(torch.cat([own, g], -1))
        a = torch.sigmoid(self.gate(torch.cat([t, g], -1)))
        return F.normalize(a * t + (1 - a) * self.project(g), dim=-1)


class TwoTowerRanker(nn.Module):
    def __init__(self, num_items: int, features: int, dim: int, graph_dim: int) -> None:
        super().__init__()
        self.item_emb = nn.Embedding(num_items, dim)
        nn.init.normal_(self.item_emb.weight, std=0.1)
        self.user_tower = Tower(dim + features, dim, graph_dim)
        self.item_tower = Tower(dim + features, dim, graph_dim)

    def item_features(self, items: Tensor, x: Tensor, known: Tensor) -> Tensor:
        """``[e_i ; x_i]`` per item (``x``: those items' features)."""
        return torch.cat([self.item_emb(items) * known[items].unsqueeze(-1), x], -1)

    def items(self, own: Tensor, g: Tensor | None) -> Tensor:
        return self.item_tower(own, g)

    def users(self, history_own: Tensor, history_g: Tensor | None, weights: Tensor) -> Tensor:
        """Users from their histories' rows ``(B, H, ·)``, mean-pooled by ``weights``
        ``(B, H)`` (zero for padding)."""
        w = weights / weights.sum(1, keepdim=True).clamp(min=1e-12)
        own = (history_own * w.unsqueeze(-1)).sum(1)
        g = None if history_g is None else (history_g * w.unsqueeze(-1)).sum(1)
        return self.user_tower(own, g)


def scores(users: Tensor, items: Tensor) -> Tensor:
    return users @ items.t() / TEMPERATURE
