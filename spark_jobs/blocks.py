"""A shuffle of numpy columns as packed binary blocks, one Spark row per block.

For stages whose per-row work runs in numpy (``mapInArrow``): the sending side buckets
its rows by a hash of a key and packs each bucket's columns into blocks; a
``repartition(n, BUCKET)`` sends every bucket to one partition; the receiving side
unpacks its blocks back into columns. Spark then moves a few large rows instead of one
row per record, and never converts the records to its own row format.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import BinaryType, IntegerType, StructField, StructType

BUCKET = "_bucket"
BLOCK = "_block"
SCHEMA = StructType([StructField(BUCKET, IntegerType()), StructField(BLOCK, BinaryType())])
ArrowMap = Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]
BLOCK_BYTES = 32 << 20  # per block: far below Arrow's 2 GiB per batch and Spark's per row


def labels(spark: SparkSession) -> list[int]:
    """The bucket labels of the session's shuffle partitions (:func:`partition_labels`)."""
    return partition_labels(int(spark.conf.get("spark.sql.shuffle.partitions") or 8))


def exchange(
    df: DataFrame,
    send: Callable[[list[int]], ArrowMap],
    receive: ArrowMap,
    schema: StructType,
) -> DataFrame:
    """``df`` through ``send(labels)`` (a ``mapInArrow`` function that yields blocks), a
    shuffle of the blocks by bucket over the session's shuffle partitions, one bucket per
    partition, and ``receive`` (a ``mapInArrow`` function) to rows of ``schema``."""
    return received(df.mapInArrow(send(labels(df.sparkSession)), SCHEMA), receive, schema)


def received(sent: DataFrame, receive: ArrowMap, schema: StructType) -> DataFrame:
    """Blocks (rows of :data:`SCHEMA`) shuffled one bucket per partition and turned by
    ``receive`` into rows of ``schema``: blocks again (``SCHEMA``), for a further
    exchange, or the stage's output."""
    n = len(labels(sent.sparkSession))
    return sent.repartition(n, BUCKET).mapInArrow(receive, schema)


def spark_hash_int(v: int) -> int:
    """Spark's ``hash`` of an int column's value: Murmur3 x86_32 of its 4 bytes, seed 42
    (``Murmur3_x86_32.hashInt``), as a signed 32-bit int."""
    mask = 0xFFFFFFFF

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & mask

    k = rotl((v & mask) * 0xCC9E2D51 & mask, 15) * 0x1B873593 & mask
    h = (rotl(42 ^ k, 13) * 5 + 0xE6546B64) & mask
    h ^= 4  # the input's length in bytes
    h = (h ^ (h >> 16)) * 0x85EBCA6B & mask
    h = (h ^ (h >> 13)) * 0xC2B2AE35 & mask
    h ^= h >> 16
    return h - (1 << 32) if h >= 1 << 31 else h


@functools.cache
def partition_labels(n: int) -> list[int]:
    """For each of ``n`` shuffle partitions an int that Spark's hash partitioning sends
    there (``pmod(hash(v), n)``, as in ``repartition(n, col)``), so that ``n`` buckets
    land in ``n`` partitions, one each, instead of colliding: the smallest such int,
    found here rather than by a Spark job per exchange."""
    found: dict[int, int] = {}
    v = 0
    while len(found) < n:
        found.setdefault(spark_hash_int(v) % n, v)  # Python's % of a positive n is pmod
        v += 1
    return [found[p] for p in range(n)]


def bucket_of(keys: np.ndarray, buckets: int) -> np.ndarray:
    """A key's bucket: a multiplicative hash, so runs of similar keys spread out."""
    mixed = keys.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    bucket = (mixed >> np.uint64(33)) % np.uint64(buckets)
    return bucket.astype(np.uint16 if buckets <= 1 << 16 else np.int64)


def to_blocks(
    columns: list[np.ndarray], keys: np.ndarray, labels: list[int]
) -> Iterator[pa.RecordBatch]:
    """``columns`` (equal lengths) split by the bucket of ``keys``, packed as blocks;
    bucket ``b`` is sent as ``labels[b]``. Rows keep their order within a bucket."""
    bucket = bucket_of(keys, len(labels))
    order = np.argsort(bucket, kind="stable")  # a radix sort on small integers
    bounds = np.searchsorted(bucket[order], np.arange(len(labels) + 1))
    row_bytes = sum(c.dtype.itemsize for c in columns)
    step = max(1, BLOCK_BYTES // row_bytes)
    for b, label in enumerate(labels):
        rows = order[bounds[b] : bounds[b + 1]]
        for lo in range(0, len(rows), step):
            part = rows[lo : lo + step]
            block = b"".join(c[part].tobytes() for c in columns)
            yield pa.RecordBatch.from_arrays(
                [pa.array([label], pa.int32()), pa.array([block], pa.binary())],
                names=[BUCKET, BLOCK],
            )


def from_blocks(batches: Iterator[pa.RecordBatch], dtypes: list[np.dtype]) -> list[np.ndarray]:
    """The columns of every block in ``batches``, concatenated (empty when none)."""
    row_bytes = sum(np.dtype(d).itemsize for d in dtypes)
    parts: list[list[np.ndarray]] = [[] for _ in dtypes]
    for batch in batches:
        for block in batch.column(BLOCK).to_pylist():
            n, offset = len(block) // row_bytes, 0
            for i, d in enumerate(dtypes):
                parts[i].append(np.frombuffer(block, dtype=d, count=n, offset=offset))
                offset += n * np.dtype(d).itemsize
    return [np.concatenate(p) if p else np.empty(0, d) for p, d in zip(parts, dtypes, strict=True)]
