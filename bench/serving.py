"""Serving benchmark: the real HTTP service under load against the index called directly.

    python -m bench.serving [--lake lake] [--levels 1 4 16 32] [--requests 2000]

The index is the lake's latest ``ann_index`` (``make demo`` first) or, with
``--synthetic N``, a clustered matrix of N vectors (seconds; used by CI). Loopback only,
bounded in requests and seconds per level.

For each concurrency level, the service (started twice: micro-batching on and off) gets
``/v1/items/{id}/similar?k=10`` requests from that many client threads, and then
``POST /v1/items/similar:batch`` requests of 64 ids each: throughput in queries (ids) per
second, p50/p99 latency per request, and the index calls the requests caused (from the
service's own ``/metrics``). Beside it, the same queries through ``VectorIndex.search`` in process
(one query per call, and all in one call) and exact search (one matrix product): the
ratios say what the HTTP layer costs and what the index saves. Recall@10 of the served
answers is checked against exact search (by score, ties counted as hits).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

from bench.report import DOC, stamp, write_section
from resources.markdown import markdown_table
from serving.artifact import IndexBundle, load_bundle
from serving.build import build_bundle
from serving.index import IndexParams, item_vectors, recall_at_k
from serving.launch import similar_items_service
from serving.synthetic import clustered_matrix
from storage.layout import LakeLayout
from storage.versions import latest, publish


def synthetic_lake(root: Path, n: int) -> Path:
    matrix, concepts = clustered_matrix(n, dim=64, clusters=max(4, n // 200))
    bundle, _, _ = build_bundle(matrix, concepts, IndexParams(sample_queries=200), "bench")
    publish(bundle, LakeLayout(root).index, "bench")
    return root


BATCH_IDS = 64


def index_calls(url: str) -> float:
    metrics = requests.get(f"{url}/metrics", timeout=10).text
    line = next(x for x in metrics.splitlines() if x.startswith("cograph_index_batch_rows_count"))
    return float(line.split()[-1])


def request_bytes(items: list[str], i: int, batch: int, strategy: str = "") -> bytes:
    """The ``i``-th request of a run, as bytes on the wire (HTTP/1.1, keep-alive): one id,
    ``batch`` ids, or with a ``strategy`` a recommendation for a history of 5 items."""
    if strategy:
        history = [{"item_id": items[(i * 5 + j) % len(items)]} for j in range(5)]
        body = json.dumps({"history": history, "k": 10, "strategy": strategy}).encode()
        head = (f"POST /v1/recommend HTTP/1.1\r\nHost: b\r\nContent-Type: application/json"
                f"\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
        return head.encode() + body
    if not batch:
        item = items[i % len(items)]
        return f"GET /v1/items/{item}/similar?k=10 HTTP/1.1\r\nHost: b\r\n\r\n".encode()
    ids = [items[(i * batch + j) % len(items)] for j in range(batch)]
    body = json.dumps({"item_ids": ids, "k": 10}).encode()
    head = (f"POST /v1/items/similar:batch HTTP/1.1\r\nHost: b\r\nContent-Type: application/json"
            f"\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
    return head.encode() + body


async def _connection(
    host: str, port: int, wire: list[bytes], counter, deadline: float, out: list[tuple[float, int]]
) -> None:
    """One keep-alive connection sending requests one after another; (seconds, status)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for i in counter:
            if time.monotonic() > deadline:
                return
            start = time.perf_counter()
            writer.write(wire[i])
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            out.append((time.perf_counter() - start, status))
    finally:
        writer.close()


def load(
    url: str,
    items: list[str],
    concurrency: int,
    total: int,
    max_seconds: float,
    batch: int = 0,
    strategy: str = "",
) -> dict:
    """``total`` requests over ``concurrency`` keep-alive connections: one id each (``batch``
    0) or ``batch`` ids each through the batch endpoint; queries/s, latency percentiles and
    the index calls they caused. The client is asyncio over raw sockets in one thread, so
    that it costs the machine less than the server it measures."""
    host, port = url.removeprefix("http://").split(":")
    wire = [request_bytes(items, i, batch, strategy) for i in range(total)]
    done: list[tuple[float, int]] = []
    calls = index_calls(url)

    async def run() -> None:
        counter = iter(range(total))
        deadline = time.monotonic() + max_seconds
        await asyncio.gather(*(_connection(host, int(port), wire, counter, deadline, done)
                               for _ in range(concurrency)))  # fmt: skip

    start = time.perf_counter()
    asyncio.run(run())
    seconds = time.perf_counter() - start
    ms = np.array([t for t, _ in done]) * 1000
    return {
        "requests": len(done),
        "failures": sum(status != 200 for _, status in done),
        "qps": len(done) * max(batch, 1) / seconds,
        "index_calls": index_calls(url) - calls,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
    }


def load_row(
    mode: str, endpoint: str, request: str, level: int, r: dict, ratio: str
) -> list[object]:
    """One row of the serving table from a :func:`load` result (index calls only where one
    process answered them all)."""
    calls = "—" if "workers" in mode else f"{r['index_calls']:,.0f}"
    return [mode, endpoint, request, level, r["requests"], r["failures"], calls,
            f"{r['qps']:,.0f}", f"{r['p50']:.2f}", f"{r['p99']:.2f}", ratio]  # fmt: skip


def served_recall(url: str, bundle: IndexBundle, entities: np.ndarray) -> float:
    """Recall@10 of the service's answers against exact search, self excluded."""
    items = item_vectors(
        np.asarray(bundle.vectors), bundle.entities.column("log_degree").to_numpy(), True
    )
    queries = bundle.query(entities)
    exact = queries @ items.T
    exact[np.arange(len(entities)), entities] = -np.inf
    truth = -np.sort(-exact, axis=1)[:, :10]
    entity_of = bundle.entity_ids()
    found = np.full((len(entities), 10), -np.inf)
    with requests.Session() as session:
        for row, entity in enumerate(entities):
            item = bundle.entities.column("item_id")[int(entity)].as_py()
            results = session.get(f"{url}/v1/items/{item}/similar?k=10").json()["results"]
            ids = [entity_of[r["item_id"]] for r in results]
            found[row, : len(ids)] = exact[row, ids]
    return recall_at_k(found, truth)


def in_process(bundle: IndexBundle, entities: np.ndarray) -> dict[str, float]:
    """Queries per second of the index one query per call, all in one call, and exact."""
    queries = bundle.query(entities)
    index = bundle.index
    start = time.perf_counter()
    for q in queries:
        index.search(q[None, :], 11)
    single = len(queries) / (time.perf_counter() - start)
    start = time.perf_counter()
    index.search(queries, 11)
    batched = len(queries) / (time.perf_counter() - start)
    items = item_vectors(
        np.asarray(bundle.vectors), bundle.entities.column("log_degree").to_numpy(), True
    )
    start = time.perf_counter()
    for chunk in np.array_split(queries, max(1, len(queries) // 256)):
        np.argpartition(-(chunk @ items.T), 11, axis=1)[:, :11]
    exact = len(queries) / (time.perf_counter() - start)
    return {"single": single, "batched": batched, "exact": exact}


def main(argv: list[str] | None = None) -> list[list[object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", type=Path, default=Path("lake"))
    parser.add_argument("--synthetic", type=int, default=0)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--max-seconds", type=float, default=30.0)
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument(
        "--workers",
        type=int,
        nargs="*",
        default=[1, 2],
        help="also measure the service as this many processes (micro-batching on)",
    )
    parser.add_argument(
        "--strategies",
        nargs="*",
        default=["mean", "neural"],
        help="/v1/recommend strategies also measured (neural: when the lake has a model)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        lake = synthetic_lake(Path(tmp), args.synthetic) if args.synthetic else args.lake
        bundle = load_bundle(latest(LakeLayout(lake).index))
        rng = np.random.default_rng(0)
        n = len(bundle.entities)
        sample = rng.choice(n, size=min(n, 500), replace=False)
        items = [bundle.entities.column("item_id")[int(e)].as_py() for e in sample]
        direct = in_process(bundle, sample)
        rows, recall = [], float("nan")
        # micro-batching on and off in one process, then on in each of several processes
        setups = [(1, 1), (1, 0)] + [(w, 1) for w in args.workers if w > 1]
        for workers, batching in setups:
            env = {"COGRAPH_MICRO_BATCHING": str(batching)}
            with similar_items_service(lake, env, ("--workers", str(workers))) as url:
                if batching and workers == 1:
                    recall = served_recall(url, bundle, sample[:200])
                runs = [(0, c) for c in args.levels] + [(BATCH_IDS, 1), (BATCH_IDS, 4)]
                mode = "on" if batching else "off"
                if workers > 1:  # /metrics is per worker: its index calls are not the total
                    mode += f", {workers} workers"
                for batch, level in runs:
                    total = args.requests // max(batch // 8, 1)
                    r = load(url, items, level, total, args.max_seconds, batch)
                    request = f"batch of {batch}" if batch else "single id"
                    ratio = f"{r['qps'] / direct['single']:.3f}"
                    rows.append(load_row(mode, "similar items", request, level, r, ratio))
                for strategy in args.strategies:
                    for level in (1, 16):
                        r = load(url, items, level, args.requests // 4, args.max_seconds,
                                 strategy=strategy)  # fmt: skip
                        if r["failures"] == r["requests"]:  # e.g. 409: no neural model
                            continue
                        endpoint = f"recommend, {strategy}"
                        rows.append(load_row(mode, endpoint, "history of 5", level, r, "—"))
    table = markdown_table(
        [
            "micro-batching",
            "endpoint",
            "request",
            "concurrency",
            "requests",
            "failed",
            "index calls",
            "queries/s",
            "p50 ms",
            "p99 ms",
            "queries/s ÷ index in process",
        ],
        rows,
    )
    body = f"""## Serving (similar items, k = 10, {n:,} entities, index {bundle.version})

{stamp("faiss-cpu", "starlette", "uvicorn")}

In process, the same queries: index one query per call {direct["single"]:,.0f} QPS, all in
one call {direct["batched"]:,.0f} QPS; exact search (matrix product, 256 per batch)
{direct["exact"]:,.0f} QPS. Recall@10 of the served answers against exact search:
**{recall:.3f}** (ef_search {bundle.index.ef_search}).

{table}

Where the time goes: one index call costs {1000 / direct["single"]:.3f} ms, a single-id
request through HTTP about {1000 / max(float(rows[0][7].replace(",", "")), 1e-9):.2f} ms at
concurrency 1: the client's and the server's HTTP, routing, validation and JSON, not the
search. The batch endpoint pays that once for {BATCH_IDS} ids, so its queries/s ÷ the
index's one-query-per-call rate is the ratio to read. Micro-batching merges concurrent
single-id requests into fewer index calls (the "index calls" column): it pays from a few
concurrent clients on, and costs a queue hand-off to a lone client, whose requests never
wait for company (`--max-wait-ms` 0). The client (asyncio over raw keep-alive sockets, one
thread) shares the machine's 2 cores with the server, so absolute rates are low and the
ratios are what carry over. The recommend rows (one history of 5 items per request) compare
the `mean` strategy with `neural` (the learned relevance searched over the index's graph,
present when the lake has a relevance model for the served embeddings): with micro-batching
concurrent `neural` requests share one side-by-side search, whose candidates are scored in
shared calls (fewer "index calls" than requests). "2 workers": `python -m serving --workers 2`,
two processes on one port, each with its own index and batcher and half the cores' threads
(on this 2-core machine they compete with each other and with the client for the same
cores; their index calls are not shown, since each keeps its own `/metrics`).
"""
    write_section("serving", body, args.doc)
    return rows


if __name__ == "__main__":
    main()
