"""Similar items and user-to-item retrieval over an :class:`~serving.artifact.IndexBundle`.

``search`` is whatever runs the index (directly, or through the micro-batcher); it takes
query vectors ``(B, d)`` and ``k`` and returns ``(B, k)`` scores and entity ids. Results
are :class:`Hit` rows that remember which query row found them, so that the caller can
split a score into its similarity and its popularity prior.
"""

from __future__ import annotations

import heapq
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple

import numpy as np

Search = Callable[[np.ndarray, int], Awaitable[tuple[np.ndarray, np.ndarray]]]
Keep = Callable[[int], bool]
EVENT_WEIGHTS = {"view": 1.0, "click": 1.0, "like": 2.0, "add_to_cart": 3.0, "purchase": 4.0}
# a filter that keeps a fraction of the catalogue searches this many times deeper, and
# again as deep while a row is short of k and the index has more (a history in one domain
# asked for another: its own neighbours are all of its domain), at most MAX_WIDENINGS times
FILTER_WIDENING = 4
MAX_WIDENINGS = 4


class Hit(NamedTuple):
    entity: int
    score: float
    row: int  # the query row that found it


def _width(k: int, skip: Sequence[set[int]], keep: Keep | None) -> int:
    return k * (FILTER_WIDENING if keep else 1) + max((len(s) for s in skip), default=0)


async def nearest(
    search: Search, queries: np.ndarray, skip: Sequence[set[int]], k: int, keep: Keep | None
) -> list[list[Hit]]:
    """The ``k`` best entities for each query row, its ``skip`` set left out (the query
    item itself, a history, excluded ids) and only those ``keep`` accepts (one index call
    for all rows; with a filter, more for the rows it left short while the index has more)."""
    width = _width(k, skip, keep)
    out: list[list[Hit]] = [[] for _ in range(len(queries))]
    rows = np.arange(len(queries))
    for widening in range(MAX_WIDENINGS + 1):
        scores, ids = await search(queries[rows], width)
        short = []
        for i, row in enumerate(rows):
            hits = [
                Hit(int(e), float(s), int(row))
                for e, s in zip(ids[i], scores[i], strict=True)
                if e >= 0 and int(e) not in skip[row] and (keep is None or keep(int(e)))
            ]
            out[row] = hits[:k]
            exhausted = bool((ids[i] < 0).any())  # the index had fewer entities than asked
            if len(hits) < k and keep is not None and not exhausted:
                short.append(row)
        if not short or widening == MAX_WIDENINGS:
            break
        rows, width = np.array(short), width * FILTER_WIDENING * 2
    return out


def weighted_mean(vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One query from a history: the weighted mean of its query vectors ``(len, d)``."""
    return (vectors * weights[:, None]).sum(0) / max(float(weights.sum()), 1e-12)


async def recommend_multi_seed(
    search: Search, queries: np.ndarray, skip: set[int], k: int, keep: Keep | None
) -> list[Hit]:
    """One search per seed (all seeds in one index call, which faiss runs in parallel),
    merged through one heap keyed by each candidate's best score over the seeds. Widens the
    search beyond the single mean query (GMP-GR's inter-candidate parallel search); the
    caller picks the seeds (the heaviest recent history items)."""
    best: dict[int, Hit] = {}
    for hits in await nearest(search, queries, [skip] * len(queries), k, keep):
        for hit in hits:
            if hit.score > best.get(hit.entity, Hit(hit.entity, -np.inf, 0)).score:
                best[hit.entity] = hit
    return heapq.nlargest(k, best.values(), key=lambda h: (h.score, -h.entity))
