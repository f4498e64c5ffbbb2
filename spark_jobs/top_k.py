"""Symmetric top-k of weighted links, in numpy inside Spark partitions.

EEL pruning keeps a pair when either end ranks it in its top k (by score, descending,
then by the other end's id). Rather than ranking every directed link in a Spark window (a
sort of twice the pairs, and a shuffle of one row per link), two block exchanges
(:mod:`spark_jobs.blocks`) do it:

1. :func:`directed_blocks` sends each pair as two directed links to their sources'
   buckets, where :func:`kept_by_a_source` sorts a bucket's links once and keeps each
   source's first k; a kept link goes on as its pair (low id, high id), to the bucket of
   the low end;
2. there a pair kept by both its ends arrives twice: :func:`mirrored_pairs` keeps it once
   and writes it in both directions.

Only the kept pairs travel a second time, and the input is read once: no bound per
entity has to be joined back onto the pairs.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql.types import DoubleType, LongType, StructField, StructType

from spark_jobs import blocks
from spark_jobs import constants as C
from spark_jobs.sorted_runs import run_ranks, run_starts

LINKS = StructType(
    [
        StructField(C.SRC, LongType()),
        StructField(C.DST, LongType()),
        StructField(C.WEIGHT, DoubleType()),
    ]
)
COLUMNS = [np.dtype(np.int32), np.dtype(np.int32), np.dtype(np.float64)]
OUT_ROWS = 1 << 20  # rows per Arrow batch handed back to Spark


def symmetric_top_k(pairs: DataFrame, k: int) -> DataFrame:
    """``src, dst, score`` pairs (``src < dst``, ids below 2^31) -> ``src, dst, weight``:
    every pair in either end's top k (score descending, then the other end's id), in
    both directions."""
    labels = blocks.labels(pairs.sparkSession)
    kept = blocks.exchange(pairs, directed_blocks, kept_by_a_source(k, labels), blocks.SCHEMA)
    return blocks.received(kept, mirrored_pairs, LINKS)


def directed_blocks(labels: list[int]):
    """A ``mapInArrow`` function: ``src, dst, score`` pairs in, each pair as two directed
    links out, bucketed by their source."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            if not batch.num_rows:
                continue
            src = batch.column(C.SRC).to_numpy().astype(np.int32)
            dst = batch.column(C.DST).to_numpy().astype(np.int32)
            score = batch.column(C.SCORE).to_numpy()
            source = np.concatenate([src, dst])
            links = [source, np.concatenate([dst, src]), np.concatenate([score, score])]
            yield from blocks.to_blocks(links, source, labels)

    return run


def top_ranked(source: np.ndarray, other: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """Row positions of every source's first k links in (score descending, other
    ascending) order (all of a source's links when it has k or fewer)."""
    # np.lexsort((other, -score, source)), as three stable argsorts from the last key:
    # the same order in 0.7 of its time (1.5 s against 2.2 s for 4.5M links)
    order = np.argsort(other, kind="stable")
    order = order[np.argsort(-score[order], kind="stable")]
    order = order[np.argsort(source[order], kind="stable")]
    return order[run_ranks(source[order]) < k]


def kept_by_a_source(k: int, labels: list[int]):
    """A ``mapInArrow`` function over the directed links of some buckets: each source's
    top k, sent on as pairs (low id, high id, score) to the bucket of the low end."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        source, other, score = blocks.from_blocks(batches, COLUMNS)
        at = top_ranked(source, other, score, k)
        lo = np.minimum(source[at], other[at])
        yield from blocks.to_blocks([lo, np.maximum(source[at], other[at]), score[at]], lo, labels)

    return run


def mirrored_pairs(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """A ``mapInArrow`` function over the kept pairs of some buckets: each pair once (two
    ends may both have kept it), in both directions, as rows of :data:`LINKS`."""
    lo, hi, score = blocks.from_blocks(batches, COLUMNS)
    key = (lo.astype(np.int64) << 32) | hi.astype(np.int64)
    order = np.argsort(key)
    once = order[run_starts(key[order])]  # both copies of a pair carry its one score
    lo, hi, score = lo[once].astype(np.int64), hi[once].astype(np.int64), score[once]
    for start in range(0, len(once), OUT_ROWS // 2):
        part = slice(start, start + OUT_ROWS // 2)
        yield pa.RecordBatch.from_arrays(
            [
                np.concatenate([lo[part], hi[part]]),
                np.concatenate([hi[part], lo[part]]),
                np.concatenate([score[part], score[part]]),
            ],
            names=[C.SRC, C.DST, C.WEIGHT],
        )
