"""Best-first search over the HNSW graph that faiss builds, scored by any metric
(GMP-GR's hierarchical parallel graph ANNS).

faiss exposes its graph (:meth:`HnswGraph.of`); a search walks it the way HNSW does
(greedy descent through the upper levels, then a best-first search with a result list of
``ef`` on level 0) but asks for each step's candidates' scores, higher is better, so a
learned relevance can replace the distance.

- **C-HiPANNS** (``parallel = P``): the descent keeps the P best nodes per level, so level 0
  starts from the top-P of the level above (breadth-depth balance), and each round of
  level 0 expands the P best open candidates; all P share one candidate heap and one result
  list, and a round's new neighbours are scored in one call.
- **Q-HiPANNS** (:func:`search_many`): the searches of many queries run side by side; each
  round gathers their pending candidates into one scoring call of at most ``max_batch``
  (query, item) pairs, and a query whose candidates do not fit in the space left is split,
  the rest going first into the next round. A neural metric thus runs in large batches,
  and each query's answer is the one it gets alone (a test checks it).

A search is a generator (:func:`walk`) that yields the ids it needs scored and is sent
their scores back, so one implementation serves both the lone and the batched driver.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass

import faiss
import numpy as np

Score = Callable[[np.ndarray], np.ndarray]  # ids (n,) -> scores (n,), higher is better
# query rows (n,) and ids (n,) -> scores (n,): many queries' candidates in one call
ScorePairs = Callable[[np.ndarray, np.ndarray], np.ndarray]


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

    def __len__(self) -> int:
        return len(self.levels)

    def neighbours(self, nodes: np.ndarray, level: int) -> np.ndarray:
        """The distinct neighbours of ``nodes`` on ``level``."""
        out = []
        for node in nodes:
            start = self.offsets[node] + self.cum[level]
            out.append(self.neighbors[start : self.offsets[node] + self.cum[level + 1]])
        found = np.concatenate(out) if out else np.empty(0, np.int32)
        return np.unique(found[found >= 0]).astype(np.int64)


@dataclass(frozen=True)
class Found:
    ids: np.ndarray  # the k best nodes found, best first
    scores: np.ndarray
    scored: np.ndarray  # every node whose score the search asked for, in asking order


Walk = Generator[np.ndarray, np.ndarray, Found]


def walk(
    graph: HnswGraph, k: int, ef: int, parallel: int = 1, seeds: np.ndarray | None = None
) -> Walk:
    """One search: yields the ids it needs scored (never empty), is sent their scores,
    returns what it found. With ``seeds`` (node ids) level 0 starts from them instead of
    the descent from the entry point."""
    ef = max(ef, k)
    known: dict[int, float] = {}  # every score asked for: nothing is scored twice

    def unknown(ids: np.ndarray) -> np.ndarray:
        return np.array([v for v in ids.tolist() if v not in known], dtype=np.int64)

    start = [graph.entry] if seeds is None or not len(seeds) else seeds
    current = np.unique(np.asarray(start, dtype=np.int64))
    known.update(zip(current.tolist(), (yield current).tolist(), strict=True))
    for level in range(graph.max_level if seeds is None else 0, 0, -1):
        while True:  # greedy: move while a neighbour of the P best scores better
            pool = np.union1d(graph.neighbours(current, level), current)
            new = unknown(pool)
            if len(new):
                known.update(zip(new.tolist(), (yield new).tolist(), strict=True))
            pool_scores = np.array([known[v] for v in pool.tolist()])
            keep = np.lexsort((pool, -pool_scores))[:parallel]
            if set(pool[keep].tolist()) == set(current.tolist()):
                break
            current = pool[keep]
    visited = set(current.tolist())
    candidates = [(-known[i], i) for i in visited]
    heapq.heapify(candidates)
    results = [(known[i], i) for i in visited]
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
        near = [v for v in graph.neighbours(np.array(batch), 0).tolist() if v not in visited]
        if not near:
            continue
        visited.update(near)
        new = unknown(np.array(near, dtype=np.int64))
        if len(new):
            known.update(zip(new.tolist(), (yield new).tolist(), strict=True))
        for v in near:
            s = known[v]
            if len(results) < ef or s > results[0][0]:
                heapq.heappush(candidates, (-s, v))
                heapq.heappush(results, (s, v))
                if len(results) > ef:
                    heapq.heappop(results)
    best = sorted(results, key=lambda t: (-t[0], t[1]))[:k]
    return Found(
        np.array([v for _, v in best], dtype=np.int64),
        np.array([s for s, _ in best]),
        np.fromiter(known, dtype=np.int64, count=len(known)),
    )


def search(
    graph: HnswGraph,
    score: Score,
    k: int,
    ef: int,
    parallel: int = 1,
    seeds: np.ndarray | None = None,
) -> Found:
    """One query's search, each round scored by ``score``."""
    steps = walk(graph, k, ef, parallel, seeds)
    try:
        ids = next(steps)
        while True:
            ids = steps.send(np.asarray(score(ids)))
    except StopIteration as done:
        return done.value


def search_many(
    graph: HnswGraph,
    score_pairs: ScorePairs,
    queries: int,
    k: int,
    ef: int,
    parallel: int = 1,
    max_batch: int = 4096,
    on_batch: Callable[[int], None] | None = None,
    seeds: list[np.ndarray] | None = None,
) -> list[Found]:
    """``queries`` searches side by side (query rows ``0..queries-1``, each from its
    ``seeds`` when given), their candidates scored together in calls of at most
    ``max_batch`` pairs (``on_batch`` hears each call's size)."""
    starts = seeds if seeds is not None else [None] * queries
    walks = [walk(graph, k, ef, parallel, starts[q]) for q in range(queries)]
    asks = {q: next(w) for q, w in enumerate(walks)}
    parts: dict[int, list[np.ndarray]] = {q: [] for q in asks}
    done = dict.fromkeys(asks, 0)  # how much of each query's current ask is scored
    waiting = deque(asks)
    found: list[Found | None] = [None] * queries
    while waiting:
        rows, ids, complete, space = [], [], [], max_batch
        while waiting and space > 0:
            q = waiting[0]
            take = min(space, len(asks[q]) - done[q])
            rows.append(np.full(take, q, dtype=np.int64))
            ids.append(asks[q][done[q] : done[q] + take])
            done[q] += take
            space -= take
            if done[q] < len(asks[q]):
                break  # the rest of this ask opens the next round
            complete.append(waiting.popleft())
        pairs = np.concatenate(ids)
        scores = np.asarray(score_pairs(np.concatenate(rows), pairs))
        if on_batch is not None:
            on_batch(len(pairs))
        start = 0
        for q, chunk in zip(np.concatenate([r[:1] for r in rows]).tolist(), ids, strict=True):
            parts[q].append(scores[start : start + len(chunk)])
            start += len(chunk)
        for q in complete:
            answer, parts[q], done[q] = np.concatenate(parts[q]), [], 0
            try:
                asks[q] = walks[q].send(answer)
                waiting.append(q)
            except StopIteration as stop:
                found[q] = stop.value
    return found  # type: ignore[return-value]
