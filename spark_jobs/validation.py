"""Row-level checks that split raw input into clean rows and quarantined rows.

Nothing is dropped silently: every rejected row leaves with its line in the input, its
original content as JSON and the first reason it failed, for the ``quarantine`` table.
A line that did not decode in the declared encoding is rejected before any other check
(its content is the line with the bad bytes escaped); an exact repeat of an earlier
interaction row (every field equal) is rejected as a duplicate of that row's line, so
that per input, rows in = rows kept + rows quarantined.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs import constants as C
from spark_jobs.csv_lines import BAD_BYTES, LINE

QUARANTINE_SCHEMA = T.StructType(
    [
        T.StructField(C.SOURCE, T.StringType()),
        T.StructField(C.LINE, T.LongType()),
        T.StructField(C.ROW, T.StringType()),
        T.StructField(C.REASON, T.StringType()),
        T.StructField(C.BATCH_ID, T.StringType()),
        T.StructField(C.QUARANTINED_AT, T.TimestampType()),
    ]
)


@dataclass(frozen=True)
class Checked:
    """Clean rows and rejected rows of one input."""

    good: DataFrame
    bad: DataFrame


def parse_timestamp(col: Column, dtype: T.DataType) -> Column:
    """Timestamps as given: a timestamp, epoch seconds (number or digits), or an ISO string."""
    if isinstance(dtype, T.TimestampType | T.TimestampNTZType):
        return col.cast(T.TimestampType())
    if isinstance(dtype, T.NumericType):
        return F.timestamp_seconds(col)
    text = F.trim(col.cast(T.StringType()))
    return F.coalesce(
        F.when(text.rlike(r"^\d+(\.\d+)?$"), F.timestamp_seconds(text.try_cast("double"))),
        F.try_to_timestamp(text),
    )


def blank(col: Column) -> Column:
    return col.isNull() | (F.trim(col.cast(T.StringType())) == "")


def input_columns(df: DataFrame) -> list[str]:
    """The input's own columns, without the reader's line bookkeeping."""
    return [c for c in df.columns if c not in (LINE, BAD_BYTES)]


def _line(df: DataFrame) -> Column:
    return F.col(LINE) if LINE in df.columns else F.lit(None).cast(T.LongType())


def split_rows(
    df: DataFrame,
    rules: list[tuple[Column, Column | str]],
    *,
    source: str,
    batch_id: str,
    original_columns: list[str],
) -> Checked:
    """Apply ``rules`` (bad-row condition, reason) in order; the first match is the reason."""
    if BAD_BYTES in df.columns:
        undecodable = F.concat(F.lit("bytes not valid in the encoding: "), F.col(BAD_BYTES))
        rules = [(F.col(BAD_BYTES).isNotNull(), undecodable), *rules]
        as_read = F.coalesce(F.col(BAD_BYTES), F.to_json(F.struct(*original_columns)))
    else:
        as_read = F.to_json(F.struct(*[F.col(c) for c in original_columns]))
    reason = F.coalesce(
        *[F.when(cond, r if isinstance(r, Column) else F.lit(r)) for cond, r in rules],
        F.lit(None).cast(T.StringType()),
    )
    flagged = df.withColumn("_reason", reason)
    bad = flagged.where(F.col("_reason").isNotNull()).select(
        F.lit(source).alias(C.SOURCE),
        _line(flagged).alias(C.LINE),
        as_read.alias(C.ROW),
        F.col("_reason").alias(C.REASON),
        F.lit(batch_id).alias(C.BATCH_ID),
        F.current_timestamp().alias(C.QUARANTINED_AT),
    )
    good = flagged.where(F.col("_reason").isNull()).drop("_reason")
    return Checked(good, bad)


def check_catalog(items: DataFrame, *, source: str, batch_id: str) -> Checked:
    """Items need an id; a repeated id keeps its first row and quarantines the others."""
    original = input_columns(items)
    first = Window.partitionBy(C.ITEM_ID).orderBy(_line(items), F.col(C.TITLE))
    df = items.withColumn(C.ITEM_ID, F.trim(F.col(C.ITEM_ID).cast("string"))).withColumn(
        "_dup", F.row_number().over(first)
    )
    checked = split_rows(
        df,
        [(blank(F.col(C.ITEM_ID)), "missing item_id"), (F.col("_dup") > 1, "duplicate item_id")],
        source=source,
        batch_id=batch_id,
        original_columns=original,
    )
    good = checked.good.select(
        C.ITEM_ID,
        F.coalesce(F.col(C.DOMAIN).cast("string"), F.lit("default")).alias(C.DOMAIN),
        F.coalesce(F.col(C.TITLE).cast("string"), F.col(C.ITEM_ID)).alias(C.TITLE),
    )
    return Checked(good, checked.bad)


def join_known_items(df: DataFrame, catalog: DataFrame) -> DataFrame:
    """Add ``_known`` (true or null) by whether ``_item`` is in the catalog."""
    known = catalog.select(F.col(C.ITEM_ID).alias("_item"), F.lit(True).alias("_known"))
    return df.join(known, "_item", "left")


def unknown_item_rule() -> tuple[Column, Column]:
    return F.col("_known").isNull(), F.concat(F.lit("unknown item_id: "), F.col("_item"))


def check_interactions(
    raw: DataFrame, catalog: DataFrame, *, source: str, batch_id: str
) -> Checked:
    """Ids present, timestamp present and parseable, weight a finite non-negative number,
    item in the catalog, and not an exact repeat of an earlier row."""
    original = input_columns(raw)
    same = Window.partitionBy(*original).orderBy(_line(raw))
    df = raw.select(
        *raw.columns,
        F.row_number().over(same).alias("_repeat"),
        F.first(_line(raw)).over(same).alias("_first_line"),
        F.trim(F.col(C.USER_ID).cast("string")).alias("_user"),
        F.trim(F.col(C.ITEM_ID).cast("string")).alias("_item"),
        parse_timestamp(F.col(C.TS), raw.schema[C.TS].dataType).alias("_ts"),
        F.col(C.WEIGHT).cast("string").try_cast("double").alias("_w"),
    )
    df = join_known_items(df, catalog)
    checked = split_rows(
        df,
        [
            (blank(F.col("_user")), "missing user_id"),
            (blank(F.col("_item")), "missing item_id"),
            (blank(F.col(C.TS)), "missing ts"),
            (
                F.col("_ts").isNull(),
                F.concat(F.lit("unparseable ts: "), F.col(C.TS).cast("string")),
            ),
            (F.col("_w").isNull() | F.isnan("_w"), "weight is not a number"),
            (F.col("_w") == float("inf"), "weight is not finite"),
            (F.col("_w") < 0, "negative weight"),
            unknown_item_rule(),
            (
                F.col("_repeat") > 1,
                F.concat(
                    F.lit("duplicate row: same as line "),
                    F.coalesce(F.col("_first_line").cast("string"), F.lit("?")),
                ),
            ),
        ],
        source=source,
        batch_id=batch_id,
        original_columns=original,
    )
    good = checked.good.select(
        F.col("_user").alias(C.USER_ID),
        F.col("_item").alias(C.ITEM_ID),
        F.coalesce(F.col(C.EVENT).cast("string"), F.lit("interaction")).alias(C.EVENT),
        F.col("_w").alias(C.WEIGHT),
        F.col("_ts").alias(C.TS),
        F.lit(batch_id).alias(C.BATCH_ID),
    )
    return Checked(good, checked.bad)


def check_concepts(raw: DataFrame, catalog: DataFrame, *, source: str, batch_id: str) -> Checked:
    """Triples need all three fields, a relation usable as a node type and a known item."""
    original = input_columns(raw)
    df = raw.select(
        *raw.columns,
        F.trim(F.col(C.ITEM_ID).cast("string")).alias("_item"),
        F.lower(F.trim(F.col(C.RELATION).cast("string"))).alias("_rel"),
        F.lower(F.trim(F.col(C.CONCEPT).cast("string"))).alias("_concept"),
    )
    df = join_known_items(df, catalog)
    checked = split_rows(
        df,
        [
            (blank(F.col("_item")), "missing item_id"),
            (blank(F.col("_rel")), "missing relation"),
            (blank(F.col("_concept")), "missing concept"),
            (
                ~F.col("_rel").rlike(r"^[a-z][a-z0-9_]*$") | (F.col("_rel") == C.ENTITY),
                F.concat(F.lit("relation is not a valid node type name: "), F.col("_rel")),
            ),
            unknown_item_rule(),
        ],
        source=source,
        batch_id=batch_id,
        original_columns=original,
    )
    good = checked.good.select(
        F.col("_item").alias(C.ITEM_ID),
        F.col("_rel").alias(C.RELATION),
        F.col("_concept").alias(C.CONCEPT),
    ).distinct()
    return Checked(good, checked.bad)


def reason_counts(quarantine: DataFrame) -> list[tuple[str, str, int]]:
    """Rejected rows per source and kind of reason (the text before any quoted value)."""
    kind = F.split(F.col(C.REASON), ":").getItem(0)
    rows = quarantine.groupBy(C.SOURCE, kind.alias("kind")).count().orderBy(C.SOURCE, "kind")
    return [(r[C.SOURCE], r["kind"], r["count"]) for r in rows.collect()]
