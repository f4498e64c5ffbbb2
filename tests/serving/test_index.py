"""The norm-ranged index: one part per norm range, exact merges across parts, updates that
open a part, and bundles saved before norm ranges."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from serving import index as index_module
from serving.index import (
    LEGACY_INDEX,
    MAX_LEVEL,
    MEMBERS,
    META,
    IndexParams,
    build,
    load_index,
    norm_levels,
    recall_at_k,
    to_l2_items,
    tune,
    unique_rows,
)


def spread_items(n: int, seed: int = 0) -> np.ndarray:
    """Clustered directions whose norms span three orders of magnitude, and 1% hubs a
    hundred times longer (the walk factors at 10^7 interactions: 0.01 to 245)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, 16))
    directions = centres[np.arange(n) % 20] + 0.5 * rng.normal(size=(n, 16))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    norms = 10 ** rng.uniform(-2, 1, n)
    norms[rng.choice(n, n // 100, replace=False)] *= 100
    return (directions * norms[:, None]).astype(np.float32)


def exact_top(items: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return -np.sort(-(queries @ items.T), axis=1)[:, :k]


@pytest.mark.parametrize("collide", [False, True])
def test_unique_rows_group_equal_vectors_in_order_of_first_appearance(monkeypatch, collide):
    if collide:  # every hash equal: the rows must still be told apart, by the field sort
        monkeypatch.setattr(index_module, "row_hashes", lambda rows, chunk: np.zeros(len(rows)))
    rng = np.random.default_rng(0)
    distinct = rng.normal(size=(50, 8)).astype(np.float32)
    picks = rng.integers(0, 50, 400)
    rows = distinct[picks]
    unique, inverse = unique_rows(rows, chunk=64)
    np.testing.assert_array_equal(unique[inverse], rows)
    assert len(unique) == len(np.unique(picks))
    if not collide:
        first = [int(np.flatnonzero(inverse == u)[0]) for u in range(len(unique))]
        assert first == sorted(first)  # each distinct row where it first appears
    signed_zeros = np.array([[0.0, 1.0], [-0.0, 1.0]], dtype=np.float32)
    assert len(unique_rows(signed_zeros)[0]) == 1  # equal vectors, whatever their bits


def test_norm_levels_split_at_halvings_of_the_longest_norm():
    levels = norm_levels(np.array([16.0, 9.0, 8.0, 7.9, 1.0, 20.0, 0.0]), 16.0)
    assert levels.tolist() == [0, 0, 1, 1, 4, 0, MAX_LEVEL]


def test_where_one_reduction_loses_the_order_the_parts_keep_it():
    items = spread_items(4000)
    ids = np.arange(len(items))
    queries = items[np.random.default_rng(1).choice(len(items), 300, replace=False)]
    truth = exact_top(items, queries, 10)
    # one M for every item: the bulk sits near the pole [0, M], and HNSW stalls there even
    # at the tuner's largest ef (0.92 here); the parts reach the target at a small one
    single = faiss.IndexHNSWFlat(items.shape[1] + 1, 32)
    single.add(to_l2_items(items, float(np.linalg.norm(items, axis=1).max()) * 1.25))
    padded = np.column_stack([queries, np.zeros(len(queries), np.float32)])
    _, rows = single.search(padded, 10, params=faiss.SearchParametersHNSW(efSearch=1024))
    one = recall_at_k(np.take_along_axis(queries @ items.T, rows, 1), truth)
    index = build(items, ids, IndexParams())
    assert len(index.parts) >= 8  # about ten halvings from 0.01 to 1,000
    tuning = tune(index, items, queries)
    assert tuning.recall_at_10 >= 0.95 > one
    assert tuning.ef_search <= 64


def test_exact_parts_merge_to_the_exact_answer():
    items = spread_items(1500, seed=2)
    index = build(items, np.arange(len(items)), IndexParams(kind="flat"))
    queries = np.concatenate([items[:100], -items[100:150], np.zeros((1, 16), np.float32)])
    scores, ids = index.search(queries, 10)
    expected = exact_top(items, queries, 10)
    np.testing.assert_allclose(scores[:-1], expected[:-1], rtol=1e-4)
    found = np.take_along_axis(queries @ items.T, ids, 1)
    np.testing.assert_allclose(found, expected, rtol=1e-4, atol=1e-6)  # the ids agree too


def test_an_update_outside_every_part_opens_one_and_survives_a_reload(tmp_path):
    items = spread_items(500, seed=3)
    items = items[np.linalg.norm(items, axis=1) > 1]  # no short vectors: no short parts
    index = build(items, np.arange(len(items)), IndexParams())
    short = items[0] * (1e-3 / np.linalg.norm(items[0]))
    assert norm_levels(np.array([1e-3]), index.max_norm)[0] not in index.parts
    index.upsert(np.array([9000]), short[None])
    level = int(norm_levels(np.array([1e-3]), index.max_norm)[0])
    assert level in index.parts and index.overflow == 0
    _, ids = index.search(short[None], 1)
    assert ids[0, 0] != 9000  # the longest vectors along it score higher
    _, ids = index.search(short[None], len(items) + 1, ef=1024)
    assert 9000 in ids[0]
    index.upsert(
        np.array([9001]), (items[0] * 10 * index.max_norm / np.linalg.norm(items[0]))[None]
    )
    assert index.overflow == 1  # above the build's longest norm and its headroom: clamped
    index.save(tmp_path / "i")
    again = load_index(tmp_path / "i")
    assert sorted(again.parts) == sorted(index.parts)
    np.testing.assert_array_equal(again.row_level, index.row_level)
    queries = items[:20]
    np.testing.assert_array_equal(again.search(queries, 10)[1], index.search(queries, 10)[1])


def test_an_index_saved_before_norm_ranges_loads_as_one_part(tmp_path):
    items = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    max_norm = float(np.linalg.norm(items, axis=1).max()) * 1.25
    old = faiss.IndexFlatL2(9)
    old.add(to_l2_items(items, max_norm))
    faiss.write_index(old, str(tmp_path / LEGACY_INDEX))
    digests = np.zeros((300, 20), np.uint8)
    np.savez(tmp_path / MEMBERS, sizes=np.ones(300, np.int64), ids=np.arange(300), digests=digests)
    params = {**IndexParams(kind="flat").__dict__, "ef_grid": [16]}
    meta = {"params": params, "max_norm": max_norm, "overflow": 0, "ef_search": 64}
    (tmp_path / META).write_text(json.dumps({**meta, "deleted": [], "built_rows": 300}))
    index = load_index(tmp_path)
    assert list(index.parts) == [0] and (index.row_level == 0).all()
    scores, ids = index.search(items[:5], 3)
    np.testing.assert_allclose(scores, exact_top(items, items[:5], 3), rtol=1e-4)
    index.upsert(np.array([300]), items[:1] * 1e-3)  # a short update goes to its own part
    assert len(index.parts) == 2 and index.contains(300)


def test_a_missing_part_file_is_named(tmp_path):
    index = build(spread_items(200), np.arange(200), IndexParams(kind="flat"))
    index.save(tmp_path)
    gone = sorted(tmp_path.glob("index-*.faiss"))[-1]
    gone.unlink()
    with pytest.raises(FileNotFoundError, match=gone.name):
        load_index(tmp_path)
