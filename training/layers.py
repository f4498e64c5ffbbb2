"""The relation-aware attention layer of SemanticGNN."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.inits import glorot, ones
from torch_geometric.utils import softmax


class RelationAttentionConv(MessagePassing):
    r"""Relation-aware attention of SemanticGNN (Netflix, WWW'24): a neighbour :math:`c`
    of target :math:`t` under relation :math:`r` sends

    .. math::
        h_c(r) = W_v \,[\, h_c \,\Vert\, e_r \,]

    weighted by attention with a learnable scalar prior :math:`\beta_r` per relation, a
    softmax over all neighbours of :math:`t` across relation types,

    .. math::
        \alpha_{c,t} = \operatorname{softmax}_{c \in \mathcal{N}(t)}
        \left( \frac{(W_k\, h_c(r))^\top (W_q\, h_t)}{\sqrt{d}} \, \beta_r \right),

    and the target is updated with a residual,

    .. math::
        h_t \leftarrow h_t + \sigma\Big( \sum_{c \in \mathcal{N}(t)} \alpha_{c,t}\, h_c(r) \Big).

    With ``heads > 1`` the channels split into heads of :math:`d = \text{channels} / H`, each
    with its own softmax. Nodes with no incoming edge keep their input unchanged.

    Args:
        channels (int): Node feature size (input and output, for the residual).
        relation_channels (int): Size of the relation embeddings :math:`e_r`.
        num_relations (int): Number of relation types (sizes :math:`\beta`).
        heads (int, optional): Attention heads. (default: :obj:`1`)
        act (nn.Module, optional): The non-linearity :math:`\sigma`. (default: ELU)

    Shapes:
        - **input:** node features :math:`(|V|, C)`, edge indices :math:`(2, |E|)` (source,
          target), edge types :math:`(|E|)`, relation embeddings :math:`(R, C_r)`
        - **output:** node features :math:`(|V|, C)`
    """

    def __init__(
        self,
        channels: int,
        relation_channels: int,
        num_relations: int,
        heads: int = 1,
        act: nn.Module | None = None,
    ) -> None:
        super().__init__(aggr="add", node_dim=0)
        if channels % heads != 0:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads}).")
        self.channels = channels
        self.relation_channels = relation_channels
        self.num_relations = num_relations
        self.heads = heads
        self.act = act if act is not None else nn.ELU()
        self.lin_v = nn.Linear(channels + relation_channels, channels, bias=False)
        self.lin_k = nn.Linear(channels, channels, bias=False)
        self.lin_q = nn.Linear(channels, channels, bias=False)
        self.beta = nn.Parameter(torch.empty(num_relations))
        self._alpha: Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        glorot(self.lin_v.weight)
        glorot(self.lin_k.weight)
        glorot(self.lin_q.weight)
        ones(self.beta)

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_type: Tensor,
        relation_emb: Tensor,
        return_attention_weights: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        if relation_emb.shape != (self.num_relations, self.relation_channels):
            raise ValueError(
                f"relation_emb has shape {tuple(relation_emb.shape)}; expected "
                f"({self.num_relations}, {self.relation_channels})."
            )
        if edge_type.numel() and int(edge_type.max()) >= self.num_relations:
            raise ValueError(
                f"edge_type holds relation {int(edge_type.max())}, but the layer knows "
                f"{self.num_relations} relations."
            )
        d = self.channels // self.heads
        # W_v [h_c || e_r] = W_v,h h_c + W_v,r e_r, and W_k is linear too: so values and
        # keys are computed once per node and once per relation, then summed per edge,
        # instead of two matrix products per edge. Same equations, a fraction of the work.
        w_node, w_rel = self.lin_v.weight.split([self.channels, self.relation_channels], dim=1)
        value_node, value_rel = x @ w_node.t(), relation_emb @ w_rel.t()  # (|V|, C), (R, C)
        q = self.lin_q(x).view(-1, self.heads, d)  # (|V|, H, d)
        # Per-edge relation terms come from a one-hot product, not a gather: the backward
        # of a gather from an R-row table sums |E| rows into R, which CUDA's indexing
        # backward runs one row at a time (1.2 s a step at 10^6 edges on an H100); the
        # product's backward is one matrix product. (|E|, R) is a few floats per edge.
        one_hot = F.one_hot(edge_type, self.num_relations).to(x.dtype)
        out = self.propagate(
            edge_index,
            value=value_node,
            key=self.lin_k(value_node),
            q=q,
            one_hot=one_hot,
            value_rel=value_rel,
            key_rel=self.lin_k(value_rel),
        )  # (|V|, C)
        out = x + self.act(out)
        alpha, self._alpha = self._alpha, None
        if return_attention_weights:
            return out, alpha  # alpha: (|E|, H)
        return out

    def message(
        self,
        value_j: Tensor,
        key_j: Tensor,
        q_i: Tensor,
        one_hot: Tensor,
        value_rel: Tensor,
        key_rel: Tensor,
        index: Tensor,
        ptr: Tensor | None,
        size_i: int | None,
    ) -> Tensor:
        d = self.channels // self.heads
        value = (value_j + one_hot @ value_rel).view(-1, self.heads, d)  # h_c(r): (|E|, H, d)
        key = (key_j + one_hot @ key_rel).view(-1, self.heads, d)  # W_k h_c(r)
        beta = (one_hot @ self.beta).unsqueeze(-1)  # beta_r per edge: (|E|, 1)
        logits = (key * q_i).sum(-1) / math.sqrt(d) * beta
        alpha = softmax(logits, index, ptr, size_i)  # (|E|, H), sums to 1 per target
        self._alpha = alpha
        return (value * alpha.unsqueeze(-1)).view(-1, self.channels)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.channels}, relations={self.num_relations}, "
            f"heads={self.heads})"
        )
