"""The heterogeneous graph the end-to-end GNN samples from, built from training rows only.

Nodes: items ``0..N-1``, then concepts ``N..N+C-1``. Relations, each one directed type:
``<relation>`` (concept -> item) and ``<relation>_of`` (item -> concept) per concept
relation, and ``coengaged`` (item <-> item): each item's :data:`COENGAGED_K` items of
highest cosine over the training users (at least :data:`MIN_SUPPORT` shared users). Users
are not nodes: a user is the readout of their history's item outputs, so a user the model
never saw is served from their history alone (:mod:`training.e2e_model`).

Every node has fixed input features ``x`` (what GFAE reconstructs): a seeded Gaussian
projection of the item's L2-normalised TF-IDF concept vector (of the concept's one-hot, for
a concept), and the z-scored ``log(1 + training users)`` of an item (0 for a concept).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from training.cross_domain import sparse_matrix
from training.subgraph import Csr
from training.time_split import E2EInputs, UserTimeSplit

COENGAGED = "coengaged"
COENGAGED_K = 10
MIN_SUPPORT = 2
FEATURES = 32
ITEM_BLOCK = 1024


@dataclass(frozen=True)
class HeteroGraph:
    csr: Csr  # incoming edges per node: the sources that send it messages
    relations: tuple[str, ...]
    x: Tensor  # (N + C, FEATURES) fixed input features
    known: Tensor  # (N,) bool: the item has training interactions
    num_items: int

    @property
    def num_nodes(self) -> int:
        return len(self.x)


def coengaged_pairs(user: np.ndarray, item: np.ndarray, num_users: int, n: int) -> Tensor:
    """``(2, E)`` item pairs (both directions): each item's top :data:`COENGAGED_K` by
    cosine of user columns, blocks of :data:`ITEM_BLOCK` items (memory ``block × N``)."""
    xt = sparse_matrix(item, user, torch.ones(len(item)), (n, num_users))
    norm = torch.sqrt(torch.bincount(torch.from_numpy(item), minlength=n).float()).clamp(min=1)
    src, dst = [], []
    k = min(COENGAGED_K, n - 1)
    for start in range(0, n, ITEM_BLOCK):
        stop = min(start + ITEM_BLOCK, n)
        columns = torch.index_select(xt, 0, torch.arange(start, stop)).to_dense()
        support = torch.sparse.mm(xt, columns.t()).t()  # shared users, (block, N)
        support[torch.arange(stop - start), torch.arange(start, stop)] = 0
        cosine = support / norm[start:stop, None] / norm[None, :]
        cosine[support < MIN_SUPPORT] = 0
        values, ids = cosine.topk(k, dim=1)
        row, col = (values > 0).nonzero(as_tuple=True)
        src.append(row + start)
        dst.append(ids[row, col])
    pairs = torch.stack([torch.cat(src), torch.cat(dst)])
    both = torch.unique(torch.cat([pairs, pairs.flip(0)], 1), dim=1)
    return both


def _features(data: E2EInputs, users_per_item: Tensor, seed: int) -> Tensor:
    n, c = data.num_items, data.num_concepts
    proj = torch.randn(max(c, 1), FEATURES - 1, generator=torch.Generator().manual_seed(seed))
    rows = torch.from_numpy(data.concept_item.astype(np.int64))
    cols = torch.from_numpy(data.concept.astype(np.int64))
    df = torch.bincount(cols, minlength=c).float().clamp(min=1)
    idf = torch.log(n / df)[cols]
    norm = torch.zeros(n).index_add_(0, rows, idf**2).sqrt().clamp(min=1e-12)
    content = torch.zeros(n, FEATURES - 1).index_add_(
        0, rows, (idf / norm[rows])[:, None] * proj[cols]
    )
    log_pop = torch.log1p(users_per_item)
    log_pop = (log_pop - log_pop.mean()) / log_pop.std().clamp(min=1e-6)
    items = torch.cat([content, log_pop[:, None]], 1)
    concepts = torch.cat([proj[:c], torch.zeros(c, 1)], 1)
    return torch.cat([items, concepts])


def hetero_graph(data: E2EInputs, split: UserTimeSplit, seed: int = 0) -> HeteroGraph:
    """The graph of ``split``'s training rows and ``data``'s item concepts."""
    n, c = data.num_items, data.num_concepts
    user, item = split.rows(0)
    users_per_item = torch.bincount(torch.from_numpy(item), minlength=n).float()
    relations = (*data.relations, *(f"{r}_of" for r in data.relations), COENGAGED)
    concept = torch.from_numpy(data.concept.astype(np.int64)) + n
    concept_item = torch.from_numpy(data.concept_item.astype(np.int64))
    pairs = torch.unique(torch.stack([concept, concept_item]), dim=1)
    rel = torch.from_numpy(data.concept_relation.astype(np.int64))[pairs[0] - n]
    r = len(data.relations)
    co = coengaged_pairs(user, item, split.num_users, n)
    src = torch.cat([pairs[0], pairs[1], co[0]])
    dst = torch.cat([pairs[1], pairs[0], co[1]])
    edge_type = torch.cat([rel, rel + r, torch.full((co.shape[1],), 2 * r)])
    return HeteroGraph(
        csr=Csr.incoming(src, dst, edge_type, n + c),
        relations=relations,
        x=_features(data, users_per_item, seed),
        known=users_per_item > 0,
        num_items=n,
    )
