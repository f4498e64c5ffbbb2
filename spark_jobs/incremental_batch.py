"""One incremental batch as a resumable, all-or-nothing unit over the lake (no Dagster).

The lake's tables are handled here; the model's part comes in as two functions of
:class:`BatchSettings` (``embed``: the current checkpoint over the extended graph;
``publish``: the served index refreshed with the new vectors), which the asset wires from
``training/`` and ``serving/``.

A batch of at most ``small_batch_max_rows`` rows is read, validated and joined
in-process (:mod:`spark_jobs.arrow_batch`: Arrow, numpy and deltalake, no Spark session
started); a larger one, or one holding input that only Spark reads exactly, by Spark, as is
every batch of a lake under the cross-domain holdout (its held-out rows stay out of the
merged pairs, as out of the nightly build's). Both write the same rows, one Delta commit
per table changed.

The steps, each journaled when it finishes (:mod:`storage.lake_transaction`),
after a first entry that names the batch's files:

1. ``appended``: the batch's rows appended to quarantine, item_catalog, item_concepts and
   raw_interactions;
2. ``merged``: co-engagement recomputed for the pairs the batch touched, MERGEd;
3. ``extended``: new nodes and edges appended to the knowledge graph;
4. ``embedded``: new and affected entities embedded with the current checkpoint, MERGEd
   into entity_embeddings;
5. ``logged``: one row per file in batch_updates;
6. ``recorded``: one lake record makes all of it visible at once;
7. ``published``: the next ann_index version, then the journal goes.

A run killed anywhere resumes from the last finished step: the journal is keyed by the
batch's content, so a rerun (or the next run of any batch) finds it. Readers see the
batch only from step 6 on, and the served index moves only after that. Every step reads
what earlier steps wrote at the versions the journal holds, and tells what a step added
by comparing those versions with the ones the transaction began on.
"""

from __future__ import annotations

import functools
import hashlib
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs import constants as C
from spark_jobs.arrow_batch import ArrowSteps, batch_rows
from spark_jobs.arrow_inputs import NeedsSpark
from spark_jobs.batch_steps import (
    APPENDS,
    LOG_TABLE,
    STEPS,
    TABLE_COUNTS,
    BatchSettings,
    BatchSteps,
)
from spark_jobs.domain_holdout import training_interactions
from spark_jobs.incremental import (
    new_edges,
    new_nodes,
    read_batch,
    recompute_pairs,
    touched_pairs,
)
from storage.lake_log import INCREMENTAL_UNIT
from storage.lake_transaction import LakeTables, LakeTransaction

UNIT = INCREMENTAL_UNIT
__all__ = [
    "LOG_TABLE",
    "STEPS",
    "TABLE_COUNTS",
    "Applied",
    "BatchSettings",
    "apply_batch",
    "pending_batches",
]


@dataclass
class Applied:
    """What one batch did: per-file batch ids, counts, the index version it published."""

    batches: dict[str, str]
    counts: dict[str, int]
    index_version: str
    resumed_from: str | None
    tables: list[str] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)  # table -> the Delta version it is at
    new_index: bool = False  # whether it published an index version (some entity changed)
    step_seconds: dict[str, float] = field(default_factory=dict)  # the steps this run did
    engine: str = ""  # arrow or spark: the engine of this run's first three steps


def batch_key(batch_ids: Iterable[str]) -> str:
    """The journal key of a set of batches: the same files give the same key."""
    joined = "|".join(sorted(set(batch_ids)))
    return f"{UNIT}-{hashlib.sha256(joined.encode()).hexdigest()[:20]}"


def applied_batches(tables: LakeTables) -> set[str]:
    """Batch ids whose rows readers can see (logged and recorded)."""
    if not tables.exists(LOG_TABLE):
        return set()
    return set(pc.unique(tables.arrow(LOG_TABLE).column(C.BATCH_ID)).to_pylist())


def pending_batches(tables: LakeTables, files: dict[Path, str]) -> list[dict[Path, str]]:
    """What is left to apply, each as ``{path: batch id}``: what killed runs left in their
    journals first, then those of ``files`` (path -> batch id) that no batch holds yet."""
    work = [
        {Path(p): b for p, b in journal["facts"]["files"].items()}
        for journal in tables.log.journals(UNIT).values()
    ]
    done = applied_batches(tables) | {b for w in work for b in w.values()}
    fresh = {f: b for f, b in files.items() if b not in done}
    return work + ([fresh] if fresh else [])


def apply_batch(
    spark: Callable[[], SparkSession],
    tables: LakeTables,
    files: dict[Path, str],
    settings: BatchSettings,
    run_id: str,
    log: Callable[[str], None],
) -> Applied:
    """Apply ``files`` (path -> batch id) as one unit, resuming its journal if it has one.

    ``spark`` gives the session, started only where the batch goes to Spark. The caller
    holds the lake's writer lease.
    """
    txn = tables.transaction(batch_key(files.values()), unit=UNIT, run_id=run_id)
    resumed = txn.steps[-1] if txn.steps else None
    if resumed:
        log(f"Resuming batch {txn.key} after step '{resumed}' (run {txn.run_id})")
    if not txn.steps:  # journaled before any write: a run killed from here on is resumed
        txn.step("started", files={str(p): b for p, b in files.items()}, counts={})
    # the holdout picks rows by Spark's xxhash64, which the in-process path does not compute
    in_process = (
        batch_rows(list(files)) <= settings.small_batch_max_rows and not settings.holdout.enabled
    )
    steps: BatchSteps = (
        ArrowSteps(txn, settings, files, log)
        if in_process
        else _SparkSteps(spark, txn, settings, files, log)
    )
    seconds = {}
    for name in STEPS:
        if txn.done(name):
            continue
        start = time.perf_counter()
        try:
            getattr(steps, name)()
        except NeedsSpark as why:  # raised while reading, before any write
            log(f"Batch {txn.key} goes to Spark: {why}")
            steps = _SparkSteps(spark, txn, settings, files, log)
            getattr(steps, name)()
        seconds[name] = round(time.perf_counter() - start, 3)
    tables.log.drop_journal(txn.key)
    if isinstance(steps, _SparkSteps) and "pairs" in vars(steps):
        steps.pairs.unpersist()  # cached: the session outlives the run
    return Applied(
        batches={str(p): b for p, b in files.items()},
        counts=dict(txn.facts["counts"]),
        index_version=txn.facts["index_version"],
        resumed_from=resumed,
        tables=sorted(txn.facts.get("tables", [])),
        versions=dict(txn.versions),
        new_index=bool(txn.facts["affected"]),
        step_seconds=seconds,
        engine=steps.engine,
    )


class _SparkSteps(BatchSteps):
    """The engine steps of :func:`apply_batch` with Spark."""

    engine = "spark"

    def __init__(
        self,
        spark: Callable[[], SparkSession],
        txn: LakeTransaction,
        settings: BatchSettings,
        files: dict[Path, str],
        log: Callable[[str], None],
    ) -> None:
        super().__init__(txn, settings, files, log)
        self.spark = spark()

    def added_df(self, name: str, keys: list[str]) -> DataFrame:
        """:meth:`added` as a Spark DataFrame."""
        now = self.txn.read(self.spark, name)
        if self.txn.snapshot.version(name) is None:
            return now
        return now.join(self.txn.read_before(self.spark, name).select(*keys), keys, "left_anti")

    @functools.cached_property
    def interactions(self) -> DataFrame:
        ids = list(set(self.files.values()))
        return self.txn.read(self.spark, "raw_interactions").where(F.col(C.BATCH_ID).isin(ids))

    @functools.cached_property
    def pairs(self) -> DataFrame:
        catalog, holdout = self.txn.read(self.spark, "item_catalog"), self.settings.holdout
        everything = training_interactions(
            self.txn.read(self.spark, "raw_interactions"), catalog, holdout
        )
        params = self.settings.coengagement
        batch = training_interactions(self.interactions, catalog, holdout)
        touched = touched_pairs(batch, everything, params)
        return recompute_pairs(everything, touched, params).persist()

    def appended(self) -> None:
        read = functools.partial(self.txn.read, self.spark)
        counts = {}
        # Spark reads the line-numbered copies lazily: they live until the last write
        with tempfile.TemporaryDirectory(prefix="cograph-batch-") as staging:
            rows = read_batch(
                self.spark,
                self.files,
                read("raw_interactions"),
                read("item_catalog"),
                read("item_concepts"),
                read("quarantine"),
                encoding=self.settings.encoding,
                staging=Path(staging),
            )
            for part, name, key in APPENDS:
                df = getattr(rows, part).persist()
                counts[key] = df.count()
                self.txn.write(name, df, mode="append", custom=self.custom)  # empty: no commit
                df.unpersist()
        self.step("appended", **counts)

    def merged(self) -> None:
        n = self.pairs.count() if self.counts["interactions"] else 0
        if n:
            self.txn.merge("coengagement_edges", self.pairs, [C.SRC, C.DST])
        self.step("merged", pairs_merged=n)

    def extended(self) -> None:
        catalog = self.added_df("item_catalog", [C.ITEM_ID])
        concepts = self.added_df("item_concepts", list(C.CONCEPT_COLUMNS))
        nodes = self.txn.read(self.spark, "knowledge_graph/nodes")
        edges = self.txn.read(self.spark, "knowledge_graph/edges")
        # a graph built before nodes had a domain keeps its columns until the nightly rebuild
        added_nodes = new_nodes(nodes, catalog, concepts).select(*nodes.columns).persist()
        pairs = self.pairs if self.counts["interactions"] else self.pairs.limit(0)
        all_nodes = nodes.unionByName(added_nodes)
        added_edges = new_edges(all_nodes, edges, pairs, concepts, self.settings.min_support)
        added_edges = added_edges.persist()
        counts = {"new_nodes": added_nodes.count(), "new_edges": added_edges.count()}
        for name, df in (("nodes", added_nodes), ("edges", added_edges)):
            self.txn.write(f"knowledge_graph/{name}", df, mode="append", custom=self.custom)
        for df in (added_nodes, added_edges):
            df.unpersist()
        self.step("extended", **counts)
