"""``/v1/recommend`` with ``strategy: "neural"``: the learned relevance searched over the
served index's HNSW graph, concurrent requests searched side by side; a 409 with a JSON
body while no model (or none for the served embeddings) is published."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pandas as pd
import pytest
import torch

from serving import neural_metric
from serving.artifact import load_bundle
from serving.neural_metric import NeuralMetric, load_metric, scoring_device
from serving.neural_metric_torch import TorchMetric
from serving.neural_search import NeuralSearcher, SearchSettings, search_quality
from storage.layout import RELEVANCE_MODEL, LakeLayout
from storage.versions import latest
from tests.serving.test_api import JSON, N, Service, publish_index
from training.muirml import MUIRML
from training.muirml_fit import MuirmlParams
from training.muirml_run import run_relevance

HISTORY = {"history": [{"item_id": "item-3"}, {"item_id": "item-23", "event": "like"}], "k": 10}


def interactions(n_items: int = N, users: int = 300, seed: int = 0) -> pd.DataFrame:
    """Users of one cluster each (clusters are ``item % 20``), engaging its items; purchases
    on the items of a second cluster they like."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(users):
        home, second = rng.integers(20, size=2)
        for t, item in enumerate(rng.integers(n_items // 20, size=12) * 20 + home):
            rows.append((f"u{user}", f"item-{item}", "view", 1.0, t))
        for t, item in enumerate(rng.integers(n_items // 20, size=4) * 20 + second):
            rows.append((f"u{user}", f"item-{item}", "purchase", 5.0, 20 + t))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "event", "weight", "ts"])


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> LakeLayout:
    layout = LakeLayout(tmp_path_factory.mktemp("lake"))
    publish_index(layout.index, "v1")
    bundle = load_bundle(latest(layout.index))
    item_ids = np.array([f"item-{i}" for i in range(N)])
    run = run_relevance(
        interactions(),
        item_ids,
        np.asarray(bundle.vectors),
        bundle.meta["model_version"],
        MuirmlParams(epochs=3, distance="inner"),
        log=lambda _: None,
    )
    run.save(layout.relevance_models / "run-1")
    if not run.publishes:  # the service tests need a model either way
        np.savez(layout.relevance_models / "run-1" / RELEVANCE_MODEL, **run.arrays())
    return layout


def test_numpy_metric_equals_the_trained_model(lake):
    metric = load_metric(lake.relevance_models / "run-1")
    rng = np.random.default_rng(0)
    users, items = rng.standard_normal((2, 50, metric.dim)).astype(np.float32)
    arrays = metric.arrays
    model = MUIRML(metric.dim, len(metric.behaviours), arrays["w0"].shape[0])
    layers = [m for m in model.mlp if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for n, layer in enumerate(layers):
            layer.weight.copy_(torch.from_numpy(arrays[f"w{n}"]))
            layer.bias.copy_(torch.from_numpy(arrays[f"b{n}"]))
        expected = torch.sigmoid(model(torch.from_numpy(users), torch.from_numpy(items)))
    expected = expected.numpy() @ arrays["scenario"]
    got = metric.pair_scores(users, metric.user_terms(users), items)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_torch_scoring_equals_numpy_and_finds_the_same_items(lake):
    """The path a CUDA card takes (torch), run here on the CPU: the same relevances, and a
    search over the served graph returns the same items."""
    metric = load_metric(lake.relevance_models / "run-1")
    on_torch = TorchMetric(metric.arrays, metric.version, "cpu")
    rng = np.random.default_rng(1)
    users, items = rng.standard_normal((2, 300, metric.dim)).astype(np.float32)
    terms = metric.user_terms(users)
    np.testing.assert_allclose(
        on_torch.pair_scores(users, terms, items),
        metric.pair_scores(users, terms, items),
        rtol=1e-5,
        atol=1e-6,
    )
    bundle = load_bundle(latest(lake.index))
    queries = np.asarray(bundle.vectors[:20]) + 0.1
    found = [
        NeuralSearcher(bundle.index, bundle.vectors, m, SearchSettings(ef=64)).search(queries, 10)
        for m in (metric, on_torch)
    ]
    np.testing.assert_array_equal(found[0][1], found[1][1])
    np.testing.assert_allclose(found[0][0], found[1][0], rtol=1e-5, atol=1e-6)
    assert metric.on("cpu") is metric and on_torch.on("cpu").device == "cpu"


def test_scoring_device_is_the_cpu_without_a_card(monkeypatch, tmp_path):
    assert scoring_device("cpu") == "cpu"
    assert scoring_device("auto") == "cpu"  # this machine: no NVIDIA driver
    # a driver but no card torch can use (as here, with one faked): still the CPU for
    # auto; asked for by name, a clear error instead of a service that fails per request
    driver = tmp_path / "version"
    driver.write_text("NVRM version: fake")
    monkeypatch.setattr(neural_metric, "NVIDIA_DRIVER", driver)
    if not torch.cuda.is_available():
        assert scoring_device("auto") == "cpu"
        with pytest.raises(ValueError, match="CUDA is not available"):
            scoring_device("cuda:0")
    else:
        assert scoring_device("auto") == "cuda" and scoring_device("cuda:0") == "cuda:0"


def test_graph_search_matches_brute_force_and_scores_a_fraction(lake):
    bundle = load_bundle(latest(lake.index))
    metric = load_metric(lake.relevance_models / "run-1")
    searcher = NeuralSearcher(bundle.index, bundle.vectors, metric, SearchSettings(ef=64))
    users = np.asarray(bundle.vectors[:40]) + 0.1
    quality = search_quality(searcher, users)
    assert quality["recall_at_10"] >= 0.9
    assert quality["scored_per_query"] < 0.5 * quality["graph_rows"]


def test_neural_strategy_answers_by_relevance(lake):
    service = Service(lake.index, metric_root=lake.relevance_models)
    try:
        body = service("POST", "/v1/recommend", {**HISTORY, "strategy": "neural"}).json()
        results = body["results"]
        assert body["strategy"] == "neural" and len(results) == 10
        assert service("GET", "/healthz").json()["neural_device"] == scoring_device("auto")
        relevance = [r["relevance"] for r in results]
        assert relevance == sorted(relevance, reverse=True)
        assert not {r["item_id"] for r in results} & {"item-3", "item-23"}
        # brute force under the same metric, the history left out: the graph finds its top
        bundle = load_bundle(latest(lake.index))
        metric: NeuralMetric = load_metric(lake.relevance_models / "run-1")
        history = np.asarray(bundle.vectors[[3, 23]])
        weights = np.array([1.0, 2.0], dtype=np.float32)  # view 1, like 2
        user = (history * weights[:, None]).sum(0) / weights.sum()
        scores = metric.scores(user, np.asarray(bundle.vectors))
        scores[[3, 23]] = -np.inf
        exact = {f"item-{i}" for i in np.argsort(-scores, kind="stable")[:10]}
        assert len(exact & {r["item_id"] for r in results}) >= 9
    finally:
        service.close()


def test_concurrent_neural_requests_are_batched_and_keep_their_answers(lake):
    service = Service(lake.index, metric_root=lake.relevance_models)
    bodies = [
        {"history": [{"item_id": f"item-{i}"}, {"item_id": f"item-{i + 7}"}], "k": 5,
         "strategy": "neural"}
        for i in range(0, 160, 10)
    ]  # fmt: skip
    try:
        alone = [service("POST", "/v1/recommend", b).json()["results"] for b in bodies]

        async def together() -> list:
            return await asyncio.gather(
                *[
                    service.client.request(
                        "POST", "/v1/recommend", body=json.dumps(b).encode(), headers=JSON
                    )
                    for b in bodies
                ]
            )  # fmt: skip

        replies = service.loop.run_until_complete(together())
        # the same items; relevances equal up to the float rounding of batched products
        for a, b in zip(alone, [r.json()["results"] for r in replies], strict=True):
            assert {x["item_id"] for x in a} == {x["item_id"] for x in b}
            relevance = sorted(x["relevance"] for x in a), sorted(x["relevance"] for x in b)
            np.testing.assert_allclose(*relevance, atol=2e-6)
        metrics = service("GET", "/metrics").body.decode()
        [calls] = [
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("cograph_index_batch_rows_count")
        ]
        assert calls < 2 * len(bodies)  # some concurrent requests shared one search
    finally:
        service.close()


def test_without_a_model_for_the_served_embeddings_neural_is_a_409(lake, tmp_path):
    service = Service(lake.index, metric_root=tmp_path / "none")
    try:
        reply = service("POST", "/v1/recommend", {**HISTORY, "strategy": "neural"})
        assert reply.status == 409 and "relevance_model" in reply.json()["detail"]
        assert service("POST", "/v1/recommend", HISTORY).status == 200
    finally:
        service.close()
    # a model trained on other embeddings does not fit the served ones
    stale = tmp_path / "stale" / "old"
    stale.mkdir(parents=True)
    with np.load(lake.relevance_models / "run-1" / RELEVANCE_MODEL) as data:
        arrays = {name: data[name] for name in data.files}
    np.savez(stale / RELEVANCE_MODEL, **{**arrays, "embedding_version": np.array("older")})
    service = Service(lake.index, metric_root=stale.parent)
    try:
        reply = service("POST", "/v1/recommend", {**HISTORY, "strategy": "neural"})
        assert reply.status == 409 and "neural_refresh" in reply.json()["detail"]
    finally:
        service.close()
