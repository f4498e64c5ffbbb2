"""DeepWalk over the knowledge graph: random walks in torch over CSR, then skip-gram.

The random-walk baseline PGL-style cold-start systems use: walks run over EELs and
entity-concept edges alike, so an entity with no interactions still co-occurs in walks
with the entities that share its concepts, and gets an embedding from them (Perozzi et
al., 2014). Skip-gram with negative sampling (Mikolov et al., 2013):

.. math::
    \\mathcal{L} = -\\log σ(u_c^\\top v_o) - \\sum_{k} \\log σ(-u_c^\\top v_{n_k})

No torch-cluster: walks step all walkers at once by indexing the CSR arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from training.kg_arrays import ENTITY, KGArrays, NodeSpace


@dataclass(frozen=True)
class DeepWalkParams:
    dim: int = 64
    walk_length: int = 20
    walks_per_node: int = 5
    window: int = 4
    negatives: int = 5
    epochs: int = 2
    # pairs per step: at 16,384 rather than 8,192 the skip-gram loss after two epochs was
    # lower (1.753 against 1.792 at 10^6 interactions; 1.555 against 1.563 on
    # ml-latest-small) in 78 s rather than 98 s: fewer dense Adam passes over every row
    batch_size: int = 16384
    lr: float = 0.01
    seed: int = 0


def csr(edges: Tensor, total: int) -> tuple[Tensor, Tensor]:
    """``(rowptr, col)`` of directed ``edges`` ``(2, E)`` over ``total`` nodes."""
    order = torch.argsort(edges[0] * total + edges[1])
    src, dst = edges[0][order], edges[1][order]
    rowptr = torch.zeros(total + 1, dtype=torch.long)
    rowptr[1:] = torch.cumsum(torch.bincount(src, minlength=total), 0)
    return rowptr, dst


def concept_pairs(kg: KGArrays, space: NodeSpace) -> list[np.ndarray]:
    """Entity-concept edges on ``space``'s ids, both directions."""
    parts = []
    for (_, ctype), edges in kg.concept_edges.items():
        e = np.stack([edges[0], edges[1] + space.offsets[ctype]])
        parts += [e, e[::-1]]
    return parts


def undirected_csr(kg: KGArrays, space: NodeSpace) -> tuple[Tensor, Tensor]:
    """``(rowptr, col)`` over all nodes: EELs and entity-concept edges, both directions."""
    parts = [kg.eel, *concept_pairs(kg, space)]
    return csr(torch.from_numpy(np.concatenate(parts, axis=1)), space.total)


def random_walks(
    rowptr: Tensor, col: Tensor, starts: Tensor, length: int, gen: torch.Generator
) -> Tensor:
    """``(len(starts), length)`` walks; a walker at a node without edges stays there."""
    walks = [starts]
    cur = starts
    for _ in range(length - 1):
        deg = rowptr[cur + 1] - rowptr[cur]
        step = (torch.rand(len(cur), generator=gen) * deg).long()
        nxt = col[(rowptr[cur] + step).clamp(max=max(len(col) - 1, 0))] if len(col) else cur
        cur = torch.where(deg > 0, nxt, cur)
        walks.append(cur)
    return torch.stack(walks, dim=1)


def context_pairs(walks: Tensor, window: int) -> Tensor:
    """``(2, P)`` (center, context) pairs within ``window`` steps along each walk."""
    pairs = []
    for offset in range(1, window + 1):
        a, b = walks[:, :-offset].reshape(-1), walks[:, offset:].reshape(-1)
        pairs += [torch.stack([a, b]), torch.stack([b, a])]
    pairs = torch.cat(pairs, dim=1)
    return pairs[:, pairs[0] != pairs[1]]


def skipgram(
    walks: Callable[[torch.Generator], Tensor],
    total: int,
    params: DeepWalkParams,
    device: torch.device,
    progress: Callable[[int, float], None] | None = None,
) -> Tensor:
    """Center vectors ``(total, dim)`` of skip-gram with negative sampling over the walks
    that ``walks(generator)`` draws afresh each epoch."""
    gen = torch.Generator().manual_seed(params.seed)
    torch.manual_seed(params.seed)
    center = torch.nn.Parameter(torch.randn(total, params.dim, device=device) * 0.1)
    context = torch.nn.Parameter(torch.zeros(total, params.dim, device=device))
    # fused: one pass over each table per step instead of one per Adam term (a step of
    # 8,192 pairs over 42,000 nodes: 25 -> 18 ms); a batch touches most rows, so the
    # dense update is the one to make cheap
    optimizer = torch.optim.Adam([center, context], lr=params.lr, fused=True)
    for epoch in range(params.epochs):
        pairs = context_pairs(walks(gen), params.window)
        pairs = pairs[:, torch.randperm(pairs.shape[1], generator=gen)]
        total_loss = 0.0
        for start in range(0, pairs.shape[1], params.batch_size):
            batch = pairs[:, start : start + params.batch_size].to(device)
            neg = torch.randint(total, (batch.shape[1], params.negatives), generator=gen).to(device)
            # index_select rather than an embedding lookup: its backward is one index_add
            # (a step 12.2 -> 9.5 ms at 10^6 interactions)
            u = center.index_select(0, batch[0])
            pos = F.logsigmoid((u * context.index_select(0, batch[1])).sum(-1))
            v = context.index_select(0, neg.reshape(-1)).view(*neg.shape, -1)
            negs = F.logsigmoid(-(u.unsqueeze(1) * v).sum(-1)).sum(-1)
            loss = -(pos + negs).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * batch.shape[1]
        if progress is not None:
            progress(epoch, total_loss / max(pairs.shape[1], 1))
    return center.detach().cpu()


def train_deepwalk(
    kg: KGArrays,
    params: DeepWalkParams,
    device: torch.device,
    progress: Callable[[int, float], None] | None = None,
) -> Tensor:
    """Entity embeddings ``(num_entities, dim)`` from skip-gram over random walks."""
    space = NodeSpace.of(kg)
    rowptr, col = undirected_csr(kg, space)
    starts = torch.arange(space.total).repeat(params.walks_per_node)

    def walks(gen: torch.Generator) -> Tensor:
        shuffled = starts[torch.randperm(len(starts), generator=gen)]
        return random_walks(rowptr, col, shuffled, params.walk_length, gen)

    vectors = skipgram(walks, space.total, params, device, progress)
    first = space.offsets[ENTITY]
    return vectors[first : first + kg.num_entities]
