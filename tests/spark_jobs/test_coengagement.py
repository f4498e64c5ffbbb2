"""Co-engagement edges against a pure-Python reference on a small hand-built input."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from itertools import combinations

import pytest

from spark_jobs import constants as C
from spark_jobs.coengagement import CoengagementParams, build_coengagement

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)

# (user, item, weight, day offset)
ROWS = [
    ("u1", "a", 1.0, 0), ("u1", "b", 1.0, 1), ("u1", "c", 1.0, 2), ("u1", "a", 1.0, 3),
    ("u2", "a", 1.0, 0), ("u2", "b", 1.0, 0), ("u2", "d", 1.0, 40),
    ("u3", "a", 5.0, 0), ("u3", "b", 1.0, 1), ("u3", "c", 1.0, 1), ("u3", "d", 0.5, 2),
    ("u4", "c", 1.0, 0), ("u4", "d", 1.0, 0), ("u4", "e", 1.0, 0), ("u4", "b", 1.0, 0),
    ("u5", "e", 1.0, 0), ("u5", "d", 1.0, 1), ("u5", "a", 1.0, 60),
]  # fmt: skip


def reference(rows, params: CoengagementParams) -> dict[tuple[str, str], tuple[int, float]]:
    latest: dict[tuple[str, str], float] = {}
    for user, item, weight, day in rows:
        if weight >= params.min_weight:
            latest[(user, item)] = max(latest.get((user, item), -1.0), float(day))
    by_user: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for (user, item), day in latest.items():
        by_user[user].append((day, item))
    kept = {
        u: sorted(v, key=lambda t: (-t[0], t[1]))[: params.max_items_per_user]
        for u, v in by_user.items()
    }
    n_item: dict[str, int] = defaultdict(int)
    support: dict[tuple[str, str], int] = defaultdict(int)
    for items in kept.values():
        for _, i in items:
            n_item[i] += 1
        for (da, a), (db, b) in combinations(items, 2):
            if params.window_days is None or abs(da - db) <= params.window_days:
                support[tuple(sorted((a, b)))] += 1
    out = {}
    for (a, b), s in support.items():
        if s < params.min_support:
            continue
        if params.score == "cosine":
            score = s / math.sqrt(n_item[a] * n_item[b])
        elif params.score == "jaccard":
            score = s / (n_item[a] + n_item[b] - s)
        else:
            score = math.log(s * len(kept) / (n_item[a] * n_item[b]))
        if score > 0:
            out[(a, b)] = (s, score)
    return out


@pytest.fixture(scope="module")
def interactions(spark):
    return spark.createDataFrame(
        [(u, i, "view", w, T0 + timedelta(days=d)) for u, i, w, d in ROWS],
        [C.USER_ID, C.ITEM_ID, C.EVENT, C.WEIGHT, C.TS],
    )


@pytest.mark.parametrize(
    "params",
    [
        CoengagementParams(window_days=None, max_items_per_user=10, min_support=1),
        CoengagementParams(window_days=30, max_items_per_user=10, min_support=2),
        CoengagementParams(window_days=30, max_items_per_user=2, min_support=1, score="jaccard"),
        CoengagementParams(window_days=None, max_items_per_user=3, min_support=1, score="ppmi"),
        CoengagementParams(window_days=1, max_items_per_user=10, min_support=1, min_weight=1.0),
    ],
    ids=["no-window", "window-support2", "cap2-jaccard", "cap3-ppmi", "window1-minweight"],
)
def test_matches_python_reference(interactions, params):
    got = {
        (r[C.SRC], r[C.DST]): (r[C.SUPPORT], r[C.SCORE])
        for r in build_coengagement(interactions, params).collect()
    }
    want = reference(ROWS, params)
    assert want, "the reference should find pairs for every case"
    assert got.keys() == want.keys()
    for pair, (support, score) in want.items():
        assert got[pair][0] == support
        assert got[pair][1] == pytest.approx(score)


def test_pairs_are_ordered_and_loop_free(interactions):
    rows = build_coengagement(interactions, CoengagementParams(window_days=None, min_support=1))
    assert all(r[C.SRC] < r[C.DST] for r in rows.collect())


def test_bad_params_raise():
    with pytest.raises(ValueError, match="max_items_per_user"):
        CoengagementParams(max_items_per_user=1)
    with pytest.raises(ValueError, match="score must be one of"):
        CoengagementParams(score="lift")  # type: ignore[arg-type]


def test_pairs_and_counts_equal_the_self_join_sql(spark, tmp_path):
    """On generated data, the Spark job finds exactly the pairs and supports of the same
    SQL run by DuckDB (bench.coengagement's peer), scores equal to float precision."""
    import duckdb

    from bench.coengagement import SQL
    from spark_jobs.ingest import ingest
    from spark_jobs.synthetic import SyntheticSpec, synthetic_inputs

    spec = SyntheticSpec(n_users=300, n_items=600, n_interactions=20_000, bad_row_share=0)
    src = tmp_path / "interactions"
    ingest(synthetic_inputs(spark, spec), "t").interactions.write.parquet(str(src))
    params = CoengagementParams(window_days=3, max_items_per_user=20, min_support=2)
    ours = {
        (r[C.SRC], r[C.DST]): (r[C.SUPPORT], r[C.SCORE])
        for r in build_coengagement(spark.read.parquet(str(src)), params).collect()
    }
    sql = SQL.format(
        src=f"{src}/*.parquet", out=tmp_path / "duck.parquet", min_weight=0.0, cap=20,
        window=3 * 86_400, min_support=2,
    )  # fmt: skip
    with duckdb.connect() as con:
        con.execute(sql)
        theirs = con.execute(f"SELECT * FROM '{tmp_path / 'duck.parquet'}'").fetchall()
    assert len(theirs) > 500 and set(ours) == {(a, b) for a, b, _, _ in theirs}
    for a, b, support, score in theirs:
        assert ours[(a, b)][0] == support and ours[(a, b)][1] == pytest.approx(score)


def test_the_cap_ranks_by_the_full_timestamp(spark):
    """Engagements within one second: the cap keeps the latest by microseconds, as
    ``user_items`` ranks them, not the lowest item ids of a second-level tie."""
    rows = [(u, i, "view", 1.0, T0 + timedelta(milliseconds=ms))
            for u in ("u1", "u2") for i, ms in (("a", 100), ("b", 500), ("c", 900))]  # fmt: skip
    interactions = spark.createDataFrame(rows, [C.USER_ID, C.ITEM_ID, C.EVENT, C.WEIGHT, C.TS])
    params = CoengagementParams(window_days=None, max_items_per_user=2, min_support=1)
    got = {(r[C.SRC], r[C.DST]) for r in build_coengagement(interactions, params).collect()}
    assert got == {("b", "c")}
