"""K-hop fan-out sampling over CSR, so that a GNN runs inside a mini-batch's training step.

PyG's ``NeighborLoader`` needs pyg-lib or torch-sparse, which this project does not
require; this sampler is plain torch. Each hop draws, for every node of the frontier, at
most ``fanout`` of its incoming edges uniformly without replacement (all of them when it has
fewer). The sampled subgraph holds the seeds first, then each hop's new nodes; its edges
carry local ids, so that ``L`` message-passing layers over it give the seeds their exact
``L``-hop outputs on the sampled neighbourhoods.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Csr:
    """Incoming edges grouped by target: node ``v``'s sources are
    ``col[rowptr[v]:rowptr[v+1]]``, with relation types ``rel``."""

    rowptr: Tensor
    col: Tensor
    rel: Tensor

    @classmethod
    def incoming(cls, src: Tensor, dst: Tensor, rel: Tensor, num_nodes: int) -> Csr:
        order = torch.argsort(dst * num_nodes + src)
        rowptr = torch.zeros(num_nodes + 1, dtype=torch.long)
        rowptr[1:] = torch.cumsum(torch.bincount(dst, minlength=num_nodes), 0)
        return cls(rowptr, src[order], rel[order])

    @property
    def num_nodes(self) -> int:
        return len(self.rowptr) - 1

    def edge_index(self) -> Tensor:
        """Every edge as ``(2, E)`` (source, target), in CSR order (``rel`` lines up)."""
        dst = torch.repeat_interleave(torch.arange(self.num_nodes), self.rowptr.diff())
        return torch.stack([self.col, dst])

    def degree(self, nodes: Tensor) -> Tensor:
        return self.rowptr[nodes + 1] - self.rowptr[nodes]


def sample_incoming(
    csr: Csr, nodes: Tensor, fanout: int, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """``(source, target position in nodes, relation)`` of at most ``fanout`` incoming
    edges per node, drawn without replacement: each node's edges get random keys and the
    ``fanout`` smallest stay (work: the frontier's total degree)."""
    degree = csr.degree(nodes)
    total = int(degree.sum())
    owner = torch.repeat_interleave(torch.arange(len(nodes)), degree)
    first = torch.cumsum(degree, 0) - degree
    edge = csr.rowptr[nodes][owner] + torch.arange(total) - first[owner]
    keys = owner.double() + torch.rand(total, generator=generator, dtype=torch.double)
    order = torch.argsort(keys)
    rank = torch.arange(total) - first[owner[order]]
    chosen = order[rank < fanout]
    edge = edge[chosen]
    return csr.col[edge], owner[chosen], csr.rel[edge]


@dataclass(frozen=True)
class Subgraph:
    nodes: Tensor  # global ids, the seeds first
    edge_index: Tensor  # (2, E) local (source, target)
    edge_type: Tensor
    num_seeds: int


def k_hop(
    csr: Csr, seeds: Tensor, fanouts: tuple[int, ...], generator: torch.Generator
) -> Subgraph:
    """The fan-out sample around ``seeds`` (distinct), one hop per entry of ``fanouts``."""
    local = torch.full((csr.num_nodes,), -1, dtype=torch.long)
    local[seeds] = torch.arange(len(seeds))
    nodes, frontier = [seeds], seeds
    count = len(seeds)
    src_parts, dst_parts, rel_parts = [], [], []
    for fanout in fanouts:
        src, position, rel = sample_incoming(csr, frontier, fanout, generator)
        new = torch.unique(src[local[src] < 0])
        local[new] = torch.arange(count, count + len(new))
        count += len(new)
        src_parts.append(local[src])
        dst_parts.append(local[frontier[position]])
        rel_parts.append(rel)
        nodes.append(new)
        frontier = new
    return Subgraph(
        torch.cat(nodes),
        torch.stack([torch.cat(src_parts), torch.cat(dst_parts)]),
        torch.cat(rel_parts),
        len(seeds),
    )
