"""The steps of one incremental batch that do not depend on the engine that read it.

:mod:`spark_jobs.incremental_batch` runs the steps; ``appended``, ``merged`` and
``extended`` come from an engine (Spark in :mod:`spark_jobs.incremental_batch`, Arrow
in-process in :mod:`spark_jobs.arrow_batch`); the rest, defined here, read what those
wrote as Arrow tables through deltalake, so either engine can resume the other's batch.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from spark_jobs import constants as C
from spark_jobs.coengagement import CoengagementParams
from spark_jobs.domain_holdout import DomainHoldout
from spark_jobs.incremental import EDGE_KEYS, is_items_file
from storage.embedding_store import EntityVectors, embedding_rows
from storage.lake_transaction import LakeTransaction
from storage.versions import latest

STEPS = ("appended", "merged", "extended", "embedded", "logged", "recorded", "published")
LOG_TABLE = "batch_updates"
# what step 1 appends: (field of the engine's batch rows, table, the count it reports)
APPENDS = (
    ("quarantine", "quarantine", "quarantined"),
    ("catalog", "item_catalog", "new_items"),
    ("concepts", "item_concepts", "new_concepts"),
    ("interactions", "raw_interactions", "interactions"),
)
# the count under which a batch reports the rows it added to each table it writes
TABLE_COUNTS = {table: key for _, table, key in APPENDS} | {
    "coengagement_edges": "pairs_merged",
    "knowledge_graph/nodes": "new_nodes",
    "knowledge_graph/edges": "new_edges",
    "entity_embeddings": "embedded",
}

# (nodes, edges) of the extended graph -> every entity's vectors from the current checkpoint
Embed = Callable[[pa.Table, pa.Table], EntityVectors]
# (nodes, edges, vectors, affected entity ids, new entities, version, the item catalog):
# publish that version
Publish = Callable[[pa.Table, pa.Table, EntityVectors, np.ndarray, int, str, pa.Table], None]


@dataclass(frozen=True)
class BatchSettings:
    """What the batch needs besides its files: the graph's settings, the served index's
    folder, the model's two parts, and the largest batch applied in-process."""

    coengagement: CoengagementParams
    min_support: int
    index_root: Path
    embed: Embed
    publish: Publish
    encoding: str = "utf-8"  # of CSV batch files
    small_batch_max_rows: int = 0  # 0: every batch goes to Spark
    # the cross-domain evaluation's held-out rows, kept out of the merged pairs as the
    # nightly build keeps them out of coengagement_edges (disabled: nothing held out)
    holdout: DomainHoldout = field(default_factory=DomainHoldout)


class BatchSteps:
    """The engine-independent steps over one transaction; an engine adds the first three."""

    engine = ""

    def __init__(
        self,
        txn: LakeTransaction,
        settings: BatchSettings,
        files: dict[Path, str],
        log: Callable[[str], None],
    ) -> None:
        self.txn, self.settings, self.files, self.log = txn, settings, files, log
        self.custom = {"dagster_run_id": txn.run_id, "asset": LOG_TABLE}
        self.root = settings.index_root
        self.counts: dict[str, int] = dict(txn.facts.get("counts", {}))

    def added(self, name: str, keys: list[str]) -> pa.Table:
        """Rows of ``name`` that this transaction added (by ``keys``)."""
        now = self.txn.arrow(name)
        if self.txn.snapshot.version(name) is None:
            return now
        before = self.txn.arrow_before(name).select(keys)
        return now.join(before, keys, join_type="left anti")

    @functools.cached_property
    def graph(self) -> tuple[pa.Table, pa.Table]:
        """Nodes and edges with this batch's extension."""
        return self.txn.arrow("knowledge_graph/nodes"), self.txn.arrow("knowledge_graph/edges")

    @functools.cached_property
    def embedding(self) -> EntityVectors:
        return self.settings.embed(*self.graph)

    def step(self, name: str, **counts: int) -> None:
        self.counts.update(counts)
        written = sorted(self.txn.versions)
        self.txn.step(name, counts=self.counts, tables=written)
        self.log(f"Batch {self.txn.key}: {name} {counts or ''}")

    def _affected(self) -> tuple[np.ndarray, int]:
        """New entities and the entities at either end of a new edge from an entity, and
        how many of them are new."""
        nodes = self.added("knowledge_graph/nodes", [C.NODE_TYPE, C.NODE_ID])
        edges = self.added("knowledge_graph/edges", EDGE_KEYS)
        new = nodes.filter(pc.equal(nodes.column(C.NODE_TYPE), C.ENTITY)).column(C.NODE_ID)
        touched = edges.filter(pc.equal(edges.column(C.SRC_TYPE), C.ENTITY)).column(C.SRC)
        ids = np.concatenate([new.to_numpy(), touched.to_numpy()])
        return np.unique(ids).astype(np.int64), len(new)

    def embedded(self) -> None:
        affected, new_entities = self._affected()
        if len(affected):
            out = self.embedding
            nodes = self.graph[0]
            entities = nodes.filter(pc.equal(nodes.column(C.NODE_TYPE), C.ENTITY))
            item_ids = entities.sort_by(C.NODE_ID).column(C.KEY).take(pa.array(affected))
            update = embedding_rows(
                affected,
                item_ids,
                out.model_version,
                out.vectors[affected],
                out.log_degree[affected],
                out.inductive[affected],
            )
            self.txn.merge("entity_embeddings", update, ["entity_id"])
        self.txn.facts["affected"] = affected.tolist()
        self.step("embedded", embedded=len(affected), new_entities=new_entities)

    def logged(self) -> None:
        files = sorted(self.txn.facts["files"].items())
        # the version step 7 publishes (the current one, where no entity changed)
        version = self.txn.run_id if self.txn.facts["affected"] else latest(self.root).name
        self.txn.facts["index_version"] = version
        n = len(files)
        log = pa.table(
            {
                C.BATCH_ID: [b for _, b in files],
                "file": [p for p, _ in files],
                "kind": ["items" if is_items_file(Path(p)) else "interactions" for p, _ in files],
                "run_id": [self.txn.run_id] * n,
                "index_version": [version] * n,
                "counts": [json.dumps(self.counts, sort_keys=True)] * n,
                "ts": pa.array([datetime.now(UTC)] * n, pa.timestamp("us", tz="UTC")),
            }
        )
        self.txn.write(LOG_TABLE, log, mode="append", custom=self.custom)
        self.step("logged")

    def recorded(self) -> None:
        self.txn.record(
            {"batches": sorted(set(self.txn.facts["files"].values()))}, keep_journal=True
        )
        self.step("recorded")

    def published(self) -> None:
        version, root = self.txn.facts["index_version"], self.root
        affected = np.asarray(self.txn.facts["affected"], dtype=np.int64)
        if latest(root).name != version:  # a killed run may have moved LATEST already
            new_entities = self.counts.get("new_entities", 0)
            catalog = self.txn.arrow("item_catalog").select(list(C.CATALOG_COLUMNS))
            self.settings.publish(
                *self.graph, self.embedding, affected, new_entities, version, catalog
            )
        self.step("published")
