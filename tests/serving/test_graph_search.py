"""The metric-agnostic search over faiss's HNSW graph: with one search and the distance as
its metric it finds what faiss finds; more parallel searches lose nothing."""

from __future__ import annotations

import faiss
import numpy as np

from serving.graph_search import HnswGraph, search


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
        ids, scores = search(graph, lambda v, q=q: -((x[v] - q) ** 2).sum(1), k=10, ef=32)
        assert (np.diff(scores) <= 0).all()
        same.append(len(set(ids.tolist()) & set(expected.tolist())) / 10)
    assert min(same) == 1.0  # the same ten items for every query


def test_parallel_searches_share_one_heap_and_lose_no_recall():
    x, index = _index()
    graph = HnswGraph.of(index.hnsw)
    queries = np.random.default_rng(2).standard_normal((30, 16)).astype("float32")
    exact = np.argsort(((x[None] - queries[:, None]) ** 2).sum(-1), axis=1)[:, :10]
    recall = {}
    for p in (1, 4):
        found = [
            search(graph, lambda v, q=q: -((x[v] - q) ** 2).sum(1), k=10, ef=32, parallel=p)[0]
            for q in queries
        ]
        recall[p] = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact, strict=True)])
    assert recall[1] > 0.8 and recall[4] >= recall[1] - 0.02
