"""Ranking metrics against hand-computed values, and the no-learning baselines."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch

from training.baselines import best_of, blend, concepts, itemcf, popularity, signals
from training.kg_arrays import ENTITY, KGArrays
from training.ranking import (
    POOL,
    RankingTask,
    average_precision_at_k,
    bootstrap_interval,
    grid_top_k,
    mask_out,
    rank_rows,
    recall_at_k,
    top_k,
)


def test_average_precision_by_hand():
    ranked = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8], [1, 2, 3, 4]])
    relevant = [torch.tensor([2, 4]), torch.tensor([9]), torch.tensor([], dtype=torch.long)]
    ap = average_precision_at_k(ranked, relevant)
    assert ap[0].item() == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert ap[1].item() == 0.0
    assert math.isnan(ap[2].item())  # an empty relevant set is left out of the mean
    assert float(ap.nanmean()) == pytest.approx(0.25)
    # more relevant items than K: the denominator is K
    assert average_precision_at_k(torch.tensor([[1, 2]]), [torch.tensor([1, 2, 3])])[0] == 1.0
    assert recall_at_k(ranked[:1], relevant[:1])[0] == 1.0


def test_top_k_breaks_ties_by_id_and_excludes():
    scores = torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    ranked = top_k(
        lambda q: scores[q],
        torch.tensor([0, 1]),
        2,
        [torch.tensor([], dtype=torch.long), torch.tensor([0])],
    )
    assert ranked.tolist() == [[1, 2], [1, 2]]


def test_ranking_task_from_pairs():
    held_out = torch.tensor([[0], [1]])
    known = torch.tensor([[0, 2], [2, 0]])
    task = RankingTask.from_pairs(held_out, known, num_entities=4)
    assert task.queries.tolist() == [0, 1]
    assert task.relevant[0].tolist() == [1] and task.relevant[1].tolist() == [0]
    assert sorted(task.exclude[0].tolist()) == [0, 2] and task.exclude[1].tolist() == [1]
    scores = torch.tensor([[0, 5, 9, 1], [5, 0, 0, 0]], dtype=torch.float)
    # query 0: 2 is known and skipped, so 1 ranks first; query 1: 0 ranks first
    assert task.map_at_k(lambda q: scores[q], k=2) == 1.0


def test_a_task_without_queries_scores_nan_not_an_error():
    # the semantic setting of a lake whose concepts are all common has no pairs at all
    task = RankingTask.from_links(
        torch.empty(2, 0, dtype=torch.long), torch.empty(2, 0, dtype=torch.long), 4
    )
    per_query = task.per_query(lambda q: torch.zeros(len(q), 4), ks=(2, 3))
    assert set(per_query) == {"map@2", "recall@2", "map@3", "recall@3"}
    assert all(v.shape == (0,) for v in per_query.values())
    assert math.isnan(task.map_at_k(lambda q: torch.zeros(len(q), 4), k=2))


@pytest.fixture
def kg() -> KGArrays:
    # entities 0-3; EELs 0-2 and 1-2 (weight 1), 0-3 (weight 2)
    # genres: 0 and 1 -> g0; 2 -> g1; 3 -> g0 and g1
    eel = np.array([[0, 2, 1, 2, 0, 3], [2, 0, 2, 1, 3, 0]])
    return KGArrays(
        num_nodes={ENTITY: 4, "genre": 2},
        eel=eel,
        eel_weight=np.array([1.0, 1.0, 1.0, 1.0, 2.0, 2.0], dtype=np.float32),
        concept_edges={("genre", "genre"): np.array([[0, 1, 2, 3, 3], [0, 0, 1, 0, 1]])},
    )


def test_baselines_by_hand(kg):
    s = signals(kg, held_out=torch.tensor([[0], [3]]))  # 0-3 is held out
    # co-engagement rows: 0 -> {2}, 1 -> {2}, 2 -> {0, 1}, 3 -> {}
    q = torch.tensor([0, 2])
    cf = itemcf(s)(q)
    assert torch.allclose(cf[0], torch.tensor([1.0, 1.0, 0.0, 0.0]))  # 0 and 1 share 2
    assert torch.allclose(cf[1], torch.tensor([0.0, 0.0, 1.0, 0.0]))
    assert torch.allclose(popularity(s)(q)[0], torch.log1p(torch.tensor([1.0, 1.0, 2.0, 0.0])))
    cos = concepts(s)(torch.tensor([3]))[0]
    idf0, idf1 = math.log(4 / 3), math.log(4 / 2)
    # entity 3 has both genres; entity 0 only g0; entity 2 only g1
    assert cos[0].item() == pytest.approx(idf0 / math.hypot(idf0, idf1))
    assert cos[2].item() == pytest.approx(idf1 / math.hypot(idf0, idf1))
    assert cos[3].item() == pytest.approx(1.0)
    mixed = blend(s, 1.0, 0.5, 0.1)(q)
    assert torch.allclose(mixed, itemcf(s)(q) + 0.5 * concepts(s)(q) + 0.1 * s.log_degree)
    # a part weighted zero is left out, to the same values as multiplying it by zero
    for a, b, c in ((0.0, 0.5, 0.1), (1.0, 0.0, 0.0), (0.0, 0.0, 0.3)):
        full = a * itemcf(s)(q) + b * concepts(s)(q) + c * s.log_degree
        assert torch.equal(blend(s, a, b, c)(q), full), (a, b, c)


def test_without_eels(kg):
    rest = kg.without_eels(np.array([[3], [0]]))
    assert rest.eel.tolist() == [[0, 2, 1, 2], [2, 0, 2, 1]] and rest.eel_weight.tolist() == [
        1,
        1,
        1,
        1,
    ]


def test_weighted_map_matches_one_scorer_per_weight(kg):
    s = signals(kg, held_out=torch.tensor([[0], [3]]))
    task = RankingTask.from_pairs(torch.tensor([[0, 1], [3, 3]]), s.eel.indices(), 4)
    parts = [itemcf(s), concepts(s), popularity(s)]
    # one buffer holds each tuple's sum in turn: nothing of the one before may be left
    grid = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.3), (1.0, 0.5, 0.1), (0.0, 0.0, 0.0)]
    values = task.map_at_k_weighted(parts, grid, k=2)
    for weights, value in zip(grid, values, strict=True):
        assert value == pytest.approx(task.map_at_k(blend(s, *weights), k=2))
    assert best_of(grid, [0.1, 0.7, 0.3, 0.0]) == (grid[1], 0.7)


def test_each_transform_of_one_score_ranks_as_its_own_scorer():
    g = torch.Generator().manual_seed(0)
    n = 200
    base = torch.randint(0, 6, (n, n), generator=g).float()  # many ties, zeros among them
    task = RankingTask.from_links(
        torch.randint(0, n, (2, 600), generator=g), torch.randint(0, n, (2, 400), generator=g), n
    )
    penalties = [torch.rand(n, generator=g) for _ in range(3)] + [torch.ones(n)]
    calls = []

    def scores(q: torch.Tensor) -> torch.Tensor:
        calls.append(len(q))
        return base[q]

    transforms = [partial(torch.mul, other=p) for p in penalties]
    values = task.map_at_k_each(scores, transforms, k=5, batch_size=64)
    assert sum(calls) == len(task.queries)  # each query scored once for all four
    for p, value in zip(penalties, values, strict=True):
        assert value == pytest.approx(task.map_at_k(lambda q, p=p: base[q] * p, k=5), abs=1e-7)


def test_weighted_rankings_are_each_scorer_ranked_alone():
    # integer parts and dyadic weights: every sum exact, many ties for the id order to break
    g = torch.Generator().manual_seed(1)
    n = 120
    a, b = (torch.randint(0, 8, (n, n), generator=g).float() for _ in range(2))
    pop = torch.randint(0, 4, (n,), generator=g).float()
    task = RankingTask.from_links(
        torch.randint(0, n, (2, 500), generator=g), torch.randint(0, n, (2, 300), generator=g), n
    )
    parts = [lambda q: a[q], lambda q: b[q], lambda q: pop.expand(len(q), -1)]
    grid = [(0.0, 0.0, 1.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.5), (1.0, 0.25, 0.125)]
    rankings = task.rank_weighted(parts, grid, k=7, batch_size=32)
    for (wa, wb, wp), ranked in zip(grid, rankings, strict=True):
        alone = task.rank(lambda q, wa=wa, wb=wb, wp=wp: wa * a[q] + wb * b[q] + wp * pop, 7)
        assert torch.equal(ranked, alone), (wa, wb, wp)


@pytest.mark.parametrize("pool", [3, 20, POOL])
def test_grid_top_k_ranks_as_every_column_does(pool):
    # integer scores and dyadic weights: every sum exact, many ties; negative weights; a
    # small pool sends many rows to the full ranking, a large one few
    g = torch.Generator().manual_seed(pool)
    n, rows = 300, 64
    parts = [torch.randint(0, 20, (rows, n), generator=g).float() for _ in range(2)]
    # one row for every query, expanded (as popularity is) and as a (1, N) row
    parts.append(torch.randint(0, 5, (n,), generator=g).float().expand(rows, -1))
    parts.append(torch.randint(0, 9, (1, n), generator=g).float())
    exclude = [
        torch.randint(n, (int(torch.randint(0, 40, (1,), generator=g)),)) for _ in range(rows)
    ]
    grid = [
        (1.0, 0.5, 0.25, 0.0), (0.0, 1.0, 2.0, 0.5), (1.0, 0.0, -0.5, 0.0), (0.0, 0.0, 1.0, 0.0),
        (0.0, 0.0, 0.0, 1.0), (0.5, 0.0, 1.0, -1.0), (0.0, 0.0, 0.0, 0.0),
    ]  # fmt: skip
    for weights, ranked in zip(grid, grid_top_k(parts, grid, exclude, 10, pool), strict=True):
        s = sum(w * p for w, p in zip(weights, parts, strict=True)) + torch.zeros(rows, n)
        mask_out(s, exclude)
        assert torch.equal(ranked, rank_rows(s, 10)), weights


def test_rank_rows_is_exact_on_ties():
    s = torch.tensor([[1.0, 5.0, 5.0, 5.0, 0.0], [3.0, 2.0, 1.0, 0.0, 4.0]])
    assert rank_rows(s, 2).tolist() == [[1, 2], [4, 0]]
    random = torch.randint(0, 4, (150, 200)).float()  # many ties
    random[::3, ::5] = -torch.inf  # excluded cells tie too
    random[1::3] = torch.rand(50, 200)  # and rows without a tie beside them
    for k in (1, 7, 60, 199, 200):
        expected = torch.argsort(random, dim=1, descending=True, stable=True)[:, :k]
        assert torch.equal(rank_rows(random, k), expected), k


def test_a_deeper_ranking_begins_with_the_shallower_one():
    # the evaluation reads the cold-query exposure's top 10 off the strict setting's top 100
    scores = torch.randint(0, 6, (40, 300)).float()  # many ties at every depth
    task = RankingTask(
        torch.arange(40), [torch.tensor([i]) for i in range(40)],
        [torch.randint(0, 300, (5,)) for _ in range(40)],
    )  # fmt: skip
    deep = task.rank(lambda q: scores[q], 100)
    for k in (1, 10, 37):
        assert torch.equal(deep[:, :k], task.rank(lambda q: scores[q], k))
    direct = task.per_query(lambda q: scores[q], (10,))["map@10"]
    assert torch.equal(task.metrics(deep, (10,))["map@10"], direct)


def test_a_sample_is_seeded_and_keeps_each_querys_rows():
    src = [q for q in range(10) for _ in range(2)]
    links = torch.tensor([src, [(q + d) % 10 for q in range(10) for d in (1, 2)]])
    task = RankingTask.from_links(links, torch.tensor([[0], [5]]), num_entities=10)
    assert task.sample(None) is task and task.sample(10) is task
    part = task.sample(4, seed=1)
    assert len(part.queries) == 4 and part.queries.tolist() == sorted(part.queries.tolist())
    assert torch.equal(task.sample(4, seed=1).queries, part.queries)
    assert not torch.equal(task.sample(4, seed=2).queries, part.queries)
    for i, q in enumerate(part.queries.tolist()):
        assert torch.equal(part.relevant[i], task.relevant[q])
        assert torch.equal(part.exclude[i], task.exclude[q])


def test_bootstrap_interval_holds_the_mean_and_narrows_with_more_queries():
    rng = np.random.default_rng(0)
    small = torch.from_numpy(rng.random(100))
    large = torch.from_numpy(rng.random(10_000))
    lo, hi = bootstrap_interval(torch.cat([small, torch.tensor([math.nan])]))
    assert lo < float(small.mean()) < hi
    lo_l, hi_l = bootstrap_interval(large)
    assert lo_l < float(large.mean()) < hi_l and (hi_l - lo_l) < (hi - lo) / 5
    # about 1.96 standard errors either side (uniform values: sd = 1/sqrt(12))
    assert (hi_l - lo_l) == pytest.approx(2 * 1.96 / math.sqrt(12 * 10_000), rel=0.15)
    assert all(math.isnan(x) for x in bootstrap_interval(torch.tensor([math.nan])))
