"""The index, and the real service process on 127.0.0.1: endpoints, reload, bad input."""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests

from serving.artifact import load_bundle
from serving.build import build_bundle, compare_variants
from serving.index import (
    IndexParams,
    build,
    item_vectors,
    query_vectors,
    recall_at_k,
    recall_lower_bound,
    vector_digest,
)
from serving.launch import similar_items_service
from serving.synthetic import clustered_matrix
from storage.layout import LakeLayout
from storage.versions import publish as publish_version

TOKEN = "s3cret-token"
ONE = {"item_id": "item-1"}
N = 2000
HEADER_TIMEOUT = 2.0
LOOP_CLOCK_SLACK = 0.05  # libuv time is cached per loop iteration, in milliseconds


def test_recall_lower_bound_and_the_tuner_that_uses_it():
    exact = np.tile(np.arange(10.0, 0.0, -1.0), (100, 1))
    assert recall_lower_bound(exact, exact) == 1.0 == recall_at_k(exact, exact)
    found = exact.copy()
    found[::2, -1] = -np.inf  # half the queries miss their 10th result: recall 0.95
    assert recall_at_k(found, exact) == pytest.approx(0.95)
    low = recall_lower_bound(found, exact)  # per-query sd 0.05 over 100 queries
    assert low == pytest.approx(0.95 - 1.645 * 0.05 * np.sqrt(100 / 99) / 10, rel=1e-6)
    m, concepts = clustered_matrix(N, seed=1)
    _, tuning, _ = build_bundle(m, concepts, IndexParams(sample_queries=200), "v")
    chosen = next(p for p in tuning.curve if p["ef"] == tuning.ef_search)
    assert chosen["recall_low"] >= 0.95 and tuning.recall_at_10_low == chosen["recall_low"]
    assert all(p["recall_low"] < 0.95 for p in tuning.curve if p["ef"] < tuning.ef_search)


def publish(root: Path, version: str, seed: int) -> None:
    m, concepts = clustered_matrix(N, seed=seed)
    bundle, tuning, _ = build_bundle(m, concepts, IndexParams(sample_queries=200), version)
    publish_version(bundle, LakeLayout(root).index, version)


def test_index_reaches_recall_on_duplicates_and_upserts(tmp_path):
    m, concepts = clustered_matrix(N, seed=0)
    bundle, tuning, _ = build_bundle(m, concepts, IndexParams(sample_queries=300), "v1")
    assert tuning.recall_at_10 >= 0.95
    assert len(bundle.index.members) < N  # identical vectors stored once
    index = bundle.index
    items = item_vectors(np.asarray(m.vectors), m.entities.column("log_degree").to_numpy(), True)
    q = query_vectors(np.asarray(m.vectors)[:5], 0.05)
    exact = q @ items.T
    scores, ids = index.search(q, 10)
    np.testing.assert_allclose(scores[:, 0], exact.max(1), rtol=1e-4)
    # move item 7 and add a brand-new item 5000 at the same outlying vector (longer than
    # any other, within the index's norm headroom): searching along it finds both first
    longest = items[np.argmax(np.linalg.norm(items, axis=1))] * 1.2
    index.upsert(np.array([7, 5000]), np.stack([longest, longest]))
    scores, ids = index.search(query_vectors(longest[None, :-1], 0.05), 3)
    assert set(ids[0, :2].tolist()) == {7, 5000} and scores[0, 0] == pytest.approx(scores[0, 1])
    assert index.overflow == 0
    assert len(index) == N + 1 and index.contains(5000)
    bundle.save(tmp_path / "b")
    again = load_bundle(tmp_path / "b")
    assert np.array_equal(again.index.search(q, 10)[1], index.search(q, 10)[1])


def test_an_upsert_a_float_bit_from_a_row_joins_it_across_a_rounding_edge():
    rng = np.random.default_rng(0)
    items = rng.normal(size=(50, 9)).astype(np.float32)
    items[0, 0] = np.float32(0.123455)  # on the digest's fifth-decimal rounding edge
    index = build(items, np.arange(50), IndexParams(kind="flat"))
    nudged = items[0].copy()
    nudged[0] = np.nextafter(nudged[0], np.float32(0))  # one float bit below
    assert vector_digest(nudged) != vector_digest(items[0])
    far = items[1] + 0.1
    index.upsert(np.array([60, 61]), np.stack([nudged, far]))
    assert index.entity_row[60] == index.entity_row[0]  # the same vector: one row
    assert index.entity_row[61] == len(index.members) - 1  # a different one: a new row


def test_rows_upserted_after_the_build_are_scored_exactly(tmp_path):
    m, concepts = clustered_matrix(600, seed=3)
    # a sparse graph searched narrowly: rows joined after the build are easy to miss
    params = IndexParams(m=4, ef_construction=8, ef_grid=(4,), exact_fallback=False)
    bundle, _, _ = build_bundle(m, concepts, params, "v1")
    index = bundle.index
    items = item_vectors(np.asarray(m.vectors), m.entities.column("log_degree").to_numpy(), True)
    longest = np.linalg.norm(items, axis=1).max()
    rng = np.random.default_rng(0)
    fresh = rng.normal(size=(40, index.dim)).astype(np.float32)
    fresh *= 1.1 * longest / np.linalg.norm(fresh, axis=1, keepdims=True)  # within headroom
    index.upsert(np.arange(1000, 1040), fresh)
    queries = query_vectors(fresh[:, :-1], 0.0)
    everything = np.concatenate([items, fresh])
    best = (queries @ everything.T).argmax(1)
    assert (best >= len(items)).all()  # each query's best item is its own new one
    scores, ids = index.search(queries, 1)
    assert (ids[:, 0] == 1000 + best - len(items)).all()
    # the same after a save and a load: the build's size is kept
    bundle.save(tmp_path / "b")
    again = load_bundle(tmp_path / "b").index
    assert again.built_rows == index.built_rows < len(again.members)
    assert np.array_equal(again.search(queries, 1)[1], ids)


def test_an_hnsw_that_misses_its_target_recall_is_replaced_by_exact_search(tmp_path):
    m, concepts = clustered_matrix(500, seed=0)
    # a graph this sparse, searched this narrowly, cannot reach recall 1
    params = IndexParams(m=2, ef_construction=4, ef_grid=(1, 2), target_recall=1.0)
    bundle, tuning, _ = build_bundle(m, concepts, params, "v1")
    assert bundle.meta["replaced_hnsw_recall_at_10"] < 1.0
    assert bundle.index.params.kind == bundle.meta["index_kind"] == "flat"
    assert tuning.recall_at_10 == 1.0
    bundle.save(tmp_path / "b")
    assert load_bundle(tmp_path / "b").index.params.kind == "flat"
    kept, _, _ = build_bundle(m, concepts, replace(params, exact_fallback=False), "v1")
    assert kept.index.params.kind == "hnsw" and "replaced_hnsw_recall_at_10" not in kept.meta


def test_the_bundle_serves_the_index_the_variant_comparison_built():
    m, concepts = clustered_matrix(500, seed=0)
    params = IndexParams(m=2, ef_construction=4, ef_grid=(1, 2), target_recall=1.0)
    keep = frozenset({("hnsw", "none"), ("flat", "none")})
    rows, built = compare_variants(m, params, ("none", "sq8"), keep)
    assert [r["index"] for r in rows] == ["exact (flat)", "HNSW none", "HNSW sq8"]
    assert set(built) == keep
    # the HNSW misses its target, so the bundle serves the comparison's exact index, tuned
    bundle, tuning, seconds = build_bundle(m, concepts, params, "v1", built=built)
    assert bundle.index is built["flat", "none"].index and tuning is built["flat", "none"].tuning
    assert bundle.meta["replaced_hnsw_recall_at_10"] == built["hnsw", "none"].tuning.recall_at_10
    assert seconds == built["hnsw", "none"].seconds + built["flat", "none"].seconds
    fresh, _, _ = build_bundle(m, concepts, params, "v1")  # without: built anew
    assert fresh.index is not bundle.index and fresh.meta["index_kind"] == "flat"


def test_new_items_query_with_their_own_prior_weight_unless_the_caller_names_one():
    m, concepts = clustered_matrix(200, seed=0)
    m.meta["new_item_popularity_weight"] = 0.5
    bundle, _, _ = build_bundle(m, concepts, IndexParams(kind="flat", sample_queries=50), "v1")
    warm, new = 0, 199  # the last tenth are new items (log-degree 0)
    assert bundle.log_degree[warm] > 0 and bundle.log_degree[new] == 0
    ids = np.array([warm, new])
    assert bundle.prior_weights(ids).tolist() == pytest.approx([0.05, 0.5])
    assert bundle.prior_weights(ids, prior=-1.0).tolist() == [-1.0, -1.0]
    assert bundle.query(ids)[:, -1].tolist() == pytest.approx([0.05, 0.5])


def test_the_prior_parameter_trades_similarity_for_popularity(service):
    url, _ = service
    m, _ = clustered_matrix(N, seed=0)
    vectors, log_degree = np.asarray(m.vectors), m.entities.column("log_degree").to_numpy()

    def results(prior: float) -> list[int]:
        reply = requests.get(f"{url}/v1/items/item-3/similar", params={"k": 10, "prior": prior})
        assert reply.status_code == 200, reply.text
        return [int(r["item_id"].removeprefix("item-")) for r in reply.json()["results"]]

    popular, tail = results(3.0), results(-3.0)
    assert log_degree[popular].mean() > log_degree[tail].mean() + 1
    # what the service returns is the exact top 10 of the score with that weight
    exact = vectors[3] @ vectors.T + 3.0 * log_degree
    exact[3] = -np.inf
    assert len(set(popular) & set(np.argsort(-exact)[:10].tolist())) >= 9


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    publish(lake, "v1", seed=0)
    env = {
        "COGRAPH_ADMIN_TOKEN": TOKEN,
        "COGRAPH_RELOAD_POLL_SECONDS": "0",
        "COGRAPH_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
    }
    with similar_items_service(lake, env) as url:
        yield url, lake


def test_similar_items_with_shared_concepts(service):
    url, _ = service
    reply = requests.get(f"{url}/v1/items/item-3/similar", params={"k": 5, "explain": "true"})
    assert reply.status_code == 200
    body = reply.json()
    assert body["index_version"] == "v1" and len(body["results"]) == 5
    assert all(r["item_id"] != "item-3" for r in body["results"])
    assert all(r["shared_concepts"] == ["genre:g3"] for r in body["results"])
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    # a new item (no history, shared vector) gets neighbours from its cluster too
    new = requests.get(f"{url}/v1/items/item-{N - 1}/similar", params={"explain": 1}).json()
    assert len(new["results"]) == 10 and new["results"][0]["shared_concepts"]


def test_recommend_both_strategies_skip_the_history(service):
    url, _ = service
    history = [{"item_id": "item-1", "event": "purchase"}, {"item_id": "item-21", "weight": 0.5}]
    for strategy in ("mean", "multi_seed"):
        reply = requests.post(
            f"{url}/v1/recommend", json={"history": history, "k": 20, "strategy": strategy}
        )
        assert reply.status_code == 200, reply.text
        items = [r["item_id"] for r in reply.json()["results"]]
        assert len(items) == 20 and not {"item-1", "item-21"} & set(items)
    partly = requests.post(
        f"{url}/v1/recommend", json={"history": [{"item_id": "nope"}, {"item_id": "item-2"}]}
    ).json()
    assert partly["ignored_unknown_items"] == ["nope"] and partly["results"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "says"),
    [
        ("get", "/v1/items/missing-item/similar", {}, 404, "missing-item"),
        ("get", "/v1/items/item-1/similar", {"params": {"k": 0}}, 422, "k: "),
        ("get", "/v1/items/item-1/similar", {"params": {"k": 1001}}, 422, "k: "),
        ("get", "/v1/items/item-1/similar", {"params": {"k": "ten"}}, 422, "k: "),
        ("get", "/v1/items/item-1/similar", {"params": {"prior": "lots"}}, 422, "prior: "),
        ("get", "/v1/items/item-1/similar", {"params": {"prior": "nan"}}, 422, "prior: "),
        ("get", "/v1/items/item-1/similar", {"params": {"prior": "1e9"}}, 422, "prior: "),
        ("post", "/v1/recommend", {"json": {"history": [ONE], "prior": "x"}}, 422, "prior: "),
        ("post", "/v1/recommend", {"json": {"history": [ONE], "prior": True}}, 422, "prior: "),
        ("post", "/v1/recommend", {"data": "{not json"}, 422, "Invalid JSON"),
        ("post", "/v1/recommend", {"json": [1, 2]}, 422, "an object"),
        ("post", "/v1/recommend", {"json": {"history": []}}, 422, "history: "),
        ("post", "/v1/recommend", {"json": {"history": [{"item_id": "x"}]}}, 404, "'x'"),
        ("post", "/v1/recommend", {"json": {"history": [{**ONE, "weight": -1}]}}, 422, "weight"),
        ("post", "/v1/recommend", {"json": {"history": [{**ONE, "event": "zap"}]}}, 422, "event"),
        ("post", "/v1/recommend", {"json": {"history": [ONE], "k": 5000}}, 422, "k: "),
        ("post", "/v1/recommend", {"data": "x" * 70_000}, 413, "Body over"),
        ("post", "/v1/admin/reload", {}, 401, "bearer token"),
        ("post", "/v1/admin/reload", {"headers": {"Authorization": "Bearer wrong"}}, 401, "bearer"),
    ],
)  # fmt: skip
def test_bad_input_gets_the_documented_status(service, method, path, kwargs, status, says):
    url, _ = service
    reply = getattr(requests, method)(f"{url}{path}", timeout=10, **kwargs)
    assert reply.status_code == status and says in reply.json()["detail"]


def test_reload_under_load_fails_no_request(service):
    url, lake = service
    publish(lake, "v2", seed=1)
    failures, versions, stop = [], set(), threading.Event()

    def client() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                reply = session.get(f"{url}/v1/items/item-5/similar", params={"k": 10}, timeout=10)
                if reply.status_code != 200:
                    failures.append(reply.status_code)
                else:
                    versions.add(reply.json()["index_version"])

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        reload = requests.post(
            f"{url}/v1/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
        )
        assert reload.status_code == 200
        assert reload.json() == {"previous_version": "v1", "index_version": "v2", "pinned": False}
        threading.Event().wait(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == [] and versions == {"v1", "v2"}
    assert requests.get(f"{url}/healthz").json()["index_version"] == "v2"
    metrics = requests.get(f"{url}/metrics").text
    assert 'cograph_index_info{version="v2"} 1' in metrics
    assert 'cograph_requests_total{route="similar",status="200"}' in metrics
    assert (
        "cograph_index_batch_rows_count" in metrics and "cograph_index_reloads_total 1" in metrics
    )


def test_errors_keep_the_connection_and_a_chunked_reload_body_is_read(service):
    url, _ = service
    conn = http.client.HTTPConnection(*url.removeprefix("http://").split(":"), timeout=10)
    conn.request("GET", "/v1/items/item-1/similar?k=0")
    assert conn.getresponse().read() and conn.sock is not None
    first = conn.sock
    for method, path, body in [("POST", "/v1/recommend", b"[" * 30000 + b"]" * 30000),
                               ("POST", "/v1/recommend", b'{"history":[{"item_id":[1]}]}'),
                               ("GET", "/nowhere", None), ("DELETE", "/v1/recommend", None),
                               ("GET", "/v1/items/item-1/similar?k=5", None)]:  # fmt: skip
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        reply = conn.getresponse()
        assert reply.status < 500 and json.loads(reply.read())
        assert conn.sock is first, f"the connection was dropped after {method} {path}"
    pieces = iter([b'{"version"', b':"v1"}'])
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    conn.request("POST", "/v1/admin/reload", body=pieces, headers=headers, encode_chunked=True)
    reply = conn.getresponse()
    assert json.loads(reply.read())["index_version"] == "v1", "the chunked body was not read"
    conn.request("POST", "/v1/admin/unpin", headers=headers)
    assert json.loads(conn.getresponse().read())["pinned"] is False


def test_headers_that_trickle_in_get_a_408_and_the_connection_closes(service):
    """Slowloris: one header line every half second never completes a request; the
    deadline on headers answers 408 (JSON) and closes, so the connection is freed."""
    url, _ = service
    host, port = url.removeprefix("http://").split(":")
    # the clock starts before connecting: the server's deadline starts when it accepts,
    # which can be before create_connection returns (measured: 18 µs short of it). The
    # server's loop is uvloop, whose clock is libuv's millisecond time cached at the start
    # of a loop iteration, so the deadline may fire that much early (CI: 11 µs early)
    start = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        answer = b""
        for n in range(40):
            if select.select([sock], [], [], 0.5)[0]:
                answer = sock.recv(4096)
                break
            sock.sendall(b"X-Slow-%d: 1\r\n" % n)
        took = time.monotonic() - start
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["detail"]
        assert HEADER_TIMEOUT - LOOP_CLOCK_SLACK <= took < HEADER_TIMEOUT + 3
        assert select.select([sock], [], [], 5)[0] and sock.recv(4096) == b""  # closed
    # a client that waits a while, then sends its request at once, is served
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        time.sleep(HEADER_TIMEOUT / 2)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")


def test_an_endless_chunked_body_is_refused_early(service):
    """The size limit holds while the body streams in: the 413 comes after about 64 KiB,
    not after the 200 MB the client meant to send."""
    url, _ = service
    host, port = url.removeprefix("http://").split(":")
    chunk = b"x" * 65536
    sent = 0
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        sock.sendall(head)
        answer = b""
        while sent < 200 * 2**20 and not answer:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            except OSError:  # the server closed its side after answering
                break
            if select.select([sock], [], [], 0)[0]:
                answer = sock.recv(4096)
        answer = answer or sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    assert sent < 16 * 2**20, f"{sent / 2**20:.0f} MiB sent before the 413"


def test_service_follows_a_new_latest_version(tmp_path):
    """An incremental update publishes a version; the running service serves it unasked."""
    publish(tmp_path, "v1", seed=0)
    with similar_items_service(tmp_path, {"COGRAPH_RELOAD_POLL_SECONDS": "0.2"}) as url:
        assert requests.get(f"{url}/healthz").json()["index_version"] == "v1"
        publish(tmp_path, "v2", seed=1)
        deadline = time.monotonic() + 20
        while requests.get(f"{url}/healthz").json()["index_version"] != "v2":
            assert time.monotonic() < deadline, "the service did not pick up v2"
            time.sleep(0.2)


def test_several_worker_processes_share_the_port_and_refuse_admin_reloads(tmp_path):
    publish(tmp_path, "v1", seed=0)
    env = {"COGRAPH_ADMIN_TOKEN": TOKEN, "COGRAPH_RELOAD_POLL_SECONDS": "0.2",
           "COGRAPH_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT)}  # fmt: skip
    with similar_items_service(tmp_path, env, ("--workers", "2")) as url:
        port = int(url.rsplit(":", 1)[1])
        listening = {
            p.pid
            for p in psutil.Process().children(recursive=True)
            for c in p.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        }
        assert len(listening) >= 2  # the workers (the parent may hold the socket too)
        replies: list[int] = []

        def client() -> None:
            with requests.Session() as s:
                for i in range(20):
                    replies.append(s.get(f"{url}/v1/items/item-{i}/similar").status_code)

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert replies == [200] * 80
        auth = {"Authorization": f"Bearer {TOKEN}"}
        reload = requests.post(f"{url}/v1/admin/reload", json={}, headers=auth)
        assert reload.status_code == 409 and "one worker" in reload.json()["detail"]
        # each worker follows LATEST by itself
        publish(tmp_path, "v2", seed=1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            versions = {requests.get(f"{url}/healthz").json()["index_version"] for _ in range(8)}
            if versions == {"v2"}:
                break
            time.sleep(0.3)
        assert versions == {"v2"}
