"""The evaluation split, chunked full-graph inference, the protocol and the quality gate."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pytest
import torch

from training.checkpoint import Checkpoint, ModelSet
from training.device import pick_device
from training.evaluation import (
    SEMANTIC,
    STRICT,
    TRANSDUCTIVE,
    WARMUP,
    EvaluationReport,
    evaluate_models,
    gate_bars,
    gate_failures,
    rare_concept_links,
    settings,
    topic_oracle,
)
from training.hasp import HaspParams, build_hasp
from training.inference import embed, embed_graph, whole_graph
from training.kg_arrays import EEL
from training.model import ModelConfig, build_model
from training.shard_graph import shard_graph
from training.spectral import spectral_embedding
from training.split import EvaluationSplit, SplitParams, make_split, training_view, warmup_view
from training.synthetic_kg import community_kg
from training.trainer import Prepared, TrainParams, train
from training.transe import TransEParams, train_transe

# CUDA where present, so a GPU machine runs these same checks on it; CPU in CI
DEVICE = pick_device()


@pytest.fixture(scope="module")
def kg():
    return community_kg(n_entities=600, communities=12, degree=12, seed=3)


@pytest.fixture(scope="module")
def split(kg):
    return make_split(kg, SplitParams(test_share=0.1, inductive_share=0.2, seed=0))


def undirected(eel: np.ndarray, n: int) -> set[int]:
    return set((np.minimum(eel[0], eel[1]) * n + np.maximum(eel[0], eel[1])).tolist())


def test_split_keeps_test_and_inductive_links_out_of_training(kg, split):
    n = kg.num_entities
    train = training_view(kg, split)
    assert not np.isin(train.eel, split.inductive).any()
    assert not undirected(split.test_pairs, n) & undirected(train.eel, n)
    linked = np.unique(kg.eel)
    assert len(split.inductive) == int(0.2 * len(linked))
    # warm-up: at most 3 real EELs per inductive entity, and they come back in the warm view
    counts = np.bincount(split.warmup_pairs[0], minlength=n)
    assert counts.max() <= 3 and set(np.unique(split.warmup_pairs[0])) == set(split.inductive)
    assert undirected(split.warmup_pairs, n) <= undirected(kg.eel, n)
    warm = warmup_view(kg, split)
    assert warm.eel.shape[1] == train.eel.shape[1] + 2 * len(undirected(split.warmup_pairs, n))
    again = EvaluationSplit.from_arrow(split.to_arrow())
    for field in ("test_pairs", "inductive", "warmup_pairs"):
        assert np.array_equal(getattr(again, field), getattr(split, field))
    same = make_split(kg, SplitParams(test_share=0.1, inductive_share=0.2, seed=0))
    assert np.array_equal(same.test_pairs, split.test_pairs)


def test_the_topic_oracle_ranks_the_querys_topic_first_then_by_popularity(kg, split):
    genre = kg.concept_edges[("genre", "genre")]  # the community: the graph's hidden topic
    topic = torch.full((kg.num_entities,), -1)
    topic[genre[0]] = torch.from_numpy(genre[1])
    log_popularity = torch.rand(kg.num_entities, generator=torch.Generator().manual_seed(0))
    task = settings(kg, split)[STRICT].task
    ranked = task.rank(topic_oracle(topic, log_popularity), 10)
    for q, row in zip(task.queries.tolist(), ranked, strict=True):
        same = row[topic[row] == topic[q]]
        assert torch.equal(same, row[: len(same)])  # the query's topic first
        assert (log_popularity[same].diff() <= 0).all()  # then the more popular first
    popular_only = task.rank(lambda q: log_popularity.expand(len(q), -1), 10)
    oracle_map = task.metrics(ranked, (10,))["map@10"].nanmean()
    assert oracle_map > 2 * task.metrics(popular_only, (10,))["map@10"].nanmean()


def test_settings_and_rare_concepts(kg, split):
    cases = settings(kg, split)
    transductive = cases[TRANSDUCTIVE]
    groups = transductive.groups
    assert sum(int(m.sum()) for m in groups.values()) == len(transductive.task.queries)
    assert set(cases[STRICT].task.queries.tolist()) == set(split.inductive.tolist())
    for q, rel, skip in zip(
        *(getattr(cases[WARMUP].task, f) for f in vars(cases[WARMUP].task)), strict=True
    ):
        plugged = split.warmup_pairs[1][split.warmup_pairs[0] == int(q)]
        assert not np.isin(rel.numpy(), plugged).any() and np.isin(plugged, skip.numpy()).all()
    assert len(cases[SEMANTIC].task.queries) > 0
    # a hand example: concept 0 has entities 0, 1 (rare); concept 1 has 0..5 (not rare)
    tiny = dataclasses.replace(
        kg,
        num_nodes={"entity": 6, "tag": 2},
        concept_edges={
            ("tag", "tag"): np.array([[0, 1, 0, 1, 2, 3, 4, 5], [0, 0, 1, 1, 1, 1, 1, 1]])
        },
    )
    assert sorted(map(tuple, rare_concept_links(tiny, rare_max=5).t().tolist())) == [(0, 1), (1, 0)]


@pytest.fixture(scope="module")
def trained(kg, split):
    """SemanticGNN trained on the training view, as the assets do."""
    train_kg = training_view(kg, split)
    transe = train_transe(train_kg, TransEParams(dim=16, epochs=100, batch_size=256), DEVICE)
    relations = [EEL, *transe.relations]
    shards = build_hasp(train_kg, HaspParams(memory_budget_bytes=10**9, device_count=2)).shards
    graphs = [
        shard_graph(s, transe.concept_embeddings, relations, 0.1, seed=k)
        for k, s in enumerate(shards)
    ]
    config = ModelConfig(kg.num_entities, 16, tuple(relations), dim=32)
    params = TrainParams(epochs=30, lr=0.02, patience_steps=30 * 8)
    vectors = spectral_embedding(torch.from_numpy(train_kg.eel), kg.num_entities, 32, 0)
    result = train(graphs, config, params, DEVICE, prepared=Prepared(id_vectors=vectors))
    return Checkpoint(config, params, result, transe.concept_embeddings, pa.table({"k": [0]}))


@pytest.mark.parametrize("kind", ["semantic", "sage", "gat"])
def test_chunked_inference_equals_one_forward_pass(kg, trained, kind):
    config = dataclasses.replace(trained.config, kind=kind)
    torch.manual_seed(0)
    model = build_model(config).eval()
    graph = whole_graph(kg, trained.concept_features, list(config.relations))
    known = torch.rand(kg.num_entities) < 0.7
    with torch.no_grad():
        full = model(graph, keep_id=known, keep_popularity=known)
    # room for about a fifth of the edges at once (the node states come on top)
    edge_mb = graph.edge_index.shape[1] * model.edge_bytes() / 5 / 2**20
    out = embed(model, graph, known, memory_budget_mb=edge_mb)
    assert out.chunks > 3
    torch.testing.assert_close(out.vectors, full, rtol=1e-5, atol=1e-5)
    # below the node states' own size (which once refused to run): one edge per chunk
    node_mb = 4 * (kg.num_entities + len(graph.concept_features)) * config.dim * 4 / 2**20
    tiny = embed(model, graph, known, memory_budget_mb=model.edge_bytes() / 2**20)
    assert model.edge_bytes() / 2**20 < node_mb and tiny.chunks >= kg.num_entities // 2
    torch.testing.assert_close(tiny.vectors, full, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="memory_budget_mb must be > 0"):
        embed(model, graph, known, memory_budget_mb=0)


def test_unseen_entity_neighbours_share_its_concepts(kg, split, trained):
    """Inductive entities never had a trained id or an EEL in training; embedded from their
    concept edges alone, their nearest neighbours share their genre far above chance."""
    out = embed_graph(trained, training_view(kg, split), 64, DEVICE)
    assert out.inductive[split.inductive].all() and not out.inductive.all()
    h = out.vectors
    queries = torch.from_numpy(split.inductive)
    scores = h[queries] @ h.t()
    scores[torch.arange(len(queries)), queries] = -torch.inf
    top = scores.topk(10, dim=1).indices
    genre = torch.from_numpy(kg.concept_edges[("genre", "genre")][1])
    share = (genre[top] == genre[queries].unsqueeze(1)).float().mean().item()
    assert share > 0.6  # 12 genres: chance is about 0.08


def test_entities_added_after_training_embed_as_new(kg, split, trained):
    bigger = dataclasses.replace(
        kg,
        num_nodes={**kg.num_nodes, "entity": kg.num_entities + 1},
        concept_edges={
            key: np.concatenate([edges, [[kg.num_entities], [edges[1, 0]]]], axis=1)
            for key, edges in kg.concept_edges.items()
        },
    )
    out = embed_graph(trained, training_view(bigger, split), 64, DEVICE)
    assert out.vectors.shape[0] == kg.num_entities + 1 and out.inductive[-1]
    assert torch.isfinite(out.vectors[-1]).all() and out.vectors[-1].norm() > 0


def test_protocol_and_gate_block_a_broken_model(kg, split, trained):
    broken_config = trained.config
    torch.manual_seed(123)
    broken = dataclasses.replace(
        trained,
        result=dataclasses.replace(
            trained.result, state_dict=build_model(broken_config).state_dict()
        ),
    )
    validation = [
        {"name": "popularity+concepts", "map_at_k": 0.0, "weights": [0.1]},
        {"name": "blend", "map_at_k": 0.0, "weights": [1.0, 0.3, 0.03]},
    ]
    results = evaluate_models(
        ModelSet({"semantic": trained, "broken": broken}, "semantic", validation=validation),
        kg,
        split,
        memory_budget_mb=64,
        device=DEVICE,
    )
    assert set(results) == {
        "semantic", "broken", "popularity", "itemcf", "concepts", "popularity+concepts", "blend"
    }  # fmt: skip
    good = results["semantic"]
    for setting in (TRANSDUCTIVE, STRICT, WARMUP, SEMANTIC, f"{TRANSDUCTIVE}/group2"):
        assert 0 <= good[setting]["map@10"] <= 1 and good[setting]["queries"] > 0
        assert good[setting]["recall@10"] <= good[setting]["recall@100"]
    exposure = {name: r["cold_query_exposure"] for name, r in results.items()}
    assert exposure["popularity"]["bestseller_share"] >= 0.9  # its list is the best-sellers
    assert exposure["concepts"]["concept_overlap_share"] > 0.9  # its list shares concepts
    for shares in exposure.values():
        assert all(0.0 <= v <= 1.0 for v in shares.values())
    # the trained model finds new items' neighbours; a random one does not
    assert good[STRICT]["map@10"] > 2 * results["broken"][STRICT]["map@10"]
    value, bad = good[TRANSDUCTIVE]["map@10"], results["broken"][TRANSDUCTIVE]["map@10"]
    assert gate_failures(bad, {"accepted": value}, margin=0.1) == {"accepted": value}
    assert gate_failures(value, {"accepted": value}, margin=0.1) == {}


def test_the_gate_names_the_baseline_that_blocked_it():
    def row(value):
        return {TRANSDUCTIVE: {"map@10": value}}

    results = {"semantic": row(0.15), "itemcf": row(0.14), "rp3": row(0.2), "sage": row(0.3)}
    report = EvaluationReport(results, "semantic", "v1")
    bars = gate_bars(report, {"model_version": "v0", "map_at_10": 0.1})
    # the learned sage ablation is no bar; the best no-learning one and the accepted are
    assert bars == {"best no-learning baseline (rp3)": 0.2, "accepted v0": 0.1}
    assert gate_failures(0.15, bars, margin=0.1) == {"best no-learning baseline (rp3)": 0.2}
    assert gate_failures(0.19, bars, margin=0.1) == {}


def test_sampled_queries_hold_the_full_rankings_mean_on_movielens(movielens_graph):
    """Each setting ranks a seeded sample of its queries; on MovieLens (about 1,400 test
    queries here, below the default sample of 2,000) a sample of 200 holds the full
    ranking's MAP@10 inside its 95% bootstrap interval."""
    from training.baselines import itemcf, signals
    from training.kg_arrays import kg_arrays
    from training.ranking import bootstrap_interval

    kg = kg_arrays(movielens_graph["nodes"].toArrow(), movielens_graph["edges"].toArrow())
    split = make_split(kg, SplitParams(test_share=0.1, inductive_share=0.1, seed=0))
    scores = itemcf(signals(training_view(kg, split), torch.empty(2, 0, dtype=torch.long)))
    full, sampled = settings(kg, split, max_queries=None), settings(kg, split, max_queries=200)
    for name in (TRANSDUCTIVE, STRICT):
        assert len(full[name].task.queries) > len(sampled[name].task.queries) == 200
        exact = float(full[name].task.per_query(scores, (10,))["map@10"].nanmean())
        ap = sampled[name].task.per_query(scores, (10,))["map@10"]
        lo, hi = bootstrap_interval(ap)
        assert lo <= exact <= hi, (name, exact, lo, hi)
