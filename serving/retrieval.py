"""Similar items and user-to-item retrieval over an :class:`~serving.artifact.IndexBundle`.

``search`` is whatever runs the index (directly, or through the micro-batcher); it takes
query vectors ``(B, d)`` and ``k`` and returns ``(B, k)`` scores and entity ids.
"""

from __future__ import annotations

import heapq
from collections.abc import Awaitable, Callable

import numpy as np

Search = Callable[[np.ndarray, int], Awaitable[tuple[np.ndarray, np.ndarray]]]
EVENT_WEIGHTS = {"view": 1.0, "click": 1.0, "like": 2.0, "add_to_cart": 3.0, "purchase": 4.0}


async def similar(
    search: Search, query: np.ndarray, entity_id: int, k: int
) -> list[tuple[int, float]]:
    """The ``k`` nearest entities to one entity, itself left out."""
    scores, ids = await search(query[None, :], k + 1)
    out = [
        (int(e), float(s))
        for e, s in zip(ids[0], scores[0], strict=True)
        if e >= 0 and e != entity_id
    ]
    return out[:k]


def weighted_mean(vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One query from a history: the weighted mean of its query vectors ``(len, d)``."""
    return (vectors * weights[:, None]).sum(0) / max(float(weights.sum()), 1e-12)


async def recommend_mean(
    search: Search, query: np.ndarray, seen: set[int], k: int
) -> list[tuple[int, float]]:
    """Top ``k`` for one mean query, history items skipped (searched with room for them)."""
    scores, ids = await search(query[None, :], k + len(seen))
    out = [
        (int(e), float(s))
        for e, s in zip(ids[0], scores[0], strict=True)
        if e >= 0 and e not in seen
    ]
    return out[:k]


async def recommend_multi_seed(
    search: Search, queries: np.ndarray, seen: set[int], k: int
) -> list[tuple[int, float]]:
    """One search per seed (all seeds in one index call, which faiss runs in parallel),
    merged through one heap keyed by each candidate's best score over the seeds. Widens the
    search beyond the single mean query (GMP-GR's inter-candidate parallel search); the
    caller picks the seeds (the heaviest recent history items)."""
    scores, ids = await search(queries, k + len(seen))
    best: dict[int, float] = {}
    for row in range(len(queries)):
        for e, s in zip(ids[row], scores[row], strict=True):
            if e >= 0 and int(e) not in seen and s > best.get(int(e), -np.inf):
                best[int(e)] = float(s)
    return heapq.nlargest(k, best.items(), key=lambda item: (item[1], -item[0]))
