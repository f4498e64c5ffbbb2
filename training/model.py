r"""Entity encoders: SemanticGNN and relational GCN/GAT/GraphSAGE baselines with the same inputs.

Every encoder embeds entities from the same inputs, so that the comparison is about the
message passing alone: an id embedding plus a popularity-bucket embedding per entity
(either masked per entity by ``known``: a brand-new entity has neither) and projected
pretrained features per concept node. Messages flow into entities only.

Every encoder also serves the same propagation part (:meth:`EntityEncoder.readout`): the
graph-wide walk factors ``e_i`` of the training graph (:func:`training.spectral.walk_factors`,
fixed) beside the message-passing output ``h_i``, which the GNN trains as a residual on top
of them. An entity without trained walk factors (new, or masked as pseudo-new in
training) gets them predicted from its own output and, at inference, from its concept
neighbours' (:mod:`training.concept_neighbours`), and a low-degree one a degree-gated mix:

.. math::
    z_i = \big[\, g_i\, e_i + (1 - g_i)\, \hat e_i \;\Vert\; \alpha\, h_i \,\big],
    \qquad g_i = \frac{d_i}{d_i + \kappa} \;(\kappa = 0:\ g_i = 1),

    \hat e_i = (1 - \mu)\, W_e h_i + \mu \sum_k s_{ik}\, e_k \quad \text{(for an entity
    without walk factors; } \hat e_i = W_e h_i \text{ for the gate's mix)},

with ``κ``, the residual scale ``α`` and the concept neighbours' share ``μ`` fitted on
validation, like the popularity prior's weight (:mod:`training.validation`); training
itself sees ``μ = 0``. Scores are ``z_iᵀ z_j + w_i · log(1 + d_j)``, where the
prior's weight depends on the query: ``w`` for one with EELs, ``w + δ`` for one without (a
new item), both fitted on validation (``δ = 0`` in training).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GCNConv, SAGEConv

from training.csr import EdgeLayout
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
    popularity_prior: bool = True  # score = z_iᵀz_j + w·log(1 + degree_j), w learned
    walk_rank: int = 0  # columns of the fixed walk factors served beside h (0: none)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Model kind {self.kind!r} is not one of {KINDS}")
        if self.walk_rank < 0:
            raise ValueError(f"walk_rank must be >= 0, got {self.walk_rank}")

    @property
    def out_dim(self) -> int:
        """Size of an entity's served vector (without the popularity dimension)."""
        return self.walk_rank + self.dim

    def to_dict(self) -> dict:
        return {**asdict(self), "relations": list(self.relations)}


class EntityEncoder(nn.Module):
    """Inputs, the layer loop and the link score shared by every encoder.

    Shapes:
        - **input:** a :class:`ShardGraph` with ``n_e`` entities; ``keep_id`` and
          ``keep_popularity`` :math:`(n_e)` bool (False: that input is masked, as for a new
          entity); ``edge_mask`` :math:`(|E|)` bool, the message edges to use
        - **output:** entity embeddings :math:`(n_e, \\text{dim})`
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.entity_id = nn.Embedding(config.num_entities, config.dim)
        self.popularity = nn.Embedding(POPULARITY_BUCKETS, config.dim, padding_idx=0)
        self.concept_proj = nn.Linear(config.feature_dim, config.dim)
        self.popularity_weight = nn.Parameter(torch.zeros(()))
        # which entities' id embeddings were trained (had training links): at inference
        # the others are embedded as new entities, from their edges alone
        self.register_buffer("trained", torch.zeros(config.num_entities, dtype=torch.bool))
        # the fixed propagation part and its predictor from h (see the module docstring)
        self.register_buffer("walk", torch.zeros(config.num_entities, config.walk_rank))
        self.to_walk = (
            nn.Linear(config.dim, config.walk_rank, bias=False) if config.walk_rank else None
        )
        self.register_buffer("gate_kappa", torch.zeros(()))  # κ, fitted on validation
        self.register_buffer("residual_scale", torch.ones(()))  # α, fitted on validation
        self.register_buffer("cold_prior_shift", torch.zeros(()))  # δ, fitted on validation
        self.register_buffer("concept_walk_share", torch.zeros(()))  # μ, fitted on validation

    def reset_parameters(self) -> None:
        nn.init.normal_(self.entity_id.weight, std=0.1)
        nn.init.normal_(self.popularity.weight, std=0.1)
        with torch.no_grad():
            self.popularity.weight[0].zero_()
        self.concept_proj.reset_parameters()
        if self.to_walk is not None:
            self.to_walk.reset_parameters()
        nn.init.zeros_(self.popularity_weight)

    def layer(
        self,
        index: int,
        h: Tensor,
        edge_index: Tensor,
        edge_type: Tensor,
        layout: EdgeLayout | None = None,
    ) -> Tensor:
        """Layer ``index`` over the edges; ``layout`` is :meth:`edge_layout` of them, where
        the caller shares one across layers."""
        raise NotImplementedError

    def edge_layout(self, edge_index: Tensor, num_nodes: int) -> EdgeLayout | None:
        """What every layer of one forward pass can share about its edges (None: nothing)."""
        return None

    def edge_bytes(self) -> int:
        """Memory a layer's forward pass holds per message edge, in bytes (for inference's
        chunks): PyG's convolutions gather source and target rows (value, key, query,
        message and temporaries, about eight floats per dimension)."""
        return 8 * self.config.dim * 4

    def inputs(
        self,
        graph: ShardGraph,
        keep_id: Tensor | None = None,
        keep_popularity: Tensor | None = None,
    ) -> Tensor:
        """Layer-0 features of every node, entities first, ``(n_e + n_c, dim)``.

        Entities beyond the model's id space (added after training) must come with
        ``keep_id`` False: they are embedded from their edges alone.
        """
        n = self.config.num_entities
        beyond = graph.entity_global >= n
        if beyond.any() and (keep_id is None or (keep_id & beyond).any()):
            raise ValueError(
                f"Entity id {int(graph.entity_global.max())} is outside the model's {n} "
                "trained ids; embed it as new (keep_id False) or use the checkpoint of "
                "this graph"
            )
        ids = self.entity_id(graph.entity_global.clamp(max=n - 1))
        buckets = graph.popularity
        if keep_id is not None:
            ids = ids * keep_id.unsqueeze(-1)
        if keep_popularity is not None:
            buckets = buckets * keep_popularity
        return torch.cat(
            [ids + self.popularity(buckets), self.concept_proj(graph.concept_features)]
        )

    def forward(
        self,
        graph: ShardGraph,
        keep_id: Tensor | None = None,
        keep_popularity: Tensor | None = None,
        edge_mask: Tensor | None = None,
    ) -> Tensor:
        h = self.encode(graph, keep_id, keep_popularity, edge_mask)
        return self.readout(graph, h, keep_popularity)

    def encode(
        self,
        graph: ShardGraph,
        keep_id: Tensor | None = None,
        keep_popularity: Tensor | None = None,
        edge_mask: Tensor | None = None,
    ) -> Tensor:
        """The entities' outputs ``h`` ``(n_e, dim)`` before the readout."""
        h = self.inputs(graph, keep_id, keep_popularity)
        edge_index, edge_type = graph.edge_index, graph.edge_type
        if edge_mask is not None:
            edge_index, edge_type = edge_index[:, edge_mask], edge_type[edge_mask]
        layout = self.edge_layout(edge_index, h.shape[0])
        for i in range(self.config.layers):
            h = self.layer(i, h, edge_index, edge_type, layout)
        return h[: graph.num_entities]

    def gate(self, log_degree: Tensor) -> Tensor:
        """``g = d / (d + κ)``: how much of an entity's own walk factors it keeps, by its
        EEL degree ``d`` (non-decreasing in ``d``; ``κ = 0`` keeps them all)."""
        if float(self.gate_kappa) == 0.0:
            return torch.ones_like(log_degree)
        degree = torch.expm1(log_degree)
        return degree / (degree + self.gate_kappa)

    def readout(
        self,
        graph: ShardGraph,
        h: Tensor,
        known: Tensor | None = None,
        walk: Tensor | None = None,
        neighbour_walk: Tensor | None = None,
    ) -> Tensor:
        """Served vectors ``z`` ``(n_e, walk_rank + dim)`` of the entities' outputs ``h``.

        The walk factors are the trained ones, where ``known`` False (new, pseudo-new)
        means none of their own; or ``walk`` ``(n_e, walk_rank)``, those of the graph being
        embedded (inference), where every entity with EELs has its own.
        ``neighbour_walk`` ``(n_e, walk_rank)``: the concept neighbours' mean walk factors
        of the entities without their own (:func:`~training.concept_neighbours.
        neighbour_walk`), mixed into their prediction with the share ``μ``."""
        if not self.config.walk_rank:
            return h * self.residual_scale
        if walk is None:
            own, has = self.own_walk(graph.entity_global)
            if known is not None:
                has = has & known
        else:
            own, has = walk, walk.abs().sum(1) > 0
        g = (self.gate(graph.log_degree) * has).unsqueeze(-1)
        predicted = self.to_walk(h)
        mu = float(self.concept_walk_share)
        if neighbour_walk is not None and mu:
            alone = (~has).unsqueeze(-1)
            predicted = torch.where(alone, (1 - mu) * predicted + mu * neighbour_walk, predicted)
        walk = g * own + (1 - g) * predicted
        return torch.cat([walk, h * self.residual_scale], dim=1)

    def own_walk(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """The walk factors of entities ``ids`` and whether they have any (entities added
        after training, or without training EELs, have none)."""
        n = self.config.num_entities
        own = self.walk[ids.clamp(max=n - 1)] * (ids < n).unsqueeze(-1)
        return own, own.abs().sum(1) > 0

    def walk_part(self, z: Tensor) -> Tensor:
        """The walk-factor columns of served vectors ``z``."""
        return z[:, : self.config.walk_rank]

    def score(self, h: Tensor, pairs: Tensor, log_degree: Tensor) -> Tensor:
        """Logit of a link from ``pairs[0]`` (query) to ``pairs[1]`` (candidate).

        ``h_iᵀ h_j``, plus the learned popularity prior ``w · log(1 + degree_j)`` when the
        config asks for it; serving carries it as one extra dimension (``w`` on the query
        side, ``log(1 + degree)`` on the item side), so the index ranks by this same score.
        """
        logits = (h[pairs[0]] * h[pairs[1]]).sum(-1)
        if self.config.popularity_prior:
            logits = logits + self.popularity_weight * log_degree[pairs[1]]
        return logits

    def prior_weights(self, query_log_degree: Tensor) -> Tensor:
        """The popularity prior's weight per query: ``w``, or ``w + δ`` for a query without
        EELs (its neighbours are all unknown, so how much popularity should count for it is
        a separate question, answered on validation)."""
        return self.popularity_weight + self.cold_prior_shift * (query_log_degree == 0)

    def score_matrix(
        self, h: Tensor, queries: Tensor, candidates: Tensor, log_degree: Tensor
    ) -> Tensor:
        """:meth:`score` of every query against every candidate, ``(|Q|, |C|)``, as one
        matrix product (no ``|Q|·|C|`` gather of vectors), with each query's own prior
        weight (:meth:`prior_weights`)."""
        logits = h[queries] @ h[candidates].t()
        if self.config.popularity_prior:
            w = self.prior_weights(log_degree[queries]).unsqueeze(-1)
            logits = logits + w * log_degree[candidates]
        return logits


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

    def layer(
        self,
        index: int,
        h: Tensor,
        edge_index: Tensor,
        edge_type: Tensor,
        layout: EdgeLayout | None = None,
    ) -> Tensor:
        return self.convs[index](h, edge_index, edge_type, self.relation_emb, layout=layout)

    def edge_layout(self, edge_index: Tensor, num_nodes: int) -> EdgeLayout:
        # sorted once per forward pass, not once per layer
        return EdgeLayout.of(edge_index, num_nodes)

    def edge_bytes(self) -> int:
        # no gathered rows (training.csr): the layout's sort and three int64 columns, the
        # edge's type, and per head a few scalars (logit, weight) and its one-hot relation
        heads, relations = self.config.heads, len(self.config.relations)
        return 8 * (8 + heads * (4 + relations))

    def relation_priors(self) -> dict[str, list[float]]:
        """β_r of each relation, per layer: how strongly its attention logits count."""
        return {
            rel: [conv.beta[r].item() for conv in self.convs]
            for r, rel in enumerate(self.config.relations)
        }


class RelationalGNN(EntityEncoder):
    """One GCN, GAT or GraphSAGE convolution per relation, averaged (as PyG's ``HeteroConv``
    with ``aggr="mean"`` over one node space), with the same residual as SemanticGNN:

    .. math::
        h_t \\leftarrow h_t + \\sigma\\Big(\\frac{1}{|R|} \\sum_r \\mathrm{conv}_r(h, E_r)_t\\Big)

    (A sum made the initial logits large enough for GraphSAGE to stall on the demo graph.)
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        d = config.dim

        def conv() -> nn.Module:
            if config.kind == "gcn":
                return GCNConv(d, d, add_self_loops=False)
            if config.kind == "gat":
                return GATConv(d, d // config.heads, heads=config.heads, add_self_loops=False)
            return SAGEConv(d, d, root_weight=False)  # the residual already carries h_t

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

    def layer(
        self,
        index: int,
        h: Tensor,
        edge_index: Tensor,
        edge_type: Tensor,
        layout: EdgeLayout | None = None,
    ) -> Tensor:
        total = torch.zeros_like(h)
        for r, conv in enumerate(self.convs[index]):
            total = total + conv(h, edge_index[:, edge_type == r])
        return h + self.act(total / len(self.convs[index]))


def build_model(config: ModelConfig) -> EntityEncoder:
    return SemanticGNN(config) if config.kind == "semantic" else RelationalGNN(config)
