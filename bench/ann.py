"""ANN benchmark: the served HNSW index against exact search, by collection size and device.

    python -m bench.ann [--sizes 10000 100000 1000000] [--queries 2000]

For each size, a clustered matrix of N vectors (dim 64, a tenth of them new items that
share their cluster's vector) goes through the same build as the ``ann_index`` asset
(faiss HNSW over the inner-product-to-L2 reduction, ``ef_search`` tuned to the target
recall). Its peer is exact search: one matrix product and top-k per batch of queries in
torch, on the device the project picks (CUDA when present: the brute-force GPU retrieval
that industrial systems serve from). Both answer the same similar-item queries; recall@10
of each is counted by score against float64 exact scores.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bench.report import DOC, stamp, write_section
from resources.markdown import markdown_table
from serving.build import build_bundle, served_items
from serving.index import IndexParams, query_vectors, recall_at_k
from serving.synthetic import clustered_matrix
from training.device import device_name, pick_device

K = 10


def exact_topk(
    items: np.ndarray, queries: np.ndarray, k: int, device: torch.device, batch: int
) -> tuple[np.ndarray, float]:
    """Top-k item ids per query by one matrix product per batch; and queries per second
    (transfers of the queries and the results included, the item matrix resident)."""
    matrix = torch.from_numpy(items).to(device)
    q = torch.from_numpy(queries)

    def run() -> list[torch.Tensor]:
        return [
            (chunk.to(device, non_blocking=True) @ matrix.T).topk(k, dim=1).indices.cpu()
            for chunk in q.split(batch)
        ]

    run()  # warm-up: kernels, the BLAS handle, the allocator
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    ids = torch.cat(run()).numpy()
    seconds = time.perf_counter() - start
    return ids, len(queries) / seconds


def scores_of(items: np.ndarray, queries: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """float64 inner products of each query with its returned items (``-inf`` for -1)."""
    rows = items[np.maximum(ids, 0)].astype(np.float64)  # (Q, k, d)
    scores = np.einsum("qkd,qd->qk", rows, queries.astype(np.float64))
    return np.where(ids >= 0, scores, -np.inf)


def truth_scores(items: np.ndarray, queries: np.ndarray, k: int, batch: int = 256) -> np.ndarray:
    """The exact k best float64 scores of each query (the recall reference)."""
    items64 = items.astype(np.float64)
    out = []
    for chunk in np.array_split(queries.astype(np.float64), max(1, len(queries) // batch)):
        full = chunk @ items64.T
        out.append(-np.sort(-np.partition(full, -k, axis=1)[:, -k:], axis=1))
    return np.concatenate(out)


def one_size(n: int, n_queries: int, device: torch.device, batch: int) -> list[object]:
    matrix, concepts = clustered_matrix(n, dim=64, clusters=max(4, n // 200))
    start = time.perf_counter()
    params = IndexParams(sample_queries=200, exact_fallback=False)  # HNSW is what is measured
    bundle, tuning, _ = build_bundle(matrix, concepts, params, "bench")
    build_seconds = time.perf_counter() - start
    items = served_items(matrix)
    rows = np.random.default_rng(1).choice(n, size=min(n, n_queries), replace=False)
    queries = query_vectors(items[rows, :-1], bundle.meta["popularity_weight"])
    truth = truth_scores(items, queries, K)

    start = time.perf_counter()
    _, hnsw_ids = bundle.index.search(queries, K)
    hnsw_qps = len(queries) / (time.perf_counter() - start)
    single = queries[:200]
    start = time.perf_counter()
    for q in single:
        bundle.index.search(q[None, :], K)
    single_qps = len(single) / (time.perf_counter() - start)
    exact_ids, exact_qps = exact_topk(items, queries, K, device, batch)
    return [
        f"{n:,}",
        f"{build_seconds:.1f}",
        tuning.ef_search,
        f"{hnsw_qps:,.0f}",
        f"{single_qps:,.0f}",
        f"{recall_at_k(scores_of(items, queries, hnsw_ids), truth):.3f}",
        f"{exact_qps:,.0f}",
        f"{recall_at_k(scores_of(items, queries, exact_ids), truth):.3f}",
        f"{hnsw_qps / exact_qps:.2f}",
    ]


HEADER = [
    "vectors",
    "HNSW build + tune s",
    "ef_search",
    "HNSW QPS (batch)",
    "HNSW QPS (one per call)",
    "HNSW recall@10",
    "exact QPS (batch)",
    "exact recall@10",
    "HNSW ÷ exact QPS",
]


def main(argv: list[str] | None = None) -> list[list[object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=0, help="exact-search batch (0: by device)")
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args(argv)
    device = pick_device()
    # a (batch, N) float32 score block per step: 1 GiB at a million vectors on CPU
    batch = args.batch or (1024 if device.type == "cuda" else 256)
    rows = [
        one_size(n, args.queries, device, batch) for n in tqdm(args.sizes, desc="ANN benchmark")
    ]
    body = f"""## ANN: HNSW index against exact search ({device_name(device)})

{stamp("faiss-cpu", "torch")}

{args.queries:,} similar-item queries (k = {K}) per size, dim 65 served vectors (64 + the
popularity prior), HNSW M 32, ef_construction 200, ef_search: the smallest whose recall
on 200 sample queries reaches 0.95 with 95% confidence (the one-sided lower bound over
queries; the table's recall is on queries drawn separately); faiss uses
{os.cpu_count()} CPU threads. Exact search: matrix product and
top-k in torch on {device.type}, {batch} queries per step.

{markdown_table(HEADER, rows)}

Recall counts a result as correct when it scores at least the exact 10th score (float64),
so tied new items (equal vectors) are all correct answers.

Where the time goes: exact search is one (queries × N) matrix product and a top-k per
batch, so its cost grows with N, and on a GPU it runs near memory bandwidth (the item
matrix is N × 65 floats, 260 MB per million vectors). HNSW visits about ef_search
neighbour lists per query, nearly flat in N, in faiss's C++ over the CPU cores, in each
norm range's graph that can still beat the query's k-th score (one Python call per range:
at one query per call that overhead shows, 3,464 → 2,325 QPS at 10^6 when the index
became norm-ranged, 2026-12-07); the served path then maps rows to entities (rows are
distinct vectors; a row that stands for several tied new items expands to them), in one
vectorised step for the batch. What would
move it: the build (M, ef_construction) dominates at a million vectors and is a one-off
per refresh; at serving time, a GPU holding the matrix answers exactly, and HNSW is the
choice without one or past GPU memory.
"""
    write_section(
        f"ann-{device.type}", body, args.doc, {"sizes": (HEADER, rows)}, device_name(device)
    )
    return rows


if __name__ == "__main__":
    main()
