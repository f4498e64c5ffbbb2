"""Knowledge-graph construction and pruning on tiny frames and on MovieLens."""

from __future__ import annotations

import numpy as np
import pytest

from spark_jobs import constants as C
from spark_jobs import graph_checks
from spark_jobs.graph import GraphParams, build_graph, prune_eel, prune_triples
from spark_jobs.top_k import top_ranked


def test_prune_eel_is_symmetric_top_k(spark):
    a, b, c, d = range(4)
    edges = spark.createDataFrame(
        [(a, b, 5, 0.9), (a, c, 5, 0.5), (a, d, 5, 0.1), (c, d, 1, 0.8)],
        [C.SRC, C.DST, C.SUPPORT, C.SCORE],
    )
    got = {
        (r[C.SRC], r[C.DST])
        for r in prune_eel(edges, GraphParams(top_k=1, min_support=2)).collect()
    }
    # a keeps b (its best); b, c, d keep a (their only link after min support); c-d lacks support
    assert got == {(a, b), (b, a), (a, c), (c, a), (a, d), (d, a)}


def reference_prune(pairs, k: int) -> set[tuple[int, int, float]]:
    """The window definition: rank each entity's links (score descending, then the other
    end), keep the top k of each, mirror, deduplicate."""
    links: dict[int, list[tuple[float, int]]] = {}
    for s, d, score in pairs:
        links.setdefault(s, []).append((score, d))
        links.setdefault(d, []).append((score, s))
    out = set()
    for s, mine in links.items():
        for score, d in sorted(mine, key=lambda x: (-x[0], x[1]))[:k]:
            out |= {(s, d, score), (d, s, score)}
    return out


@pytest.mark.parametrize("k", [1, 3, 8])
def test_prune_eel_equals_the_window_definition_with_ties(spark, k):
    rng = np.random.default_rng(k)
    pairs = {(int(min(x, y)), int(max(x, y))) for x, y in rng.integers(0, 60, (700, 2)) if x != y}
    # scores on a coarse grid, so many links tie and the id order decides
    rows = [(s, d, 2, float(rng.integers(1, 6)) / 4) for s, d in sorted(pairs)]
    edges = spark.createDataFrame(rows, [C.SRC, C.DST, C.SUPPORT, C.SCORE])
    got = {
        (r[C.SRC], r[C.DST], r["weight"]) for r in prune_eel(edges, GraphParams(top_k=k)).collect()
    }
    want = reference_prune([(s, d, w) for s, d, _, w in rows], k)
    assert got == want and len(got) < 2 * len(rows)


def test_concept_pruning_and_fanout_sampling(spark):
    rows = [(f"i{n}", "genre", "big") for n in range(10)] + [
        ("i0", "genre", "rare"),
        ("i1", "tag", "pair"),
        ("i2", "tag", "pair"),
    ]
    rows += [("i1", "tag", "pair"), ("i3", "genre", "big")]  # given twice, counted once
    concepts = spark.createDataFrame(rows, [C.ITEM_ID, C.RELATION, C.CONCEPT])
    out = prune_triples(
        concepts, GraphParams(min_concept_entities=2, max_concept_fanout=4, seed=1)
    ).collect()
    by_concept: dict[str, list] = {}
    for r in out:
        by_concept.setdefault(r[C.CONCEPT], []).append(r)
    assert "rare" not in by_concept  # used by one entity only
    assert len(by_concept["big"]) == 4 and all(
        r["sampled"] and r["concept_entities"] == 10 for r in by_concept["big"]
    )
    pair = by_concept["pair"]
    assert sorted(r[C.ITEM_ID] for r in pair) == ["i1", "i2"]
    assert not any(r["sampled"] for r in pair) and {r["concept_entities"] for r in pair} == {2}
    again = prune_triples(
        concepts, GraphParams(min_concept_entities=2, max_concept_fanout=4, seed=1)
    )
    assert sorted(map(tuple, again.collect())) == sorted(map(tuple, out))  # seeded


def test_small_graph_ids_and_edges(spark):
    catalog = spark.createDataFrame(
        [("a", "music"), ("b", "music"), ("c", "live"), ("cold", None)], [C.ITEM_ID, C.DOMAIN]
    )
    coeng = spark.createDataFrame(
        [("a", "b", 3, 0.5), ("b", "c", 2, 0.25)], [C.SRC, C.DST, C.SUPPORT, C.SCORE]
    )
    triples = spark.createDataFrame(
        [("a", "genre", "x"), ("cold", "genre", "x"), ("b", "tag", "t"), ("c", "tag", "t")],
        [C.ITEM_ID, C.RELATION, C.CONCEPT],
    )
    g = build_graph(catalog, coeng, triples, GraphParams())
    nodes = {(r[C.NODE_TYPE], r[C.KEY]): r[C.NODE_ID] for r in g["nodes"].collect()}
    assert nodes == {
        ("entity", "a"): 0,
        ("entity", "b"): 1,
        ("entity", "c"): 2,
        ("entity", "cold"): 3,
        ("genre", "x"): 0,
        ("tag", "t"): 0,
    }
    domains = {r[C.KEY]: r[C.DOMAIN] for r in g["nodes"].collect()}  # concepts have none
    assert domains == {"a": "music", "b": "music", "c": "live", "cold": None, "x": None, "t": None}
    edges = {(r[C.RELATION], r[C.SRC], r[C.DST], r["weight"]) for r in g["edges"].collect()}
    assert edges == {
        (C.EEL, 0, 1, 0.5),
        (C.EEL, 1, 0, 0.5),
        (C.EEL, 1, 2, 0.25),
        (C.EEL, 2, 1, 0.25),
        ("genre", 0, 0, 1.0),
        ("genre", 3, 0, 1.0),
        ("tag", 1, 0, 1.0),
        ("tag", 2, 0, 1.0),
    }
    assert graph_checks.dangling_endpoints(g["nodes"], g["edges"]) == 0
    assert graph_checks.eel_asymmetric(g["edges"]) == 0


def test_graph_checks_find_defects(spark):
    nodes = spark.createDataFrame(
        [(0, "entity", "a"), (1, "entity", "b")], [C.NODE_ID, C.NODE_TYPE, C.KEY]
    )
    edges = spark.createDataFrame(
        [
            ("entity", 0, C.EEL, "entity", 1, 1.0),
            ("entity", 0, C.EEL, "entity", 1, 1.0),
            ("entity", 1, C.EEL, "entity", 1, 0.0),
            ("entity", 0, C.EEL, "entity", 7, float("nan")),
        ],
        [C.SRC_TYPE, C.SRC, C.RELATION, C.DST_TYPE, C.DST, "weight"],
    )
    assert graph_checks.dangling_endpoints(nodes, edges) == 1
    assert graph_checks.eel_asymmetric(edges) == 3
    assert graph_checks.eel_self_loops(edges) == 1
    assert graph_checks.duplicate_edges(edges) == 1
    assert graph_checks.bad_weights(edges) == 2


@pytest.mark.parametrize("bad", [{"top_k": 0}, {"max_concept_fanout": 0}])
def test_bad_graph_params(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        GraphParams(**bad)


def test_movielens_graph_node_types(movielens_graph):
    g = movielens_graph
    counts = dict(g["nodes"].groupBy(C.NODE_TYPE).count().collect())
    assert set(counts) == {"entity", "genre", "tag"}
    assert counts["entity"] == 9_742 and counts["genre"] == 19
    relations = {r[0] for r in g["edges"].select(C.RELATION).distinct().collect()}
    assert relations == {C.EEL, "genre", "tag"}
    assert graph_checks.eel_asymmetric(g["edges"]) == 0


def test_top_ranked_is_each_sources_first_k_in_score_then_other_order():
    """Against a plain per-source sort, with tied scores so the other end decides."""
    rng = np.random.default_rng(2)
    source = rng.integers(0, 30, 2_000).astype(np.int32)
    other = rng.integers(0, 500, 2_000).astype(np.int32)
    score = rng.integers(1, 6, 2_000) / 5  # five distinct scores: many ties
    at = top_ranked(source, other, score, 7)
    got = sorted(zip(source[at].tolist(), (-score[at]).tolist(), other[at].tolist(), strict=True))
    want = []
    for s in np.unique(source):
        mine = source == s
        links = sorted(zip((-score[mine]).tolist(), other[mine].tolist(), strict=True))
        want += [(int(s), *link) for link in links[:7]]
    assert len(want) < len(source) and got == sorted(want)
