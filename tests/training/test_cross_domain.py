"""Cross-domain evaluation: the tasks hold what the holdout marked, the scorers compute what
their docstrings say, a model that knows the tastes beats popularity, and Metapath2Vec
carries behaviour across domains and concepts to new items."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.baselines import signals
from training.cross_domain import (
    COLD_USERS,
    CONCEPTS,
    EXPOSURE,
    ITEMCF,
    JOINT,
    NEW_ITEMS,
    POPULAR,
    TARGET_ONLY,
    MarkedInteractions,
    cold_user_task,
    evaluate_cross_domain,
    exposure_task,
    interaction_signals,
    itemcf_scorer,
    load_report,
    ndcg_at_k,
    new_item_task,
    seed_matrix,
    topic_posterior_scorer,
)
from training.cross_domain_models import target_only
from training.deepwalk import DeepWalkParams
from training.kg_arrays import KGArrays
from training.metapath2vec import train_metapath2vec

TOPICS, PER_TOPIC = 8, 40  # per topic: 20 source items, then 20 target items


def world(seed: int = 0) -> tuple[MarkedInteractions, KGArrays, np.ndarray]:
    """Users of one topic each engage source and target items of that topic (the target's
    first items most); every third user is cold, three target items of each topic new."""
    rng = np.random.default_rng(seed)
    n = TOPICS * PER_TOPIC
    topic = np.arange(n) // PER_TOPIC
    in_target = np.arange(n) % PER_TOPIC >= PER_TOPIC // 2
    new = np.isin(np.arange(n) % PER_TOPIC, [21, 23, 25])  # among the popular target items
    rows = []
    for user in range(320):
        t = user % TOPICS
        items = np.flatnonzero(topic == t)
        source, target = items[~in_target[items]], items[in_target[items]]
        popular = np.exp(-0.3 * np.arange(len(target)))
        picks = np.concatenate(
            [
                rng.choice(source, 4, replace=False),
                rng.choice(target, 4, replace=False, p=popular / popular.sum()),
            ]
        )
        rows += [(user, int(e)) for e in picks]
    user, entity = (np.array(c) for c in zip(*rows, strict=True))
    cold = (user % 3 == 0) & in_target[entity]
    held = cold | new[entity]
    data = MarkedInteractions(user, entity, held, user % 3 == 0, new[entity], in_target)
    genre = np.stack([np.arange(n), topic])
    kg = KGArrays(
        {"entity": n, "genre": TOPICS},
        np.zeros((2, 0), dtype=np.int64),
        np.zeros(0),
        {("genre", "genre"): genre},
    )
    return data, kg, topic


def test_tasks_take_what_the_holdout_marked():
    data, _, _ = world()
    cold = cold_user_task(data)
    assert len(cold) and all(u % 3 == 0 for u in cold.queries)
    for u, relevant, history in zip(cold.queries, cold.relevant, cold.exclude, strict=True):
        rows = data.user == u
        assert set(relevant.tolist()) == set(data.entity[rows & data.held & data.cold_user])
        assert set(history.tolist()) == set(data.entity[rows & ~data.held])
        assert not data.in_target[history.numpy()].any()  # a cold user's history: source only
    assert 0 < cold.validation.sum() < len(cold)  # halves: validation tunes, test reports
    new = new_item_task(data)
    assert set(new.queries.tolist()) <= set(np.flatnonzero(data.in_target))
    for j, relevant in zip(new.queries, new.relevant, strict=True):
        assert j not in relevant and data.in_target[relevant.numpy()].all()
    exposure = exposure_task(data)
    assert all(data.new_item[(data.user == u) & data.held].any() for u in exposure.queries)


def test_itemcf_sums_the_cosine_of_user_columns():
    data, _, _ = world()
    s = interaction_signals(data)
    dense = torch.zeros(data.num_users, data.num_entities)
    train = ~data.held
    dense[data.user[train], data.entity[train]] = 1.0
    unit = dense / dense.norm(dim=0).clamp(min=1e-12)
    seeds = [torch.tensor([0, 3]), torch.tensor([25])]
    want = torch.stack([(unit.t() @ unit).index_select(0, q).mean(0) for q in seeds])
    got = itemcf_scorer(s)(seed_matrix(seeds, data.num_entities))
    torch.testing.assert_close(got, want)


def test_ndcg_is_one_for_a_perfect_list_and_discounts_late_hits():
    relevant = [torch.tensor([3, 4])]
    assert float(ndcg_at_k(torch.tensor([[3, 4, 0]]), relevant)[0]) == pytest.approx(1.0)
    late = float(ndcg_at_k(torch.tensor([[0, 3, 4]]), relevant)[0])
    assert 0 < late < 1


def test_a_model_that_knows_the_tastes_beats_popularity(tmp_path):
    data, kg, topic = world()
    oracle = torch.nn.functional.one_hot(torch.from_numpy(topic), TOPICS).float()
    noise = torch.randn(oracle.shape, generator=torch.Generator().manual_seed(0))
    models = {"oracle": (JOINT, oracle), "noise": (TARGET_ONLY, noise)}
    empty = torch.empty(2, 0, dtype=torch.long)
    report = evaluate_cross_domain(data, signals(kg, empty), models, "live")
    assert set(report.results[COLD_USERS]) == {POPULAR, ITEMCF, CONCEPTS, "oracle", "noise"}
    oracle_recall = report.value(COLD_USERS, "oracle")
    assert oracle_recall > 1.5 * report.value(COLD_USERS, POPULAR)
    assert oracle_recall > report.value(COLD_USERS, "noise")
    assert report.value(NEW_ITEMS, "oracle") > report.value(NEW_ITEMS, POPULAR)
    assert 0 <= report.value(EXPOSURE, "oracle") <= 1
    ratios = report.target_ratios()
    assert ratios["cold_users_vs_target_only"]["peer"] == "noise"
    assert ratios["cold_users_vs_popular"]["ratio"] == pytest.approx(
        oracle_recall / report.value(COLD_USERS, POPULAR)
    )
    report.save(tmp_path)
    assert load_report(tmp_path).results == report.results


def test_the_topic_posterior_is_a_distribution_over_the_target_led_by_the_history():
    data, _, topic = world()
    s = interaction_signals(data)
    scorer = topic_posterior_scorer(topic, data.in_target, s.log_users, 0.2, 0.9)
    history = np.flatnonzero((topic == 2) & ~data.in_target)[:3]
    log_p = scorer(seed_matrix([torch.from_numpy(history)], data.num_entities))[0] + s.log_users
    target = torch.from_numpy(data.in_target)
    assert float(log_p[target].exp().sum()) == pytest.approx(1.0, rel=1e-5)
    # three items of topic 2: P(t=2) = 0.9·(3 + 0.2)/(3 + 8·0.2) + 0.1/8
    in_two = target & torch.from_numpy(topic == 2)
    assert float(log_p[in_two].exp().sum()) == pytest.approx(0.9 * 3.2 / 4.6 + 0.1 / 8, rel=1e-5)
    # within a topic, by training users
    users = s.log_users[in_two]
    assert torch.equal(log_p[in_two].argsort(), users.argsort())


def test_a_target_domain_without_items_is_reported_empty():
    data, kg, _ = world()
    nothing = MarkedInteractions(
        data.user, data.entity, np.zeros_like(data.held), data.cold_user,
        np.zeros_like(data.new_item), np.zeros_like(data.in_target),
    )  # fmt: skip
    empty = torch.empty(2, 0, dtype=torch.long)
    report = evaluate_cross_domain(nothing, signals(kg, empty), {}, "nowhere")
    assert report.empty and all(not r for r in report.results.values())
    assert math.isnan(report.target_ratios()["cold_users_vs_popular"]["ratio"])


def test_metapath2vec_carries_behaviour_across_domains_and_concepts_to_new_items():
    data, kg, topic = world()
    train = ~data.held
    params = DeepWalkParams(dim=16, epochs=3, walks_per_node=10, batch_size=256)
    vectors = train_metapath2vec(
        kg, data.user[train], data.entity[train], params, torch.device("cpu")
    )
    h = torch.nn.functional.normalize(vectors, dim=1)
    same = torch.from_numpy(topic[:, None] == topic[None, :])
    source = torch.from_numpy(~data.in_target)
    target = torch.from_numpy(data.in_target)
    sim = h @ h.t()
    cross = sim[source][:, target]
    assert cross[same[source][:, target]].mean() > cross[~same[source][:, target]].mean() + 0.2
    new = torch.from_numpy(np.unique(data.entity[data.new_item]))
    assert (sim[new][same[new]].mean() > sim[new][~same[new]].mean() + 0.2).item()


def test_target_only_keeps_the_target_links_and_every_concept():
    _, kg, _ = world()
    eel = np.array([[0, 25, 25, 26], [25, 0, 26, 25]])
    linked = KGArrays(kg.num_nodes, eel, np.ones(4), kg.concept_edges)
    in_target = np.arange(kg.num_entities) % PER_TOPIC >= PER_TOPIC // 2
    only = target_only(linked, in_target)
    assert only.eel.tolist() == [[25, 26], [26, 25]]
    assert only.concept_edges is linked.concept_edges
