"""The co-engagement pair counter against brute force, without Spark."""

from __future__ import annotations

from collections import Counter
from itertools import combinations

import numpy as np
import pyarrow as pa
import pytest

from spark_jobs import blocks
from spark_jobs import user_pairs as up


def random_lists(seed: int, n_owners: int = 12, n_codes: int = 40):
    """Owners' deduplicated item codes with integer times."""
    rng = np.random.default_rng(seed)
    owner = rng.integers(0, n_owners, 400)
    code = rng.integers(0, n_codes, 400)
    _, first = np.unique(owner * n_codes + code, return_index=True)
    owner, code = owner[first], code[first]
    return owner, rng.integers(0, 100, len(owner)), code


def brute_force(owner, t, code, window) -> Counter:
    pairs: Counter = Counter()
    for o in np.unique(owner):
        rows = np.flatnonzero(owner == o)
        for i, j in combinations(rows, 2):
            if window is None or abs(int(t[i]) - int(t[j])) <= window:
                pairs[(min(code[i], code[j]), max(code[i], code[j]))] += 1
    return pairs


@pytest.mark.parametrize("window", [None, 0, 7])
@pytest.mark.parametrize("chunk", [5, 10**9], ids=["many-chunks", "one-chunk"])
def test_pair_keys_counted_equal_brute_force(window, chunk, monkeypatch):
    monkeypatch.setattr(up, "CHUNK_PAIRS", chunk)
    owner, t, code = random_lists(seed=window or 1)
    chunks = list(up.pair_keys(owner, t, code, window))
    assert (len(chunks) > 3) == (chunk == 5)
    keys, counts = up.counted(np.concatenate(chunks))
    want = brute_force(owner, t, code, window)
    assert want and list(keys) == sorted(keys)
    got = {(int(k) >> 32, int(k) & 0xFFFFFFFF): int(c) for k, c in zip(keys, counts, strict=True)}
    assert got == want


def engagements_batch(owner, t, code) -> pa.RecordBatch:
    """The (user, time, code) rows the Spark job sends a partition (``t`` in seconds)."""
    micros = pa.array(np.asarray(t, np.int64) * 1_000_000)
    return pa.RecordBatch.from_arrays(
        [pa.array([f"u{o}" for o in owner]), micros, pa.array(code, pa.int32())],
        names=[up.OWNER, up.MICROS, up.CODE],
    )


def test_latest_capped_equals_brute_force():
    rng = np.random.default_rng(5)
    owner, code = rng.integers(0, 6, 300), rng.integers(0, 30, 300)
    t = rng.integers(0, 50, 300)  # repeated (owner, code) rows and tied times
    got = up.latest_capped(owner, t, code, cap=4)
    want = []
    for o in np.unique(owner):
        latest: dict[int, int] = {}
        for c, ts in zip(code[owner == o], t[owner == o], strict=True):
            latest[int(c)] = max(latest.get(int(c), -1), int(ts))
        ranked = sorted(latest.items(), key=lambda ct: (-ct[1], ct[0]))[:4]
        want += [(int(o), ts, c) for c, ts in ranked]
    assert [tuple(map(int, r)) for r in zip(*got, strict=True)] == want
    assert len(want) < len(set(zip(owner.tolist(), code.tolist(), strict=True)))  # cap cut some


def test_blocks_from_two_partitions_sum_to_the_brute_force_supports(monkeypatch):
    """Two partitions' pair blocks, regrouped by bucket as Spark's shuffle would, give
    every pair's total support and every item's user count (its self-pair); pairs under
    the minimum are dropped."""
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 7 * 8)  # several blocks per bucket
    parts = [random_lists(seed=s) for s in (3, 4)]
    pairs = up.partition_pairs(window=20, cap=10**6, labels=[7, 8, 9])
    out = [b for p in parts for b in pairs(iter([engagements_batch(*p)]))]
    assert len(out) > 6 and all(b.num_rows == 1 for b in out)
    want = brute_force(*parts[0], 20) + brute_force(*parts[1], 20)
    want += Counter((int(c), int(c)) for _, _, code in parts for c in code)
    got = {}
    for bucket in range(3):
        mine = [b for b in out if b.column(blocks.BUCKET)[0].as_py() == 7 + bucket]
        for batch in up.pair_totals(min_support=2)(iter(mine)):
            keys = batch.column(up.KEY).to_numpy()
            assert set(blocks.bucket_of(keys, 3)) <= {bucket}
            support = batch.column("support").to_numpy()
            got.update(zip(keys.tolist(), support.tolist(), strict=True))
    assert got == {(a << 32) | b: n for (a, b), n in want.items() if n >= 2}
    assert any(n == 1 for n in want.values())  # the minimum dropped something


def test_an_empty_partition_yields_nothing():
    assert list(up.partition_pairs(window=None, cap=2, labels=[0, 1])(iter([]))) == []
    assert list(up.pair_totals(min_support=1)(iter([]))) == []
