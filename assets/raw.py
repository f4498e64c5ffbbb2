"""Ingest assets: raw interactions, the item catalog, item concepts and the quarantine."""

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from resources.io_manager import TableWrite, lake_tables
from resources.markdown import markdown_table
from resources.measure import Measure
from resources.metadata import rounded
from resources.spark_lake import LakeResource, SparkResource
from settings import config_field
from spark_jobs import constants as C
from spark_jobs.ingest import ingest, merge_catalog, new_triples
from spark_jobs.readers import RawInputs, read_generic, read_movielens
from spark_jobs.synthetic import CROSS_DOMAINS, SyntheticSpec, synthetic_inputs
from spark_jobs.validation import QUARANTINE_SCHEMA, reason_counts

GROUP = "ingest"


class SyntheticConfig(dg.Config):
    n_users: int = Field(2_000, description="Users generated.")
    n_items: int = Field(4_000, description="Items generated.")
    n_interactions: int = Field(100_000, description="Interactions generated.")
    cold_item_share: float = Field(0.15, description="Share of items never engaged.")
    bad_row_share: float = Field(0.001, description="Share of corrupt rows (for quarantine).")
    seed: int = Field(7, description="Seed of the generator.")
    cross_domain: bool = Field(
        False,
        description="Two domains sharing users (music, then live: the target), for "
        "cross-domain cold start; otherwise two domains by topic.",
    )
    target_share: float = Field(
        0.3, description="Two-domain mode: share of items and of interactions in `live`."
    )
    no_target_user_share: float = Field(
        0.3, description="Two-domain mode: share of users with no `live` history."
    )

    def spec(self) -> SyntheticSpec:
        domains = CROSS_DOMAINS if self.cross_domain else SyntheticSpec.domains
        return SyntheticSpec(**self.model_dump(), domains=domains)


class IngestConfig(dg.Config):
    """Which input to read. ``synthetic`` needs nothing else; the others name their files.

    ``mode``: ``append`` (default) adds the input to what the raw tables hold, once per
    content (the batch id is a hash of it, so re-ingesting the same files changes
    nothing); ``replace`` makes the raw tables this input alone.
    """

    source: Literal["synthetic", "movielens", "generic"] = config_field("source")
    movielens_path: str = config_field("movielens_path")
    interactions_path: str = config_field("interactions_path")
    concepts_path: str = config_field("concepts_path")
    items_path: str = config_field("items_path")
    mode: Literal["append", "replace"] = config_field("ingest_mode")
    batch_id: str = Field("", description="Id of this input (empty: a hash of its content).")
    max_quarantine_share: float = config_field("max_quarantine_share")
    min_rows: int = config_field("min_input_rows")
    encoding: str = config_field("input_encoding")
    synthetic: SyntheticConfig = Field(
        SyntheticConfig(), description="The synthetic source's shape."
    )


def read_inputs(spark: SparkSession, config: IngestConfig, staging: Path) -> RawInputs:
    """The configured input; CSV files are read through line-numbered copies in ``staging``."""
    if config.source == "synthetic":
        return synthetic_inputs(spark, config.synthetic.spec())
    files = {"encoding": config.encoding, "staging": staging}
    if config.source == "movielens":
        return read_movielens(spark, config.movielens_path, **files)
    if not config.interactions_path or not config.concepts_path:
        raise dg.Failure("source 'generic' needs interactions_path and concepts_path")
    return read_generic(
        spark, config.interactions_path, config.concepts_path, config.items_path or None, **files
    )


RAW = ("raw_interactions", "item_catalog", "item_concepts")


@dg.multi_asset(
    group_name=GROUP,
    outs={
        "raw_interactions": dg.AssetOut(description="Clean user-item interactions (accumulated)."),
        "item_catalog": dg.AssetOut(description="Every item, engaged or not, with first_seen."),
        "item_concepts": dg.AssetOut(description="Item-concept triples (genre, tag, creator...)."),
        "quarantine": dg.AssetOut(
            description="Rejected input rows with source, original row and reason (appended).",
            metadata={"write_mode": "append"},
        ),
    },
)
def raw_tables(
    context: dg.AssetExecutionContext,
    config: IngestConfig,
    spark: SparkResource,
    lake: LakeResource,
):
    """Read the configured input, validate every row, quarantine what fails, and add the
    clean rows to the raw tables (or replace them, with ``mode: replace``).

    The raw tables are the source of truth: batches from the inbox stay in them, and a
    full refresh rebuilds everything downstream from what they accumulated. The four
    tables are one unit: readers see all of this batch or none of it. The run fails,
    changing no table, when an input has fewer than ``min_rows`` data rows or its rejected
    share passes ``max_quarantine_share``.
    """
    if spark.capabilities.note:
        context.log.warning(spark.capabilities.note)
    staging = lake.layout.staging(context.run_id)
    try:
        yield from _ingest(context, config, spark, lake, staging)
    finally:  # the outputs are written by now: the line-numbered copies can go
        shutil.rmtree(staging, ignore_errors=True)


def _ingest(
    context: dg.AssetExecutionContext,
    config: IngestConfig,
    spark: SparkResource,
    lake: LakeResource,
    staging: Path,
) -> Iterator[dg.Output]:
    tables = lake_tables(lake, spark)
    with Measure() as m:
        raw = read_inputs(spark.session, config, staging)
        batch_id = config.batch_id or raw.fingerprint
        current = (
            {name: tables.read(spark.session, name) for name in RAW}
            if config.mode == "append" and all(tables.exists(n) for n in RAW)
            else None
        )
        if current is not None and _ingested(current["raw_interactions"], batch_id):
            context.log.info(f"Batch {batch_id} is in the raw tables already: nothing to add")
            yield from _unchanged(current, spark.session, batch_id)
            return
        out = ingest(raw, batch_id, current["item_catalog"] if current else None)
        quarantine = out.quarantine.persist()
        by_source = {
            r["source"]: r["count"] for r in quarantine.groupBy("source").count().collect()
        }
        totals = {
            raw.interactions_source: raw.interactions.count(),
            raw.items_source: raw.items.count(),
            raw.concepts_source: raw.concepts.count(),
        }
        clean = {
            "raw_interactions": out.interactions.count(),
            "item_catalog": out.catalog.count(),
            "item_concepts": out.concepts.count(),
        }
    short = {src: n for src, n in totals.items() if n < config.min_rows}
    if short:
        raise dg.Failure(
            description="Input with fewer data rows than min_rows="
            f"{config.min_rows}: "
            + "; ".join(f"{src}: {n} rows" for src, n in short.items())
            + ". No table was changed."
        )
    shares = {src: by_source.get(src, 0) / n for src, n in totals.items()}
    over = {src: share for src, share in shares.items() if share > config.max_quarantine_share}
    if over:
        raise dg.Failure(
            description=(
                f"Rejected share above max_quarantine_share={config.max_quarantine_share}: "
                + "; ".join(f"{src}: {by_source[src]} of {totals[src]} rows" for src in over)
                + ". No table was changed; see the reasons in the metadata."
            ),
            metadata={"reasons": dg.MetadataValue.md(_reason_table(quarantine))},
        )
    context.log.info(f"Quarantined {sum(by_source.values())} rows: {by_source}")
    if current is None:  # replace, or the first batch: these rows are the whole table
        writes = {
            "raw_interactions": TableWrite(out.interactions, "overwrite"),
            "item_catalog": TableWrite(out.catalog, "overwrite"),
            "item_concepts": TableWrite(out.concepts, "overwrite"),
        }
    else:
        writes = {
            "raw_interactions": TableWrite(out.interactions, "append"),
            "item_catalog": TableWrite(merge_catalog(current["item_catalog"], out), "overwrite"),
            "item_concepts": TableWrite(
                new_triples(current["item_concepts"], out.concepts), "append"
            ),
        }
    common = {
        "source": config.source,
        "mode": "replace" if current is None else "append",
        "batch_id": batch_id,
        **m.metadata("compute"),
    }
    yield dg.Output(
        writes["raw_interactions"],
        "raw_interactions",
        metadata=rounded(
            {
                **common,
                "rows_in": totals[raw.interactions_source],
                "rows_clean": clean["raw_interactions"],
            }
        ),
    )
    for name in ("item_catalog", "item_concepts"):
        yield dg.Output(writes[name], name, metadata={**common, "rows_clean": clean[name]})
    yield dg.Output(
        quarantine,
        "quarantine",
        metadata=rounded(
            {
                **common,
                "rows_quarantined": sum(by_source.values()),
                "reasons": dg.MetadataValue.md(_reason_table(quarantine)),
                "accounting": dg.MetadataValue.md(_accounting(raw, totals, by_source, clean)),
            }
        ),
    )


def _ingested(interactions: DataFrame, batch_id: str) -> bool:
    return not interactions.where(F.col(C.BATCH_ID) == batch_id).isEmpty()


def _unchanged(current: dict[str, DataFrame], spark: SparkSession, batch_id: str):
    """The outputs of a batch that is in the tables already: nothing to commit."""
    meta = {"batch_id": batch_id, "already_ingested": True}
    for name in RAW:
        yield dg.Output(TableWrite(current[name].limit(0), "append"), name, metadata=meta)
    empty = spark.createDataFrame([], QUARANTINE_SCHEMA)
    yield dg.Output(TableWrite(empty, "append"), "quarantine", metadata=meta)


def _accounting(
    raw: RawInputs, totals: dict[str, int], rejected: dict[str, int], clean: dict[str, int]
) -> str:
    """Per input: rows in, rows kept, rows quarantined (concept rows naming one triple
    twice are kept once)."""
    kept = {
        raw.interactions_source: clean["raw_interactions"],
        raw.items_source: clean["item_catalog"],
    }
    return markdown_table(
        ["input", "rows in", "kept", "quarantined"],
        [
            (src, n, kept.get(src, n - rejected.get(src, 0)), rejected.get(src, 0))
            for src, n in totals.items()
        ],
    )


def _reason_table(quarantine: DataFrame) -> str:
    return markdown_table(["source", "reason", "rows"], reason_counts(quarantine))
