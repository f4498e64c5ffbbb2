"""Connected components: the DataFrame algorithm against a union-find reference and GraphFrames."""

from __future__ import annotations

import random

import pytest

from spark_jobs import constants as C
from spark_jobs.graph_stats import components_dataframe, components_graphframes, eel_degrees
from tests.conftest import require_jvm


def union_find(n: int, edges: list[tuple[int, int]]) -> dict[int, int]:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    return {v: find(v) for v in range(n)}


@pytest.fixture(scope="module")
def small_graph(spark):
    rng = random.Random(0)
    n = 60
    # a long path (many propagation rounds without pointer jumping), random extras, isolated nodes
    edges = [(i, i + 1) for i in range(0, 25)] + [
        (rng.randrange(30, 55), rng.randrange(30, 55)) for _ in range(20)
    ]
    vertices = spark.createDataFrame([(i,) for i in range(n)], [C.NODE_ID])
    frame = spark.createDataFrame(edges, [C.SRC, C.DST])
    return n, edges, vertices, frame


def test_components_match_union_find(small_graph):
    n, edges, vertices, frame = small_graph
    got = {r[C.NODE_ID]: r[C.COMPONENT] for r in components_dataframe(vertices, frame).collect()}
    assert got == union_find(n, edges)  # both label a component by its smallest id


def test_components_match_graphframes(small_graph, caps):
    require_jvm(caps, "graphframes")
    _, _, vertices, frame = small_graph
    ours = {r[C.NODE_ID]: r[C.COMPONENT] for r in components_dataframe(vertices, frame).collect()}
    theirs = {
        r[C.NODE_ID]: r[C.COMPONENT] for r in components_graphframes(vertices, frame).collect()
    }
    assert ours == theirs


def test_degrees_count_isolated_entities(spark):
    nodes = spark.createDataFrame(
        [(0, "entity", "a"), (1, "entity", "b"), (2, "entity", "c"), (0, "genre", "g")],
        [C.NODE_ID, C.NODE_TYPE, C.KEY],
    )
    edges = spark.createDataFrame(
        [(0, C.EEL, 1), (1, C.EEL, 0), (0, "genre", 0)], [C.SRC, C.RELATION, C.DST]
    )
    assert {r[C.NODE_ID]: r[C.DEGREE] for r in eel_degrees(nodes, edges).collect()} == {
        0: 1,
        1: 1,
        2: 0,
    }
