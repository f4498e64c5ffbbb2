"""DeepWalk: walks follow the CSR, and embeddings group entities by community, cold ones too."""

from __future__ import annotations

import numpy as np
import torch

from training.deepwalk import DeepWalkParams, context_pairs, random_walks, train_deepwalk
from training.device import pick_device
from training.synthetic_kg import community_kg


def test_walks_follow_edges_and_stay_on_isolated_nodes():
    # 0 - 1 - 2, and 3 alone
    rowptr = torch.tensor([0, 1, 3, 4, 4])
    col = torch.tensor([1, 0, 2, 1])
    walks = random_walks(rowptr, col, torch.tensor([0, 3, 2]), 6, torch.Generator().manual_seed(0))
    assert walks.shape == (3, 6)
    assert torch.all(walks[1] == 3)
    adjacent = {(0, 1), (1, 0), (1, 2), (2, 1)}
    for walk in walks[[0, 2]].tolist():
        assert all((a, b) in adjacent for a, b in zip(walk, walk[1:], strict=False))


def test_context_pairs_window():
    pairs = context_pairs(torch.tensor([[5, 6, 7]]), window=1)
    assert sorted(map(tuple, pairs.t().tolist())) == [(5, 6), (6, 5), (6, 7), (7, 6)]


def test_embeddings_group_communities_including_cold_entities():
    kg = community_kg(n_entities=400, communities=8, seed=1)
    emb = train_deepwalk(kg, DeepWalkParams(dim=32, epochs=4, walks_per_node=8), pick_device())
    assert emb.shape == (400, 32)
    linked = np.unique(kg.eel)
    cold = torch.from_numpy(np.setdiff1d(np.arange(400), linked))
    genre = torch.from_numpy(kg.concept_edges[("genre", "genre")][1])
    h = torch.nn.functional.normalize(emb, dim=-1)
    sim = h[cold] @ h.t()
    same = genre[cold][:, None] == genre[None, :]
    same[torch.arange(len(cold)), cold] = False  # not itself
    assert sim[same].mean() > sim[~same].mean() + 0.2
