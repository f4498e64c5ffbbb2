"""The service's contract, in process: hostile input never gets a 500, a 10,000-case fuzz,
micro-batching that merges requests, the batch endpoint, filters, score breakdowns,
OpenAPI, and index versions that fail to load."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving import schemas as S
from serving.app import ServiceConfig, create_app
from serving.build import build_bundle
from serving.index import IndexParams
from serving.synthetic import clustered_matrix
from storage.layout import LakeLayout
from storage.versions import LATEST, publish
from tests.serving.asgi import InProcess, Reply

N = 2000
TOKEN = "s3cret"
AUTH = [(b"authorization", f"Bearer {TOKEN}".encode())]
JSON = [(b"content-type", b"application/json")]


def catalog(n: int) -> pa.Table:
    ids = [f"item-{i}" for i in range(n)]
    return pa.table(
        {
            "item_id": ids,
            "title": [f"Title {i}" for i in range(n)],
            "domain": ["music" if i % 2 else "live" for i in range(n)],
        }
    )


def publish_index(root: Path, version: str, seed: int = 0, n: int = N) -> None:
    m, concepts = clustered_matrix(n, seed=seed)
    params = IndexParams(sample_queries=100)
    bundle, _, _ = build_bundle(m, concepts, params, version, catalog(n))
    publish(bundle, root, version)


class Broken:
    """A version folder whose index file is garbage: it exists, but faiss cannot read it."""

    def __init__(self, good: Path) -> None:
        self.good = good

    def save(self, folder: Path) -> None:
        shutil.copytree(self.good, folder)
        for index_file in folder.glob("*.faiss"):
            index_file.write_bytes(b"not an index")


class Service:
    def __init__(self, root: Path, **config) -> None:
        self.loop = asyncio.new_event_loop()
        self.client = InProcess(create_app(ServiceConfig(index_root=root, **config)))
        self.loop.run_until_complete(self.client.start())

    def __call__(self, method: str, path: str, body: object = None, **kwargs) -> Reply:
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
            kwargs.setdefault("headers", JSON)
        return self.loop.run_until_complete(
            self.client.request(method, path, body=body or b"", **kwargs)
        )

    def wait(self, seconds: float) -> None:
        self.loop.run_until_complete(asyncio.sleep(seconds))

    def close(self) -> None:
        self.loop.run_until_complete(self.client.stop())
        self.loop.close()


@pytest.fixture(scope="module")
def index_root(tmp_path_factory) -> Path:
    root = LakeLayout(tmp_path_factory.mktemp("lake")).index
    publish_index(root, "v1")
    return root


@pytest.fixture(scope="module")
def service(index_root):
    s = Service(index_root, admin_token=TOKEN)
    yield s
    s.close()


R, B, SIM = "/v1/recommend", "/v1/items/similar:batch", "/v1/items/item-1/similar"
ONE = b'{"item_id":"item-1"'


def rec(entry: bytes = b"", rest: bytes = b"") -> bytes:
    """A recommend body: one history entry with ``entry`` added, then ``rest``."""
    return b'{"history":[' + ONE + entry + b"}]" + rest + b"}"


def post(path: str, body: bytes, status: int, chunks: int = 1, headers=JSON) -> tuple:
    return ("POST", path, b"", headers, body, chunks, {status})


def get(path: str, query: bytes, status: int) -> tuple:
    return ("GET", path, query, [], b"", 1, {status})


# inputs clients sent in the wild: (method, path, query, headers, body, chunks, statuses)
HOSTILE = [
    post(R, rec(b',"event":["x"]'), 422),
    post(R, rec(rest=b',"k":Infinity'), 422),
    post(R, b"[" * 30000 + b"]" * 30000, 422),
    post(R, rec(b',"weight":' + b"9" * 400), 422),
    post(R, rec(b',"weight":1e39'), 422),
    post(R, rec(rest=b',"k":1.9'), 422),
    post(R, rec(rest=b',"k":true'), 422),
    post(R, rec(rest=b',"k":"10"'), 422),
    post(R, rec(rest=b',"surprise":1'), 422),
    post(R, b'{"history":[{"item_id":1}]}', 422),
    post(R, rec(rest=b',"seeds":0'), 422),
    post(R, rec(rest=b',"strategy":"x"'), 422),
    post(R, json.dumps({"history": [{"item_id": "item-1"}] * 1001}).encode(), 422),
    post(R, b"\xff\xfe\x00", 422),
    post(R, b"null", 422),
    post(R, b"", 422),
    post(R, b" " * 70_000, 413, chunks=40),
    post(R, b"{}", 413, headers=[(b"content-length", b"999999999")]),
    post(R, b'{"history":[{"item_id":"nope"}]}', 404),
    post(R, rec(rest=b',"domain":"x","exclude":[1]'), 422),
    post(B, json.dumps({"item_ids": ["item-1"] * 1001}).encode(), 422),
    post(B, b'{"item_ids":[]}', 422),
    post(B, b'{"item_ids":[null]}', 422),
    post(B, b'{"item_ids":["item-1"],"k":0}', 422),
    get(SIM, b"k=1.9", 422),
    get(SIM, b"k=true", 422),
    get(SIM, b"k=1&k=2", 422),
    get(SIM, b"k=" + b"9" * 400, 422),
    get(SIM, b"prior=nan", 422),
    get(SIM, b"prior=1e400", 422),
    get(SIM, b"explain=maybe", 422),
    get(SIM, b"surprise=1", 422),
    get(SIM, b"exclude=" + b"x," * 1001, 422),
    get(SIM, b"%ff%fe=%00", 422),
    get("/v1/items/" + "x" * 10_000 + "/similar", b"", 404),
    get("/v1/items/%00/similar", b"", 404),
    get("/v1/nothing", b"", 404),
    ("DELETE", R, b"", [], b"", 1, {405}),
    post("/v1/admin/reload", b"", 401, headers=[(b"authorization", b"Bearer \xc3\xbc\xff")]),
    post("/v1/admin/reload", b"", 401, headers=[(b"authorization", b"Basic abc")]),
    post("/v1/admin/reload", b'{"version":"LATEST"}', 404, headers=AUTH),
    post("/v1/admin/reload", b'{"version":"../v1"}', 422, headers=AUTH),
    post("/v1/admin/reload", b'{"version":"nope"}', 404, headers=AUTH),
    post("/v1/admin/reload", b'{"version":["v1"]}', 422, headers=AUTH),
    post("/v1/admin/unpin", b'{"x":1}', 422, headers=AUTH),
]


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_input_gets_a_json_4xx(service, index_root, case):
    method, path, query, headers, body, chunks, statuses = case
    reply = service(method, path, body, query=query, headers=headers, chunks=chunks)
    assert reply.status in statuses, reply.body[:300]
    assert reply.json()["detail"]
    assert str(index_root) not in reply.body.decode()  # no server paths in errors


# A request as a client might mangle it: a valid one with one part replaced by anything.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
VALID = {
    "/v1/recommend": {"history": [{"item_id": "item-1", "weight": 1.0, "event": "like"}], "k": 5,
                      "strategy": "multi_seed", "seeds": 2, "prior": 0.1, "domain": "music",
                      "exclude": ["item-2"]},
    "/v1/items/similar:batch": {"item_ids": ["item-1", "item-9"], "k": 3, "explain": True,
                                "prior": -0.5, "domain": "live", "exclude": ["item-2"]},
    "/v1/admin/reload": {"version": "v1"},
}  # fmt: skip


@st.composite
def mangled_post(draw) -> tuple[str, bytes]:
    path = draw(st.sampled_from(sorted(VALID)))
    body = dict(VALID[path])
    key = draw(st.sampled_from(sorted(body) + ["extra"]))
    body[key] = draw(json_values)
    if key == "history" and draw(st.booleans()):
        body[key] = [{"item_id": "item-1", draw(st.sampled_from(["weight", "event", "item_id"])):
                      draw(json_values)}]  # fmt: skip
    text = json.dumps(body, allow_nan=True)
    return path, text.encode() if draw(st.booleans()) else draw(st.binary(max_size=200))


header_bytes = st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b)
query_bytes = st.lists(
    st.tuples(st.sampled_from([b"k", b"prior", b"explain", b"domain", b"exclude", b"x"]),
              st.binary(max_size=12)), max_size=4,
).map(lambda pairs: b"&".join(k + b"=" + v.replace(b"&", b"") for k, v in pairs))  # fmt: skip


@settings(max_examples=10_000, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(
    post=mangled_post(),
    get_path=st.sampled_from(["/v1/items/item-3/similar", "/v1/items/item-1999/similar",
                              "/healthz", "/", "/v1/items/%ff/similar"]) | st.text(max_size=30),
    query=query_bytes,
    header=st.tuples(st.sampled_from([b"authorization", b"content-length", b"content-type",
                                      b"x-any"]), header_bytes),
    method=st.sampled_from(["GET", "POST", "POST", "PUT"]),
)  # fmt: skip
def test_fuzzed_requests_never_get_a_500(service, post, get_path, query, header, method):
    headers = [header, *AUTH] if header[0] != b"authorization" else [header]
    if method == "GET":
        path = "/" + get_path.lstrip("/")
        reply = service("GET", path, query=query, headers=headers)
    else:
        path, body = post
        reply = service(method, path, body, headers=headers, chunks=1 + len(body) % 3)
    assert reply.status < 500, (method, path, reply.body[:300])
    if path not in ("/metrics", "/docs"):
        assert isinstance(reply.json(), dict)


def test_micro_batching_merges_concurrent_requests(service):
    def rows_count() -> float:
        metrics = service("GET", "/metrics").body.decode()
        return float(next(line.split()[-1] for line in metrics.splitlines()
                          if line.startswith("cograph_index_batch_rows_count")))  # fmt: skip

    before = rows_count()
    requests = [
        service.client.request("GET", f"/v1/items/item-{i}/similar", query=b"k=5")
        for i in range(64)
    ]

    async def together() -> list[Reply]:
        return await asyncio.gather(*requests)

    replies = service.loop.run_until_complete(together())
    assert all(r.status == 200 for r in replies)
    calls = rows_count() - before
    assert calls < 64 / 4, f"{calls:.0f} index calls for 64 requests"


def test_the_batch_endpoint_answers_as_single_requests_do(service):
    ids = ["item-3", "unknown", "item-1999", "item-40"]
    batch = service("POST", "/v1/items/similar:batch", {"item_ids": ids, "k": 7})
    assert batch.status == 200
    items = batch.json()["items"]
    assert [i["item_id"] for i in items] == ids
    assert items[1] == {"item_id": "unknown", "error": "unknown item_id"}
    for item in (items[0], items[2], items[3]):
        single = service("GET", f"/v1/items/{item['item_id']}/similar", query=b"k=7").json()
        assert item["results"] == single["results"]
        S.SimilarResponse.model_validate(single)  # answers match what OpenAPI says
    S.SimilarBatchResponse.model_validate(batch.json())
    history = {"history": [{"item_id": "item-5", "event": "like"}], "strategy": "multi_seed"}
    S.RecommendResponse.model_validate(service("POST", "/v1/recommend", history).json())


def test_results_carry_title_domain_and_the_score_in_parts(service):
    body = service("GET", "/v1/items/item-3/similar", query=b"k=10&domain=music&exclude=item-303")
    results = body.json()["results"]
    assert len(results) == 10 and all(r["domain"] == "music" for r in results)
    assert "item-303" not in {r["item_id"] for r in results}
    for r in results:
        assert r["title"] == f"Title {r['item_id'].removeprefix('item-')}"
        assert r["score"] == pytest.approx(r["similarity"] + r["prior"], abs=1e-5)
    # prior 0: the score is the similarity alone
    plain = service("GET", "/v1/items/item-3/similar", query=b"prior=0").json()["results"]
    assert all(r["prior"] == 0 and r["score"] == r["similarity"] for r in plain)


def test_openapi_describes_every_route_and_the_docs_page_renders_it(service):
    doc = service("GET", "/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in ("/v1/items/{item_id}/similar", "/v1/items/similar:batch", "/v1/recommend",
                 "/healthz", "/readyz", "/v1/admin/reload", "/v1/admin/unpin"):  # fmt: skip
        assert path in doc["paths"]
    schemas = doc["components"]["schemas"]
    assert schemas["RecommendRequest"]["additionalProperties"] is False
    assert schemas["HistoryEntry"]["properties"]["event"]["enum"][0] == "view"
    page = service("GET", "/docs")
    assert page.status == 200 and b"/openapi.json" in page.body


def wait_for(service: Service, version: str, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if service("GET", "/healthz").json()["index_version"] == version:
            return
        service.wait(0.05)
    raise AssertionError(f"still serving {service('GET', '/healthz').json()}, not {version}")


def test_a_broken_version_is_skipped_and_the_next_good_one_followed(tmp_path):
    root = LakeLayout(tmp_path).index
    publish_index(root, "v1", n=300)
    service = Service(root, poll_seconds=0.05)
    try:
        publish(Broken(root / "v1"), root, "v2")
        service.wait(0.5)
        health = service("GET", "/healthz").json()
        assert health["index_version"] == "v1"
        metrics = service("GET", "/metrics").body.decode()
        assert "cograph_index_reload_failures_total 1" in metrics  # tried once, not every poll
        publish_index(root, "v3", seed=1, n=300)
        wait_for(service, "v3")
    finally:
        service.close()


def test_start_up_falls_back_to_the_newest_version_that_loads(tmp_path):
    root = LakeLayout(tmp_path).index
    publish_index(root, "v1", n=300)
    publish(Broken(root / "v1"), root, "v2")
    service = Service(root)
    try:
        assert service("GET", "/healthz").json()["index_version"] == "v1"
    finally:
        service.close()


def test_a_pinned_version_holds_until_the_next_publish(tmp_path):
    root = LakeLayout(tmp_path).index
    publish_index(root, "v1", n=300)
    publish_index(root, "v2", seed=1, n=300)
    service = Service(root, poll_seconds=0.05, admin_token=TOKEN)
    try:
        wait_for(service, "v2")
        pinned = service("POST", "/v1/admin/reload", {"version": "v1"}, headers=AUTH + JSON)
        assert pinned.json() == {"previous_version": "v2", "index_version": "v1", "pinned": True}
        service.wait(0.5)
        assert service("GET", "/healthz").json() == {
            "status": "ok", "index_version": "v1", "entities": 300, "pinned": True,
            "neural_device": None}  # no relevance model here  # fmt: skip
        publish_index(root, "v3", seed=2, n=300)
        wait_for(service, "v3")
        assert service("GET", "/healthz").json()["pinned"] is False
        # an unpin follows LATEST again at once
        service("POST", "/v1/admin/reload", {"version": "v1"}, headers=AUTH + JSON)
        assert service("POST", "/v1/admin/unpin", headers=AUTH).json()["pinned"] is False
        wait_for(service, "v3")
    finally:
        service.close()


def test_a_copied_version_folder_is_loaded_once(tmp_path):
    root = LakeLayout(tmp_path).index
    publish_index(root, "v1", n=300)
    service = Service(root, poll_seconds=0.05)
    try:
        shutil.copytree(root / "v1", root / "copy")
        (root / LATEST).write_text("copy")
        service.wait(1.0)
        metrics = service("GET", "/metrics").body.decode()
        assert "cograph_index_reloads_total 1" in metrics
    finally:
        service.close()


def test_scores_are_exact_inner_products_plus_the_prior(service):
    m, _ = clustered_matrix(N, seed=0)
    vectors = np.asarray(m.vectors)
    results = service("GET", "/v1/items/item-3/similar", query=b"k=5&prior=0").json()["results"]
    for r in results:
        other = int(r["item_id"].removeprefix("item-"))
        assert r["similarity"] == pytest.approx(float(vectors[3] @ vectors[other]), rel=1e-4)


def test_start_up_says_where_it_listens_and_what_it_serves(index_root, caplog):
    with caplog.at_level(logging.INFO, logger="cograph.serving"):
        Service(index_root, url="http://127.0.0.1:9").close()
    assert "cograph similar items on http://127.0.0.1:9: index version v1, 2,000 entities, " \
        "recall@10 " in caplog.text  # fmt: skip


def test_an_unknown_domain_is_named_in_a_422(service):
    for method, path, query, body in (
        ("GET", "/v1/items/item-3/similar", b"domain=podcasts", None),
        ("POST", "/v1/recommend", b"", {"history": [{"item_id": "item-3"}], "domain": "podcasts"}),
    ):
        reply = service(method, path, body, query=query)
        assert reply.status == 422 and "'podcasts'" in reply.json()["detail"], reply.body


def test_a_history_in_one_domain_gets_items_of_another(service):
    history = [{"item_id": f"item-{i}"} for i in (1, 3, 5)]  # odd ids: music
    body = service("POST", "/v1/recommend", {"history": history, "k": 10, "domain": "live"})
    results = body.json()["results"]
    assert len(results) == 10 and all(r["domain"] == "live" for r in results)
