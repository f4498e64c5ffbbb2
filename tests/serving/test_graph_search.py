"""The metric-agnostic search over faiss's HNSW graph: with one search and the distance as
its metric it finds what faiss finds; more parallel searches lose nothing; batching many
queries' candidates changes no query's answer."""

from __future__ import annotations

import faiss
import numpy as np

from serving.graph_search import HnswGraph, search, search_many


def _index(n: int = 3000, d: int = 16):
    x = np.random.default_rng(0).standard_normal((n, d)).astype("float32")
    index = faiss.IndexHNSWFlat(d, 8)
    index.hnsw.efConstruction = 40
    index.add(x)
    return x, index


def test_one_search_with_the_distance_finds_what_faiss_finds():
    x, index = _index()
    graph = HnswGraph.of(index.hnsw)
    queries = np.random.default_rng(1).standard_normal((50, 16)).astype("float32")
    index.hnsw.efSearch = 32
    _, faiss_ids = index.search(queries, 10)
    same = []
    for q, expected in zip(queries, faiss_ids, strict=True):
        found = search(graph, lambda v, q=q: -((x[v] - q) ** 2).sum(1), k=10, ef=32)
        assert (np.diff(found.scores) <= 0).all()
        assert len(np.unique(found.scored)) == len(found.scored)  # nothing scored twice
        same.append(len(set(found.ids.tolist()) & set(expected.tolist())) / 10)
    assert min(same) == 1.0  # the same ten items for every query


def test_parallel_searches_share_one_heap_and_lose_no_recall():
    x, index = _index()
    graph = HnswGraph.of(index.hnsw)
    queries = np.random.default_rng(2).standard_normal((30, 16)).astype("float32")
    exact = np.argsort(((x[None] - queries[:, None]) ** 2).sum(-1), axis=1)[:, :10]
    recall = {}
    for p in (1, 4):
        found = [
            search(graph, lambda v, q=q: -((x[v] - q) ** 2).sum(1), k=10, ef=32, parallel=p).ids
            for q in queries
        ]
        recall[p] = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact, strict=True)])
    assert recall[1] > 0.8 and recall[4] >= recall[1] - 0.02


def test_batching_many_queries_preserves_each_answer():
    x, index = _index()
    graph = HnswGraph.of(index.hnsw)
    queries = np.random.default_rng(3).standard_normal((12, 16)).astype("float32")
    alone = [
        search(graph, lambda v, q=q: -((x[v] - q) ** 2).sum(1), k=10, ef=24, parallel=2)
        for q in queries
    ]
    sizes: list[int] = []
    together = search_many(
        graph,
        lambda rows, v: -((x[v] - queries[rows]) ** 2).sum(1),
        len(queries),
        k=10,
        ef=24,
        parallel=2,
        max_batch=50,  # smaller than many rounds' candidates: asks are split across calls
        on_batch=sizes.append,
    )
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_allclose(a.scores, b.scores)
        np.testing.assert_array_equal(a.scored, b.scored)
    assert max(sizes) == 50 and sum(sizes) == sum(len(a.scored) for a in alone)
    assert len(sizes) < sum(len(a.scored) for a in alone) / 10  # far fewer, larger calls
