"""End-to-end mode (E2E-GRec): the fan-out sampler, GFAE, GradNorm, the gradient path from
the ranking loss into the GNN, and the temporal split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from serving.e2e_ranker import load_ranker
from spark_jobs.synthetic import SyntheticSpec, generate
from storage.layout import E2E_RANKER
from training.e2e import ARMS, END_TO_END, NO_GFAE, TWO_STAGE, E2EModel, E2EParams, Trainer
from training.e2e_run import E2EReport, export_ranker, run_arms
from training.gfae import FeatureAutoEncoder
from training.gradnorm import GradNorm
from training.hetero_graph import COENGAGED, hetero_graph
from training.subgraph import Csr, k_hop, sample_incoming
from training.time_split import E2EInputs, e2e_inputs, user_time_split


def tiny_inputs() -> E2EInputs:
    spec = SyntheticSpec(n_users=150, n_items=300, n_interactions=6000, bad_row_share=0.0, seed=3)
    interactions, _, concepts = generate(spec)
    interactions["ts"] = interactions["ts"].astype("int64")
    return e2e_inputs(interactions, concepts)


TINY = E2EParams(dim=8, batch_size=64, negatives=32, epochs=2, max_steps_per_epoch=3)


@pytest.fixture(scope="module")
def data():
    return tiny_inputs()


def _random_csr(seed: int = 0, n: int = 60, e: int = 400) -> tuple[Csr, set]:
    g = torch.Generator().manual_seed(seed)
    src, dst = torch.randint(n, (e,), generator=g), torch.randint(n, (e,), generator=g)
    pairs = torch.unique(torch.stack([src, dst]), dim=1)
    rel = (pairs[0] + pairs[1]) % 3
    edges = {(int(s), int(d), int(r)) for s, d, r in zip(pairs[0], pairs[1], rel, strict=True)}
    return Csr.incoming(pairs[0], pairs[1], rel, n), edges


def test_sampled_subgraphs_hold_exactly_the_fanout_neighbours():
    csr, edges = _random_csr()
    seeds = torch.tensor([0, 5, 7, 11])
    sub = k_hop(csr, seeds, (3, 2), torch.Generator().manual_seed(1))
    assert sub.nodes[: len(seeds)].tolist() == seeds.tolist()
    assert len(set(sub.nodes.tolist())) == len(sub.nodes)
    src, dst = sub.nodes[sub.edge_index[0]], sub.nodes[sub.edge_index[1]]
    sampled = list(zip(src.tolist(), dst.tolist(), sub.edge_type.tolist(), strict=True))
    assert set(sampled) <= edges  # real edges, with their relation
    assert len(set(sampled)) == len(sampled)  # without replacement
    # hop 1: every seed gets min(degree, 3) of its in-edges; hop 2: the new nodes, min(d, 2)
    per_target = {}
    for s, d, _ in sampled:
        per_target.setdefault(d, []).append(s)
    for v in seeds.tolist():
        assert len(per_target.get(v, [])) == min(int(csr.degree(torch.tensor([v]))), 3)
    first_hop = {s for s, d, _ in sampled if d in set(seeds.tolist())} - set(seeds.tolist())
    for v in first_hop:
        assert len(per_target.get(v, [])) == min(int(csr.degree(torch.tensor([v]))), 2)
    assert first_hop <= set(sub.nodes[len(seeds) :].tolist())


def test_sampling_is_uniform_over_the_neighbours():
    src = torch.arange(1, 11)
    csr = Csr.incoming(
        src, torch.zeros(10, dtype=torch.long), torch.zeros(10, dtype=torch.long), 11
    )
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(11)
    for _ in range(2000):
        chosen, owner, _ = sample_incoming(csr, torch.tensor([0]), 3, g)
        assert len(set(chosen.tolist())) == 3 and (owner == 0).all()
        counts[chosen] += 1
    share = counts[1:] / 6000
    assert torch.allclose(share, torch.full((10,), 0.1), atol=0.02)


def test_gfae_loss_is_zero_for_a_perfect_reconstruction_and_positive_otherwise():
    gfae = FeatureAutoEncoder(dim=8, features=8, share=0.25)
    with torch.no_grad():
        gfae.decoder.weight.copy_(torch.eye(8))
        gfae.decoder.bias.zero_()
    x = torch.randn(20, 8)
    assert gfae.loss(x, x).item() == 0.0
    assert gfae.loss(x + 0.1 * torch.randn(20, 8), x).item() > 0.0
    masked_x, masked = gfae.mask(x, eligible=12, generator=torch.Generator().manual_seed(0))
    assert len(masked) == 3 and (masked < 12).all()
    assert torch.equal(masked_x[masked], gfae.mask_token.detach().expand(3, 8))
    untouched = torch.ones(20, dtype=torch.bool)
    untouched[masked] = False
    assert torch.equal(masked_x[untouched], x[untouched])


def test_gradnorm_weights_sum_to_the_task_count_and_move_to_the_slower_task():
    shared = torch.nn.Parameter(torch.randn(4, 4))
    balance = GradNorm(tasks=2, alpha=1.5)
    for step in range(30):
        base = (shared**2).sum()
        # task 0 keeps its initial loss (slow), task 1 falls to a fifth of it (fast)
        scale = torch.tensor([1.0, 1.0 if step == 0 else 0.2])
        shared.grad = None
        balance.backward(base * scale, shared)
        assert balance.current().sum().item() == pytest.approx(2.0, abs=1e-5)
        assert shared.grad is not None
    w = balance.current()
    assert w[0] > 1.2 > 0.8 > w[1]
    assert len(balance.history) == 30


def test_time_split_tests_each_users_latest_items(data):
    split = user_time_split(data)
    assert set(np.unique(split.part)) == {0, 1, 2}
    first = (
        pd.DataFrame({"u": data.user, "i": data.item, "t": data.ts}).groupby(["u", "i"])["t"].min()
    )
    times = first.loc[list(zip(split.user, split.item, strict=True))].to_numpy()
    for u in np.unique(split.user[split.part == 2])[:20]:
        mine = split.user == u
        assert times[mine & (split.part == 2)].min() >= times[mine & (split.part == 0)].max()
        assert times[mine & (split.part == 2)].min() >= times[mine & (split.part == 1)].max()


def test_coengaged_edges_are_symmetric_training_pairs(data):
    graph = hetero_graph(data, user_time_split(data))
    co = graph.csr.rel == graph.relations.index(COENGAGED)
    pairs = set(map(tuple, graph.csr.edge_index()[:, co].t().tolist()))
    assert pairs and all((b, a) in pairs for a, b in pairs)
    assert all(a < graph.num_items and b < graph.num_items for a, b in pairs)
    assert graph.x.shape[0] == graph.num_nodes


def test_the_ranking_loss_reaches_the_gnn_parameters(data):
    split = user_time_split(data)
    params = E2EParams(dim=8, batch_size=32, negatives=16, epochs=1, max_steps_per_epoch=2)
    trainer = Trainer(hetero_graph(data, split), split, params, torch.device("cpu"))
    model = E2EModel(trainer.graph, ARMS[NO_GFAE], params, None)
    rank_loss, gfae_loss = trainer.ranking_losses(model, torch.arange(32))
    assert gfae_loss.item() == 0.0
    rank_loss.backward()
    for name, p in model.encoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_an_end_to_end_arm_trains_and_is_measured(data):
    split = user_time_split(data)
    trainer = Trainer(hetero_graph(data, split), split, TINY, torch.device("cpu"))
    _, result = trainer.train(END_TO_END, log=lambda _: None)
    assert 0.0 <= result.test["ndcg@20"] <= 1.0 and 0.0 <= result.test["auc"] <= 1.0
    assert len(result.curve) == 2 and len(result.loss_weights) == 6
    assert all(sum(w) == pytest.approx(2.0, abs=1e-4) for w in result.loss_weights)


def test_the_served_numpy_user_tower_is_the_trained_one(data, tmp_path):
    run = run_arms(data, TINY, torch.device("cpu"), arms=(END_TO_END,), log=lambda _: None)
    export_ranker(run.model, run.trainer, data.item_ids, tmp_path / E2E_RANKER)
    ranker = load_ranker(tmp_path)
    trainer, model = run.trainer, run.model
    scorer = trainer.scorer(model)
    _, histories, _ = trainer.test
    for history in histories[:5]:
        expected = scorer([history])[0].numpy()
        rows = history.numpy()
        got = ranker.scores(
            ranker.user(rows, np.ones(len(rows), np.float32)), np.arange(data.num_items)
        )
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    # re-scoring: candidates by descending score, the unknown one last without a score
    history = [str(i) for i in data.item_ids[histories[0].numpy()]]
    candidates = [str(i) for i in data.item_ids[:6]] + ["never-seen"]
    order = ranker.rerank(history, np.ones(len(history)), candidates)
    assert order[-1] == (6, None)
    values = [score for _, score in order[:-1]]
    assert values == sorted(values, reverse=True) and sorted(p for p, _ in order) == list(range(7))


def _report(e2e: list[float], base: list[float]) -> E2EReport:
    def arm(values: list[float]) -> dict:
        return {"test": {"ndcg@20": float(np.mean(values))}, "test_ndcg_per_user": values}

    return E2EReport({}, {END_TO_END: arm(e2e), TWO_STAGE: arm(base)}, {}, {}, {})


def test_the_gate_blocks_only_what_is_worse_beyond_the_noise():
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 0.4, 500)
    noise = rng.normal(0, 0.05, 500)
    worse = _report((base - 0.05 + noise).tolist(), base.tolist())
    assert worse.ratio < 1 and not worse.holds
    _, lo, hi = worse.difference()
    assert lo < -0.05 < hi < 0
    level = _report((base + noise).tolist(), base.tolist())
    assert level.holds and level.difference()[1] < 0 < level.difference()[2]
    assert _report((base + 0.05).tolist(), base.tolist()).holds
