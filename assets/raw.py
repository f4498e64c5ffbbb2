"""Ingest assets: raw interactions, the item catalog, item concepts and the quarantine."""

from typing import Literal

import dagster as dg
from pyspark.sql import DataFrame, SparkSession

from orchestration.measure import Measure
from orchestration.resources import SparkResource, env
from spark_jobs.ingest import ingest
from spark_jobs.readers import RawInputs, read_generic, read_movielens
from spark_jobs.synthetic import SyntheticSpec, synthetic_inputs
from spark_jobs.validation import reason_counts

GROUP = "ingest"


class SyntheticConfig(dg.Config):
    n_users: int = 2_000
    n_items: int = 4_000
    n_interactions: int = 100_000
    cold_item_share: float = 0.15
    bad_row_share: float = 0.001
    seed: int = 7


class IngestConfig(dg.Config):
    """Which input to read. ``synthetic`` needs nothing else; the others name their files."""

    source: Literal["synthetic", "movielens", "generic"] = env("SOURCE", "synthetic")  # type: ignore[assignment]
    movielens_path: str = env("MOVIELENS_PATH", "../shared/datasets/ml-latest-small")
    interactions_path: str = env("INTERACTIONS_PATH", "")
    concepts_path: str = env("CONCEPTS_PATH", "")
    items_path: str = env("ITEMS_PATH", "")
    batch_id: str = ""  # default: the run id
    max_quarantine_share: float = float(env("MAX_QUARANTINE_SHARE", "0.05"))
    synthetic: SyntheticConfig = SyntheticConfig()


def read_inputs(spark: SparkSession, config: IngestConfig) -> RawInputs:
    if config.source == "synthetic":
        return synthetic_inputs(spark, SyntheticSpec(**config.synthetic.model_dump()))
    if config.source == "movielens":
        return read_movielens(spark, config.movielens_path)
    if not config.interactions_path or not config.concepts_path:
        raise dg.Failure("source 'generic' needs interactions_path and concepts_path")
    return read_generic(
        spark, config.interactions_path, config.concepts_path, config.items_path or None
    )


@dg.multi_asset(
    group_name=GROUP,
    outs={
        "raw_interactions": dg.AssetOut(description="Clean user-item interactions."),
        "item_catalog": dg.AssetOut(description="Every item, engaged or not, with first_seen."),
        "item_concepts": dg.AssetOut(description="Item-concept triples (genre, tag, creator...)."),
        "quarantine": dg.AssetOut(
            description="Rejected input rows with source, original row and reason (appended).",
            metadata={"write_mode": "append"},
        ),
    },
)
def raw_tables(context: dg.AssetExecutionContext, config: IngestConfig, spark: SparkResource):
    """Read the configured input, validate every row, quarantine what fails.

    The run fails, changing no table, when the rejected share of any input passes
    ``max_quarantine_share``.
    """
    if spark.capabilities.note:
        context.log.warning(spark.capabilities.note)
    batch_id = config.batch_id or context.run_id
    with Measure() as m:
        raw = read_inputs(spark.session, config)
        out = ingest(raw, batch_id)
        quarantine = out.quarantine.persist()
        by_source = {
            r["source"]: r["count"] for r in quarantine.groupBy("source").count().collect()
        }
        totals = {
            raw.interactions_source: raw.interactions.count(),
            raw.items_source: raw.items.count(),
            raw.concepts_source: raw.concepts.count(),
        }
        rows = {
            "raw_interactions": out.interactions.count(),
            "item_catalog": out.catalog.count(),
            "item_concepts": out.concepts.count(),
        }
    shares = {src: by_source.get(src, 0) / max(n, 1) for src, n in totals.items()}
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
    common = {"source": config.source, "batch_id": batch_id, **m.metadata("compute")}
    yield dg.Output(
        out.interactions,
        "raw_interactions",
        metadata={
            **common,
            "rows_in": totals[raw.interactions_source],
            "rows_clean": rows["raw_interactions"],
        },
    )
    yield dg.Output(
        out.catalog, "item_catalog", metadata={**common, "rows_clean": rows["item_catalog"]}
    )
    yield dg.Output(
        out.concepts, "item_concepts", metadata={**common, "rows_clean": rows["item_concepts"]}
    )
    yield dg.Output(
        quarantine,
        "quarantine",
        metadata={
            **common,
            "rows_quarantined": sum(by_source.values()),
            "reasons": dg.MetadataValue.md(_reason_table(quarantine)),
        },
    )


def _reason_table(quarantine: DataFrame) -> str:
    lines = ["| source | reason | rows |", "|---|---|---|"]
    lines += [f"| {src} | {kind} | {n} |" for src, kind, n in reason_counts(quarantine)]
    return "\n".join(lines)
