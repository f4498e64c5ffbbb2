"""One incremental batch as a resumable, all-or-nothing unit over the lake (no Dagster).

Spark and the lake's tables are handled here; the model's part comes in as two functions of
:class:`BatchSettings` (``embed``: the current checkpoint over the extended graph;
``publish``: the served index refreshed with the new vectors), which the asset wires from
``training/`` and ``serving/``.

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
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs import constants as C
from spark_jobs.coengagement import CoengagementParams
from spark_jobs.incremental import (
    EDGE_KEYS,
    is_items_file,
    new_edges,
    new_nodes,
    read_batch,
    recompute_pairs,
    touched_pairs,
)
from storage.embedding_store import EntityVectors, embedding_rows
from storage.lake_log import INCREMENTAL_UNIT
from storage.lake_transaction import LakeTables, LakeTransaction
from storage.versions import latest

UNIT = INCREMENTAL_UNIT
STEPS = ("appended", "merged", "extended", "embedded", "logged", "recorded", "published")
LOG_TABLE = "batch_updates"


# (nodes, edges) of the extended graph -> every entity's vectors from the current checkpoint
Embed = Callable[[pa.Table, pa.Table], EntityVectors]
# (nodes, edges, vectors, affected entity ids, new entities, version, the item catalog):
# publish that version
Publish = Callable[[pa.Table, pa.Table, EntityVectors, np.ndarray, int, str, pa.Table], None]


@dataclass(frozen=True)
class BatchSettings:
    """What the batch needs besides its files: the graph's settings, the served index's
    folder, and the model's two parts."""

    coengagement: CoengagementParams
    min_support: int
    index_root: Path
    embed: Embed
    publish: Publish
    encoding: str = "utf-8"  # of CSV batch files


@dataclass
class Applied:
    """What one batch did: per-file batch ids, counts, the index version it published."""

    batches: dict[str, str]
    counts: dict[str, int]
    index_version: str
    resumed_from: str | None
    tables: list[str] = field(default_factory=list)
    step_seconds: dict[str, float] = field(default_factory=dict)  # the steps this run did


def batch_key(batch_ids: Iterable[str]) -> str:
    """The journal key of a set of batches: the same files give the same key."""
    joined = "|".join(sorted(set(batch_ids)))
    return f"{UNIT}-{hashlib.sha256(joined.encode()).hexdigest()[:20]}"


def applied_batches(spark: SparkSession, tables: LakeTables) -> set[str]:
    """Batch ids whose rows readers can see (logged and recorded)."""
    if not tables.exists(LOG_TABLE):
        return set()
    rows = tables.read(spark, LOG_TABLE).select(C.BATCH_ID).distinct().collect()
    return {r[0] for r in rows}


def pending_batches(
    spark: SparkSession, tables: LakeTables, files: dict[Path, str]
) -> list[dict[Path, str]]:
    """What is left to apply, each as ``{path: batch id}``: what killed runs left in their
    journals first, then those of ``files`` (path -> batch id) that no batch holds yet."""
    work = [
        {Path(p): b for p, b in journal["facts"]["files"].items()}
        for journal in tables.log.journals(UNIT).values()
    ]
    done = applied_batches(spark, tables) | {b for w in work for b in w.values()}
    fresh = {f: b for f, b in files.items() if b not in done}
    return work + ([fresh] if fresh else [])


def apply_batch(
    spark: SparkSession,
    tables: LakeTables,
    files: dict[Path, str],
    settings: BatchSettings,
    run_id: str,
    log: Callable[[str], None],
) -> Applied:
    """Apply ``files`` (path -> batch id) as one unit, resuming its journal if it has one.

    The caller holds the lake's writer lease.
    """
    txn = tables.transaction(batch_key(files.values()), unit=UNIT, run_id=run_id)
    resumed = txn.steps[-1] if txn.steps else None
    if resumed:
        log(f"Resuming batch {txn.key} after step '{resumed}' (run {txn.run_id})")
    if not txn.steps:  # journaled before any write: a run killed from here on is resumed
        txn.step("started", files={str(p): b for p, b in files.items()}, counts={})
    batch = _Batch(spark, txn, settings, files, log)
    seconds = {}
    for name in STEPS:
        if not txn.done(name):
            start = time.perf_counter()
            getattr(batch, name)()
            seconds[name] = round(time.perf_counter() - start, 3)
    tables.log.drop_journal(txn.key)
    if "pairs" in vars(batch):  # computed and cached: the session outlives the run
        batch.pairs.unpersist()
    return Applied(
        batches={str(p): b for p, b in files.items()},
        counts=dict(txn.facts["counts"]),
        index_version=txn.facts["index_version"],
        resumed_from=resumed,
        tables=sorted(txn.facts.get("tables", [])),
        step_seconds=seconds,
    )


class _Batch:
    """The steps of :func:`apply_batch` over one transaction."""

    def __init__(
        self,
        spark: SparkSession,
        txn: LakeTransaction,
        settings: BatchSettings,
        files: dict[Path, str],
        log: Callable[[str], None],
    ) -> None:
        self.spark, self.txn, self.settings, self.files, self.log = spark, txn, settings, files, log
        self.custom = {"dagster_run_id": txn.run_id, "asset": LOG_TABLE}
        self.root = settings.index_root
        self.counts: dict[str, int] = dict(txn.facts.get("counts", {}))

    # what earlier steps added: the transaction's versions against the ones it began on

    def _added(self, name: str, keys: list[str]) -> DataFrame:
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
        everything = self.txn.read(self.spark, "raw_interactions")
        params = self.settings.coengagement
        touched = touched_pairs(self.interactions, everything, params)
        return recompute_pairs(everything, touched, params).persist()

    @functools.cached_property
    def graph(self) -> tuple[pa.Table, pa.Table]:
        """Nodes and edges with this batch's extension."""
        return (
            self.txn.read(self.spark, "knowledge_graph/nodes").toArrow(),
            self.txn.read(self.spark, "knowledge_graph/edges").toArrow(),
        )

    @functools.cached_property
    def embedding(self) -> EntityVectors:
        return self.settings.embed(*self.graph)

    def _step(self, name: str, **counts: int) -> None:
        self.counts.update(counts)
        written = sorted(self.txn.versions)
        self.txn.step(name, counts=self.counts, tables=written)
        self.log(f"Batch {self.txn.key}: {name} {counts or ''}")

    # the steps

    def appended(self) -> None:
        read = functools.partial(self.txn.read, self.spark)
        rows = read_batch(
            self.spark,
            self.files,
            read("raw_interactions"),
            read("item_catalog"),
            read("item_concepts"),
            read("quarantine"),
            self.settings.encoding,
        )
        counts = {}
        for df, name, key in (
            (rows.quarantine, "quarantine", "quarantined"),
            (rows.catalog, "item_catalog", "new_items"),
            (rows.concepts, "item_concepts", "new_concepts"),
            (rows.interactions, "raw_interactions", "interactions"),
        ):
            df = df.persist()
            counts[key] = df.count()
            self.txn.write(name, df, mode="append", custom=self.custom)  # empty: no commit
            df.unpersist()
        self._step("appended", **counts)

    def merged(self) -> None:
        n = self.pairs.count() if self.counts["interactions"] else 0
        if n:
            self.txn.merge("coengagement_edges", self.pairs, [C.SRC, C.DST])
        self._step("merged", pairs_merged=n)

    def extended(self) -> None:
        catalog = self._added("item_catalog", [C.ITEM_ID])
        concepts = self._added("item_concepts", list(C.CONCEPT_COLUMNS))
        nodes = self.txn.read(self.spark, "knowledge_graph/nodes")
        edges = self.txn.read(self.spark, "knowledge_graph/edges")
        added_nodes = new_nodes(nodes, catalog, concepts).persist()
        pairs = self.pairs if self.counts["interactions"] else self.pairs.limit(0)
        all_nodes = nodes.unionByName(added_nodes)
        added_edges = new_edges(all_nodes, edges, pairs, concepts, self.settings.min_support)
        added_edges = added_edges.persist()
        counts = {"new_nodes": added_nodes.count(), "new_edges": added_edges.count()}
        for name, df in (("nodes", added_nodes), ("edges", added_edges)):
            self.txn.write(f"knowledge_graph/{name}", df, mode="append", custom=self.custom)
        for df in (added_nodes, added_edges):
            df.unpersist()
        self._step("extended", **counts)

    def _affected(self) -> tuple[np.ndarray, int]:
        """New entities and the entities at either end of a new edge from an entity, and
        how many of them are new."""
        nodes = self._added("knowledge_graph/nodes", [C.NODE_TYPE, C.NODE_ID])
        edges = self._added("knowledge_graph/edges", EDGE_KEYS)
        new = nodes.where(F.col(C.NODE_TYPE) == C.ENTITY).select(C.NODE_ID).toArrow()
        touched = edges.where(F.col(C.SRC_TYPE) == C.ENTITY).select(C.SRC).toArrow()
        ids = np.concatenate([new.column(0).to_numpy(), touched.column(0).to_numpy()])
        return np.unique(ids).astype(np.int64), new.num_rows

    def embedded(self) -> None:
        affected, new_entities = self._affected()
        if len(affected):
            out = self.embedding
            nodes = self.graph[0]
            entities = nodes.filter(pc.equal(nodes.column(C.NODE_TYPE), C.ENTITY))
            item_ids = entities.sort_by(C.NODE_ID).column(C.KEY).take(pa.array(affected))
            update = self.spark.createDataFrame(
                embedding_rows(
                    affected,
                    item_ids,
                    out.model_version,
                    out.vectors[affected],
                    out.log_degree[affected],
                    out.inductive[affected],
                )
            )
            self.txn.merge("entity_embeddings", update, ["entity_id"])
        self.txn.facts["affected"] = affected.tolist()
        self._step("embedded", embedded=len(affected), new_entities=new_entities)

    def logged(self) -> None:
        rows = [
            (b, p, "items" if is_items_file(Path(p)) else "interactions")
            for p, b in sorted(self.txn.facts["files"].items())
        ]
        # the version step 7 publishes (the current one, where no entity changed)
        version = self.txn.run_id if self.txn.facts["affected"] else latest(self.root).name
        self.txn.facts["index_version"] = version
        log = self.spark.createDataFrame(rows, [C.BATCH_ID, "file", "kind"]).select(
            C.BATCH_ID,
            "file",
            "kind",
            F.lit(self.txn.run_id).alias("run_id"),
            F.lit(version).alias("index_version"),
            F.lit(json.dumps(self.counts, sort_keys=True)).alias("counts"),
            F.current_timestamp().alias("ts"),
        )
        self.txn.write(LOG_TABLE, log, mode="append", custom=self.custom)
        self._step("logged")

    def recorded(self) -> None:
        self.txn.record(
            {"batches": sorted(set(self.txn.facts["files"].values()))}, keep_journal=True
        )
        self._step("recorded")

    def published(self) -> None:
        version, root = self.txn.facts["index_version"], self.root
        affected = np.asarray(self.txn.facts["affected"], dtype=np.int64)
        if latest(root).name != version:  # a killed run may have moved LATEST already
            new_entities = self.counts.get("new_entities", 0)
            catalog = self.txn.read(self.spark, "item_catalog").select(*C.CATALOG_COLUMNS)
            self.settings.publish(
                *self.graph, self.embedding, affected, new_entities, version, catalog.toArrow()
            )
        self._step("published")
