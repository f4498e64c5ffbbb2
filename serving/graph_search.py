"""Best-first search over the HNSW graph that faiss builds, scored by any metric
(GMP-GR's C-HiPANNS, first part).

faiss exposes its graph (:meth:`HnswGraph.of`); the search walks it the way HNSW does
(greedy descent through the upper levels, then a best-first search with a result list of
``ef`` on level 0) but asks ``score(ids)`` for each step's candidates, higher is better,
so a learned relevance can replace the distance. With ``parallel = P`` the descent keeps
the P best nodes per level and level 0 expands the P best open candidates per round, all
of them sharing one candidate heap and one result list; each round scores their
neighbours in one call (one batch for a neural metric).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

import faiss
import numpy as np

Score = Callable[[np.ndarray], np.ndarray]  # ids (n,) -> scores (n,), higher is better


@dataclass(frozen=True)
class HnswGraph:
    neighbors: np.ndarray  # every node's slots, level by level, -1 for empty
    offsets: np.ndarray  # per node: where its slots start
    cum: np.ndarray  # per level: the slot offset of that level within a node's slots
    levels: np.ndarray  # per node: its top level + 1
    entry: int
    max_level: int

    @classmethod
    def of(cls, hnsw: faiss.HNSW) -> HnswGraph:
        return cls(
            faiss.vector_to_array(hnsw.neighbors),
            faiss.vector_to_array(hnsw.offsets).astype(np.int64),
            faiss.vector_to_array(hnsw.cum_nneighbor_per_level).astype(np.int64),
            faiss.vector_to_array(hnsw.levels),
            int(hnsw.entry_point),
            int(hnsw.max_level),
        )

    def neighbours(self, nodes: np.ndarray, level: int) -> np.ndarray:
        """The distinct neighbours of ``nodes`` on ``level``."""
        out = []
        for node in nodes:
            start = self.offsets[node] + self.cum[level]
            out.append(self.neighbors[start : self.offsets[node] + self.cum[level + 1]])
        found = np.concatenate(out) if out else np.empty(0, np.int32)
        return np.unique(found[found >= 0]).astype(np.int64)


def search(
    graph: HnswGraph, score: Score, k: int, ef: int, parallel: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best nodes found (ids and scores, best first)."""
    ef = max(ef, k)
    current = np.array([graph.entry])
    current_scores = score(current)
    for level in range(graph.max_level, 0, -1):
        while True:  # greedy: move while a neighbour of the P best scores better
            near = np.setdiff1d(graph.neighbours(current, level), current)
            pool = np.concatenate([current, near])
            pool_scores = np.concatenate([current_scores, score(near)])
            keep = np.lexsort((pool, -pool_scores))[:parallel]
            if set(pool[keep].tolist()) == set(current.tolist()):
                break
            current, current_scores = pool[keep], pool_scores[keep]
    visited = set(current.tolist())
    candidates = [(-s, int(i)) for s, i in zip(current_scores, current, strict=True)]
    heapq.heapify(candidates)
    results = [(s, int(i)) for s, i in zip(current_scores, current, strict=True)]
    heapq.heapify(results)  # a min-heap: results[0] is the worst kept
    while candidates:
        batch = []
        while candidates and len(batch) < parallel:
            neg, node = heapq.heappop(candidates)
            if len(results) >= ef and -neg < results[0][0]:
                break  # no open candidate can improve the result list
            batch.append(node)
        if not batch:
            break
        near = [int(v) for v in graph.neighbours(np.array(batch), 0) if int(v) not in visited]
        visited.update(near)
        if not near:
            continue
        for s, v in zip(score(np.array(near)).tolist(), near, strict=True):
            if len(results) < ef or s > results[0][0]:
                heapq.heappush(candidates, (-s, v))
                heapq.heappush(results, (s, v))
                if len(results) > ef:
                    heapq.heappop(results)
    best = sorted(results, key=lambda t: (-t[0], t[1]))[:k]
    return np.array([v for _, v in best]), np.array([s for s, _ in best])
