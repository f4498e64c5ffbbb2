"""The served model's parts against their definitions: walk factors, the distillation
teacher, the degree gate, the cold view's predicted factors and graph-wide negatives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.training.test_baselines import PAIRS, four_entities
from training import concept_neighbours
from training.concept_neighbours import ConceptNeighbours, concept_matrix, top_neighbours
from training.hasp import HaspParams, build_hasp
from training.kg_arrays import EEL, ENTITY, KGArrays
from training.model import ModelConfig, build_model
from training.shard_graph import shard_graph
from training.spectral import WALK_NORM, walk_factors
from training.synthetic_kg import community_kg
from training.teacher import batches, taught_entities, walk_teacher
from training.trainer import GraphWide, TrainParams, global_negative_logits, shard_loss


def test_teacher_is_the_walks_top_k_distribution():
    s, w = four_entities()
    p = w / w.sum(axis=1, keepdims=True)
    walk = p @ p
    np.fill_diagonal(walk, 0.0)
    teacher = walk_teacher(s, k=2)
    for i in range(4):
        top = np.argsort(-walk[i], kind="stable")[:2]
        assert teacher.ids[i].tolist() == top.tolist()
        np.testing.assert_allclose(teacher.probs[i].numpy(), walk[i, top] / walk[i, top].sum())


def test_a_sampled_teacher_keeps_the_full_teachers_rows_in_any_batches():
    s, _ = four_entities()
    full = walk_teacher(s, k=2)
    part = walk_teacher(s, k=2, max_rows=2, batch_cells=1, seed=3)  # one row per batch
    taught = part.probs.sum(1) > 0
    assert taught.sum() == 2 and (part.ids[~taught] == -1).all()
    assert torch.equal(part.ids[taught], full.ids[taught])
    assert torch.equal(part.probs[taught], full.probs[taught])
    assert torch.equal(taught_entities(s.log_degree, 2, seed=3), taught.nonzero().squeeze(1))


def test_batches_are_cut_at_the_budget_or_the_row_cap():
    cut = [(b.start, b.stop) for b in batches([3, 3, 7, 1, 1, 1], budget=6, max_rows=2)]
    # 3 + 3 fill the budget; 7 is over it alone; 1 + 1 stop at the row cap
    assert cut == [(0, 2), (2, 3), (3, 5), (5, 6)]


def test_full_rank_walk_factors_are_the_two_step_walk():
    s, w = four_entities()
    pairs = torch.tensor([[a for a, _, _ in PAIRS], [b for _, b, _ in PAIRS]])
    weights = torch.tensor([x for *_, x in PAIRS])
    e = walk_factors(pairs, weights, 4, rank=4, seed=0)
    gram = (e @ e.t()).numpy()
    expected = w @ np.diag(1 / w.sum(axis=1)) @ w  # W D⁻¹ W: the walk, rows unscaled
    scale = gram.trace() / expected.trace()
    np.testing.assert_allclose(gram, scale * expected, atol=1e-4)
    assert e.pow(2).sum(1).mean() == pytest.approx(WALK_NORM**2, rel=1e-4)


@pytest.fixture(scope="module")
def shards():
    kg = community_kg(n_entities=300, communities=6)
    features = {t: torch.randn(n, 8) for t, n in kg.num_nodes.items() if t != "entity"}
    relations = [EEL, *sorted({r for r, _ in kg.concept_edges})]
    parts = build_hasp(kg, HaspParams(memory_budget_bytes=10**9, device_count=3)).shards
    graphs = [shard_graph(p, features, relations, 0.1, seed=k) for k, p in enumerate(parts)]
    config = ModelConfig(kg.num_entities, 8, tuple(relations), dim=16, walk_rank=8)
    return graphs, config


def test_degree_gate_is_monotone(shards):
    _, config = shards
    model = build_model(config)
    degree = torch.arange(0, 200).float()
    assert torch.equal(model.gate(torch.log1p(degree)), torch.ones(200))  # κ = 0: no gate
    model.gate_kappa.fill_(3.0)
    g = model.gate(torch.log1p(degree))
    assert g[0] == 0 and (g.diff() >= 0).all() and g[-1] > 0.98
    assert g[3] == pytest.approx(0.5, abs=1e-5)  # half way at d = κ


def test_entities_without_walk_factors_get_predicted_ones(shards):
    graphs, config = shards
    model = build_model(config)
    graph = graphs[0]
    n_e = graph.num_entities
    walk = torch.randn(config.num_entities, config.walk_rank)
    walk[graph.entity_global[:5]] = 0.0  # five entities never engaged in training
    model.walk.copy_(walk)
    known = torch.ones(n_e, dtype=torch.bool)
    known[5:10] = False  # five masked as new
    with torch.no_grad():
        h = torch.randn(n_e, config.dim)
        z = model.readout(graph, h, known)
    own = walk[graph.entity_global]
    assert torch.allclose(z[10:, : config.walk_rank], own[10:])
    assert torch.allclose(z[:10, : config.walk_rank], model.to_walk(h[:10]))
    assert torch.equal(z[:, config.walk_rank :], h)


def test_graph_wide_negatives_reach_entities_outside_the_shard(shards):
    graphs, config = shards
    model = build_model(config)
    graph = graphs[0]
    n = config.num_entities
    inside = torch.zeros(n, dtype=torch.bool)
    inside[graph.entity_global] = True
    wide = GraphWide(torch.zeros(n, config.out_dim), torch.zeros(n))
    gen = torch.Generator().manual_seed(0)
    drawn = wide.sample(1000, gen)
    assert (~inside[drawn]).sum() > 500  # two thirds of the graph is in other shards
    # their banked vectors are what the negatives score against
    z = torch.randn(graph.num_entities, config.out_dim)
    pos = graph.train_pairs[:, :50]
    wide.bank[~inside] = 1.0
    outside = global_negative_logits(model, z, pos, wide, 4, torch.Generator().manual_seed(1))
    wide.bank[~inside] = 0.0
    zeroed = global_negative_logits(model, z, pos, wide, 4, torch.Generator().manual_seed(1))
    assert not torch.allclose(outside, zeroed)
    # a training step refreshes the shard's rows of the bank and nothing else
    params = TrainParams(global_negatives=4, distill_weight=0.0)
    loss = shard_loss(model, graph, params, wide, epoch=0, k=0)
    assert torch.isfinite(loss)
    assert wide.bank[graph.entity_global].abs().sum() > 0 and wide.bank[~inside].abs().sum() == 0
    # more mini-batches than the shard has EELs: the last has no target, and no NaN
    many = TrainParams(global_negatives=4, batches_per_shard=graph.train_pairs.shape[1] + 1)
    empty = shard_loss(model, graph, many, wide, epoch=0, k=0, b=many.batches_per_shard - 1)
    assert empty.item() == 0.0 and empty.requires_grad


def test_queries_without_eels_score_with_the_new_item_prior(shards):
    _, config = shards
    model = build_model(config)
    with torch.no_grad():
        model.popularity_weight.fill_(0.2)
    model.cold_prior_shift.fill_(0.5)  # w + δ = 0.7 for a query with no EELs
    z = torch.randn(4, config.out_dim)
    log_degree = torch.tensor([0.0, 1.0, 2.0, 3.0])
    everyone = torch.arange(4)
    with torch.no_grad():
        scores = model.score_matrix(z, everyone, everyone, log_degree)
    for q, w in enumerate([0.7, 0.2, 0.2, 0.2]):
        torch.testing.assert_close(scores[q], z[q] @ z.t() + w * log_degree)


def test_new_items_walk_factors_mix_in_their_concept_neighbours(shards):
    graphs, config = shards
    model = build_model(config)
    graph = graphs[0]
    n_e = graph.num_entities
    model.walk.copy_(torch.randn(config.num_entities, config.walk_rank))
    known = torch.ones(n_e, dtype=torch.bool)
    known[:5] = False  # five new items
    h = torch.randn(n_e, config.dim)
    neighbours = torch.randn(n_e, config.walk_rank)
    with torch.no_grad():
        untouched = model.readout(graph, h, known, neighbour_walk=neighbours)  # μ = 0
        model.concept_walk_share.fill_(0.25)
        z = model.readout(graph, h, known, neighbour_walk=neighbours)
        predicted = model.to_walk(h[:5])
    r = config.walk_rank
    assert torch.allclose(untouched[:5, :r], predicted)
    assert torch.allclose(z[:5, :r], 0.75 * predicted + 0.25 * neighbours[:5], atol=1e-6)
    assert torch.equal(z[5:], untouched[5:])  # entities with walk factors keep their own


def test_neighbour_walk_is_the_concept_neighbours_weighted_mean(monkeypatch):
    # entity 0 shares a concept with 1 and 2 (and more of them with 2); 3 shares none
    kg = KGArrays(
        num_nodes={ENTITY: 5, "tag": 3},
        eel=np.empty((2, 0), dtype=np.int64),
        eel_weight=np.empty(0, dtype=np.float32),
        concept_edges={("tag", "tag"): np.array([[0, 0, 1, 2, 2, 3, 4], [0, 1, 0, 0, 1, 2, 0]])},
    )
    concepts = concept_matrix(kg).to_dense()
    walk = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0], [0.0, 0.0]])
    has = torch.tensor([False, True, True, True, False])
    neighbours = ConceptNeighbours(concept_matrix(kg))
    out = neighbours.walk(walk, has)
    cos = concepts @ concepts.t()
    w1, w2 = cos[0, 1], cos[0, 2]
    assert w2 > w1 > 0 and cos[0, 3] == 0
    assert torch.allclose(out[0], (w1 * walk[1] + w2 * walk[2]) / (w1 + w2))
    assert torch.equal(out[1:4], torch.zeros(3, 2))  # they have their own
    # entity 4's neighbours: 1 and 2 (its concept), never the other new one (0)
    assert torch.allclose(
        out[4], (cos[4, 1] * walk[1] + cos[4, 2] * walk[2]) / (cos[4, 1] + cos[4, 2])
    )
    nearest = ConceptNeighbours(concept_matrix(kg), k=1).weights(torch.tensor([0]), has)
    assert nearest.to_dense()[0].tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]  # k = 1: the nearest alone
    # the same candidates again (another model's walk): the weights found the first time
    found = []
    monkeypatch.setattr(
        concept_neighbours,
        "top_neighbours",
        lambda *a, **k: found.append(a[2]) or top_neighbours(*a, **k),
    )
    assert torch.allclose(neighbours.walk(walk * 2, has), out * 2)
    assert found == []
    has[3] = False  # other candidates: found anew, for the entities without walk factors
    neighbours.walk(walk, has)
    assert [q.tolist() for q in found] == [[0, 3, 4]]


def test_neighbours_are_looked_for_in_a_pool_of_at_most_max_candidates():
    """Above the cap, a seeded sample of the candidates: the same entities for every
    candidate set that holds them, and the neighbours the pool alone would give."""
    gen = torch.Generator().manual_seed(0)
    n, concepts = 60, 6
    rows = torch.arange(n).repeat_interleave(2)
    cols = torch.randint(0, concepts, (2 * n,), generator=gen)
    kg = KGArrays(
        num_nodes={ENTITY: n, "tag": concepts},
        eel=np.empty((2, 0), dtype=np.int64),
        eel_weight=np.empty(0, dtype=np.float32),
        concept_edges={("tag", "tag"): torch.stack([rows, cols]).numpy()},
    )
    matrix = concept_matrix(kg)
    candidates = torch.arange(n) % 3 != 0  # 40 candidates
    capped = ConceptNeighbours(matrix, k=5, max_candidates=10)
    pool = capped.pool(candidates)
    assert len(pool) == 10 and bool(candidates[pool].all())
    assert torch.equal(pool, pool.sort().values)
    assert torch.equal(pool, ConceptNeighbours(matrix, k=5, max_candidates=10).pool(candidates))
    fewer = candidates.clone()
    fewer[pool[:3]] = False  # a candidate set without some of the pool: the rest stay in
    assert bool(torch.isin(pool[3:], capped.pool(fewer)).all())
    # below the cap: every candidate
    everyone = ConceptNeighbours(matrix, max_candidates=40).pool(candidates)
    assert torch.equal(everyone, candidates.nonzero().flatten())
    q = torch.arange(n)
    got = capped.weights(q, candidates).to_dense()
    only_pool = torch.zeros(n, dtype=torch.bool)
    only_pool[pool] = True
    expected = ConceptNeighbours(matrix, k=5, max_candidates=n).weights(q, only_pool).to_dense()
    assert torch.equal(got, expected) and bool((got[:, ~only_pool] == 0).all())
    assert bool((got.sum(1) > 0).any()) and got.diagonal().eq(0).all()
