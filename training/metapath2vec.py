r"""Metapath2Vec over items, users and concepts (Dong et al., 2017), as NetEase used it to
carry music behaviour into live-streaming recall.

Walks follow two metapaths from every item: **item-user-item** (a user who engaged the
item, then another item of that user: behaviour, across domains when users are shared)
and **item-concept-item** (a concept of the item, then another item with that concept:
semantics, the only path a new item has). Each walk runs on one bipartite graph, so the
node types alternate as the metapath says. Skip-gram with negative sampling over the
walks' heterogeneous nodes, for a node :math:`v` and its context :math:`c` in the walk:

.. math::
    \mathcal{L} = -\log σ(X_c^\top X_v) - \sum_{k} \log σ(-X_{n_k}^\top X_v)

(metapath2vec's objective; negatives are drawn from all nodes, not per type as in
metapath2vec++). PyG's ``MetaPath2Vec`` needs torch-cluster, which this environment
lacks, so the walks step over CSR arrays like :mod:`training.deepwalk`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from training.deepwalk import DeepWalkParams, concept_pairs, csr, random_walks, skipgram
from training.kg_arrays import ENTITY, KGArrays, NodeSpace


def user_item_pairs(users: np.ndarray, entities: np.ndarray, user_offset: int) -> np.ndarray:
    """User-item edges ``(2, 2E)`` on a node space where users start at ``user_offset``."""
    u = users.astype(np.int64) + user_offset
    e = entities.astype(np.int64)
    return np.concatenate([np.stack([e, u]), np.stack([u, e])], axis=1)


def train_metapath2vec(
    kg: KGArrays,
    users: np.ndarray,
    entities: np.ndarray,
    params: DeepWalkParams,
    device: torch.device,
    progress: Callable[[int, float], None] | None = None,
) -> Tensor:
    """Entity embeddings ``(num_entities, dim)``. ``users`` and ``entities`` are the
    user-item edges (dense user ids, entity node ids); half of each epoch's walks follow
    item-user-item, half item-concept-item."""
    space = NodeSpace.of(kg)  # entities, then concept types; users after them
    num_users = int(users.max()) + 1 if len(users) else 0
    total = space.total + num_users
    behaviour = csr(torch.from_numpy(user_item_pairs(users, entities, space.total)), total)
    parts = concept_pairs(kg, space)
    semantics = csr(
        torch.from_numpy(np.concatenate(parts, axis=1) if parts else np.zeros((2, 0), np.int64)),
        total,
    )
    first = space.offsets[ENTITY]
    starts = torch.arange(first, first + kg.num_entities).repeat(params.walks_per_node)

    def walks(gen: torch.Generator) -> Tensor:
        shuffled = starts[torch.randperm(len(starts), generator=gen)]
        half = len(shuffled) // 2
        return torch.cat(
            [
                random_walks(*behaviour, shuffled[:half], params.walk_length, gen),
                random_walks(*semantics, shuffled[half:], params.walk_length, gen),
            ]
        )

    vectors = skipgram(walks, total, params, device, progress)
    return vectors[first : first + kg.num_entities]
