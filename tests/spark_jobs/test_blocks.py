"""The block shuffle: columns survive packing, buckets land one per partition."""

from __future__ import annotations

import numpy as np
from pyspark.sql import functions as F

from spark_jobs import blocks


def test_columns_round_trip_through_blocks_by_bucket(monkeypatch):
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 5 * 16)  # 5 rows of int32+int32+float64
    rng = np.random.default_rng(0)
    src = rng.integers(0, 50, 200).astype(np.int32)
    dst = rng.integers(0, 50, 200).astype(np.int32)
    score = rng.random(200)
    out = list(blocks.to_blocks([src, dst, score], src, labels=[10, 11, 12]))
    assert len(out) >= 200 // 5 and all(b.num_rows == 1 for b in out)
    got = []
    for label in (10, 11, 12):
        mine = [b for b in out if b.column(blocks.BUCKET)[0].as_py() == label]
        s, d, w = blocks.from_blocks(iter(mine), [np.int32, np.int32, np.float64])
        assert set(blocks.bucket_of(s, 3)) <= {label - 10}
        got += list(zip(s.tolist(), d.tolist(), w.tolist(), strict=True))
    assert sorted(got) == sorted(zip(src.tolist(), dst.tolist(), score.tolist(), strict=True))


def test_no_blocks_give_empty_columns():
    (keys,) = blocks.from_blocks(iter([]), [np.int64])
    assert keys.dtype == np.int64 and len(keys) == 0


def test_partition_labels_land_one_per_partition(spark):
    for n in (1, 3, 8, 200):
        labels = blocks.partition_labels(n)
        df = spark.createDataFrame([(v,) for v in labels], "v int").repartition(n, "v")
        assert df.rdd.glom().map(len).collect() == [1] * n


def test_the_hash_is_sparks(spark):
    values = [0, 1, -1, 7, 42, 2**31 - 1, -(2**31), 123_456_789]
    got = spark.createDataFrame([(v,) for v in values], "v int").select(F.hash("v")).collect()
    assert [blocks.spark_hash_int(v) for v in values] == [r[0] for r in got]
