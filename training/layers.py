"""The relation-aware attention layer of SemanticGNN."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn.inits import glorot, ones
from torch_geometric.utils import scatter, softmax

from training.csr import EdgeLayout, aggregate, edge_dot


class RelationAttentionConv(nn.Module):
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
        super().__init__()
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
        self.reset_parameters()

    def reset_parameters(self) -> None:
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
        layout: EdgeLayout | None = None,
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
        n, heads, c, r = x.shape[0], self.heads, self.channels, self.num_relations
        d = c // heads
        if layout is None:
            layout = EdgeLayout.of(edge_index, n)
        # every per-edge quantity below is in the layout's (target, source) order
        dst, edge_type = layout.row, edge_type[layout.perm]
        # W_v [h_c || e_r] = W_v,h h_c + W_v,r e_r: values once per node and per relation.
        w_node, w_rel = self.lin_v.weight.split([c, self.relation_channels], dim=1)
        value, value_rel = x @ w_node.t(), relation_emb @ w_rel.t()  # (|V|, C), (R, C)
        q = self.lin_q(x).view(n, heads, d)
        if heads == 1:
            # q_t . W_k v = (W_k^T q_t) . v: the logits read the values the messages carry
            # (no keys to compute)
            query = (q.view(n, d) @ self.lin_k.weight).view(n, 1, c)
            key, rel_logit = value.view(n, 1, c), query.view(n, c) @ value_rel.t()
        else:
            query = q
            key = self.lin_k(value).view(n, heads, d)
            rel_logit = torch.einsum("nhd,rhd->nhr", q, self.lin_k(value_rel).view(r, heads, d))
        # the relation's share of the logit, q_t . W_k W_v,r e_r, per (target, head, relation)
        rel_logit = rel_logit.reshape(-1)
        at = ((dst * heads).view(-1, 1) + torch.arange(heads, device=x.device)) * r
        rel_part = rel_logit.index_select(0, (at + edge_type.view(-1, 1)).view(-1)).view(-1, heads)
        # q_t . k_c per edge and head as a sampled product: no (|E|, C) tensor of gathered
        # rows (training.csr)
        logits = torch.stack(
            [edge_dot(layout, query[:, h], key[:, h]) for h in range(heads)], dim=-1
        )
        # beta_r per edge from a one-hot product, not a gather: the backward of a gather from
        # an R-row table runs one row at a time on CUDA (1.2 s a step at 10^6 edges, H100)
        one_hot = F.one_hot(edge_type, r).to(x.dtype)
        logits = (logits + rel_part) / math.sqrt(d) * (one_hot @ self.beta).unsqueeze(-1)
        alpha = softmax(logits, dst, num_nodes=n)  # (|E|, H), sums to 1 per target
        # sum_c alpha (W_v,h h_c + W_v,r e_r): the node part as one sparse product per head,
        # the relation part as each target's attention mass per relation times the R
        # relation values
        per_head = value.view(n, heads, d)
        out = torch.cat(
            [aggregate(layout, alpha[:, h], per_head[:, h]) for h in range(heads)], dim=-1
        )
        mass = scatter(alpha.unsqueeze(-1) * one_hot.unsqueeze(1), dst, 0, dim_size=n)
        out = out + torch.einsum("nhr,rhd->nhd", mass, value_rel.view(r, heads, d)).reshape(n, c)
        out = x + self.act(out)
        if return_attention_weights:
            # back in the caller's edge order
            return out, torch.empty_like(alpha).index_copy_(0, layout.perm, alpha)
        return out

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.channels}, relations={self.num_relations}, "
            f"heads={self.heads})"
        )
