"""The engine steps of a small incremental batch, in-process: no Spark action.

Reads the lake's tables at the transaction's versions as Arrow (deltalake), runs
:mod:`spark_jobs.arrow_incremental`'s jobs and commits one Delta version per table it
changes, as the Spark steps of :mod:`spark_jobs.incremental_batch` do, with the same rows.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from spark_jobs import arrow_incremental as A
from spark_jobs import constants as C
from spark_jobs.batch_steps import APPENDS, BatchSteps


def batch_rows(files: list[Path]) -> float:
    """Rows in the batch's files, cheaply: Parquet footers, CSV line breaks (a folder or
    a file without a readable footer counts as unbounded: Spark reads those)."""
    rows = 0.0
    for path in files:
        if not path.exists():  # gone since it was handed out: the reader quarantines it
            continue
        if path.is_dir():
            return float("inf")
        if path.suffix.lower() == ".parquet":
            try:
                rows += pq.ParquetFile(path).metadata.num_rows
            except (pa.ArrowInvalid, OSError):  # Spark names what is wrong with it
                return float("inf")
        else:
            with path.open("rb") as f:
                rows += sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    return rows


class ArrowSteps(BatchSteps):
    engine = "arrow"

    @functools.cached_property
    def interactions(self) -> pa.Table:
        return self.txn.arrow("raw_interactions")

    @functools.cached_property
    def pairs(self) -> pa.Table:
        """The touched pairs, recomputed (``src, dst, support, score``)."""
        everything = self.interactions
        ids = pa.array(sorted(set(self.files.values())))
        batch = everything.filter(pc.is_in(everything.column(C.BATCH_ID), ids))
        params = self.settings.coengagement
        return A.recompute_pairs(everything, A.touched_pairs(batch, everything, params), params)

    def appended(self) -> None:
        catalog = self.txn.arrow("item_catalog")
        with tempfile.TemporaryDirectory(prefix="cograph-batch-") as staging:
            rows = A.read_batch(
                self.files,
                catalog.column(C.ITEM_ID).combine_chunks(),
                {name: self.txn.schema(name) for _, name, _ in APPENDS},
                encoding=self.settings.encoding,
                staging=Path(staging),
            )
        counts = {}
        for part, name, key in APPENDS:
            table = getattr(rows, part)
            counts[key] = table.num_rows
            self.txn.write(name, table, mode="append", custom=self.custom)  # empty: no commit
        self.step("appended", **counts)

    def merged(self) -> None:
        n = self.pairs.num_rows if self.counts["interactions"] else 0
        if n:
            self.txn.merge("coengagement_edges", self.pairs, [C.SRC, C.DST])
        self.step("merged", pairs_merged=n)

    def extended(self) -> None:
        catalog = self.added("item_catalog", [C.ITEM_ID])
        concepts = self.added("item_concepts", list(C.CONCEPT_COLUMNS))
        nodes = self.txn.arrow("knowledge_graph/nodes")
        edges = self.txn.arrow("knowledge_graph/edges")
        # a graph built before nodes had a domain keeps its columns until the nightly rebuild
        added_nodes = A.new_nodes(nodes, catalog, concepts)
        added_nodes = added_nodes.select(nodes.column_names).cast(nodes.schema)
        pairs = self.pairs if self.counts["interactions"] else self.pairs.slice(0, 0)
        all_nodes = pa.concat_tables([nodes, added_nodes])
        added_edges = A.new_edges(all_nodes, edges, pairs, concepts, self.settings.min_support)
        for name, table in (("nodes", added_nodes), ("edges", added_edges)):
            self.txn.write(f"knowledge_graph/{name}", table, mode="append", custom=self.custom)
        self.step("extended", new_nodes=added_nodes.num_rows, new_edges=added_edges.num_rows)
