"""Readers that turn input files into the three raw frames: interactions, items, concepts.

Readers only read and rename; :mod:`spark_jobs.validation` decides which rows are good.
CSV is read as text so that a malformed value reaches validation (and the quarantine
table) instead of becoming a silent null in Spark's type inference.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from spark_jobs import constants as C
from spark_jobs.csv_lines import BAD_BYTES, LINE, number_lines
from storage.fingerprints import content_hash

NO_GENRE = "(no genres listed)"  # MovieLens's marker for a movie without genres


@dataclass(frozen=True)
class RawInputs:
    """Unvalidated input frames and where each came from (named in quarantine rows).

    The three sources are distinct, so that quarantined rows count against their input.
    ``fingerprint`` identifies the content (a hash of the files, or of the generator's
    spec): ingesting the same content twice is one batch.
    """

    interactions: DataFrame
    items: DataFrame
    concepts: DataFrame
    interactions_source: str
    items_source: str
    concepts_source: str
    fingerprint: str

    def __post_init__(self) -> None:
        if len({self.interactions_source, self.items_source, self.concepts_source}) != 3:
            raise ValueError(
                f"Input sources must be distinct to count rejections per input: {self}"
            )


def check_columns(path: Path, columns: list[str], required: tuple[str, ...]) -> None:
    """Refuse a file that lacks a required column, naming what it has."""
    found = [c for c in columns if c not in (LINE, BAD_BYTES)]
    missing = [c for c in required if c not in found]
    if missing:
        raise ValueError(
            f"Input file {path} lacks column(s) {missing}; required {list(required)}, found {found}"
        )


def unsupported_suffix(path: Path) -> ValueError:
    return ValueError(f"Input file {path} has suffix '{path.suffix}'; expected .csv or .parquet")


def read_file(
    spark: SparkSession,
    path: str | Path,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    *,
    encoding: str = "utf-8",
    staging: Path,
) -> DataFrame:
    """Read one CSV (header, all text) or Parquet file or folder and check its columns.

    Missing optional columns come back as nulls, so later stages see one schema. Every
    row carries ``_line`` (its line in a CSV, its row in a Parquet file, 1-based) and
    ``_bad_bytes`` (set on a CSV line that does not decode in ``encoding``; see
    :mod:`spark_jobs.csv_lines`, whose UTF-8 copy goes under ``staging``). Spark reads
    that copy lazily, so the caller removes ``staging`` only once the frame is consumed.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Input file not found: {path}")
    if path.suffix.lower() == ".csv":
        copy = number_lines(path, staging / f"{uuid.uuid4().hex[:8]}-{path.name}", encoding)
        df = (
            spark.read.option("header", True)
            .option("inferSchema", False)
            .option("multiLine", True)  # a quoted field may hold a newline
            .option("escape", '"')  # RFC 4180: "" is a quote inside a quoted field
            .csv(str(copy))
            .withColumn(LINE, F.col(LINE).cast("long"))
        )
    elif path.suffix.lower() == ".parquet" or path.is_dir():
        df = spark.read.parquet(str(path))
        df = df.select(
            "*",
            (F.col("_metadata.row_index") + 1).alias(LINE),
            F.lit(None).cast("string").alias(BAD_BYTES),
        )
    else:
        raise unsupported_suffix(path)
    check_columns(path, df.columns, required)
    for col in optional:
        if col not in df.columns:
            df = df.withColumn(col, F.lit(None).cast("string"))
    return df.select(*required, *optional, LINE, BAD_BYTES)


def no_lines(df: DataFrame) -> DataFrame:
    """``df`` with empty ``_line`` and ``_bad_bytes``: rows made, not read from a file."""
    return df.select(
        "*", F.lit(None).cast("long").alias(LINE), F.lit(None).cast("string").alias(BAD_BYTES)
    )


def read_movielens(
    spark: SparkSession, root: str | Path, *, encoding: str = "utf-8", staging: Path
) -> RawInputs:
    """MovieLens (ml-latest-small layout): ratings and tagging acts as interactions, movie
    genres and free-text tags as concepts."""
    root = Path(root)
    read = functools.partial(read_file, spark, encoding=encoding, staging=staging)
    ratings = read(root / "ratings.csv", ("userId", "movieId", "rating", "timestamp"))
    movies = read(root / "movies.csv", ("movieId", "title", "genres"))
    tags = read(root / "tags.csv", ("userId", "movieId", "tag", "timestamp"))
    lines = (F.col(LINE), F.col(BAD_BYTES))
    rated = ratings.select(
        F.col("userId").alias(C.USER_ID),
        F.col("movieId").alias(C.ITEM_ID),
        F.lit("rating").alias(C.EVENT),
        F.col("rating").alias(C.WEIGHT),
        F.col("timestamp").alias(C.TS),
        *lines,
    )
    # tagging a movie is an engagement too (behaviour "tag"): one event per user, movie
    # and time, since several tags given at once are one act (their words are concepts)
    act = Window.partitionBy("userId", "movieId", "timestamp").orderBy(F.col(LINE))
    tagged = (
        tags.withColumn("_act", F.row_number().over(act))
        .where(F.col("_act") == 1)
        .select(
            F.col("userId").alias(C.USER_ID),
            F.col("movieId").alias(C.ITEM_ID),
            F.lit("tag").alias(C.EVENT),
            F.lit("1.0").alias(C.WEIGHT),
            F.col("timestamp").alias(C.TS),
            *lines,
        )
    )
    items = movies.select(
        F.col("movieId").alias(C.ITEM_ID), F.lit("movie").alias(C.DOMAIN), F.col(C.TITLE), *lines
    )
    genres = movies.select(
        F.col("movieId").alias(C.ITEM_ID),
        F.lit("genre").alias(C.RELATION),
        F.explode(F.split(F.col("genres"), r"\|")).alias(C.CONCEPT),
        *lines,
    ).where(F.col(C.CONCEPT) != NO_GENRE)
    tag_triples = tags.select(
        F.col("movieId").alias(C.ITEM_ID),
        F.lit("tag").alias(C.RELATION),
        F.col("tag").alias(C.CONCEPT),
        *lines,
    )
    return RawInputs(
        interactions=rated.unionByName(tagged),
        items=items,
        concepts=genres.unionByName(tag_triples),
        interactions_source=f"{root / 'ratings.csv'}, {root / 'tags.csv'}",
        items_source=str(root / "movies.csv"),
        concepts_source=f"{root / 'movies.csv'}, {root / 'tags.csv'}",
        fingerprint=content_hash(root / f for f in ("ratings.csv", "movies.csv", "tags.csv")),
    )


def read_generic(
    spark: SparkSession,
    interactions: str | Path,
    concepts: str | Path,
    items: str | Path | None = None,
    *,
    encoding: str = "utf-8",
    staging: Path,
) -> RawInputs:
    """Interactions ``user_id, item_id, ts[, event, weight]`` and concept triples.

    Without an items file the catalog is every item named in either file.
    """
    read = functools.partial(read_file, spark, encoding=encoding, staging=staging)
    inter = read(interactions, (C.USER_ID, C.ITEM_ID, C.TS), (C.EVENT, C.WEIGHT))
    inter = inter.withColumn(C.WEIGHT, F.coalesce(F.col(C.WEIGHT).cast("string"), F.lit("1.0")))
    triples = read(concepts, C.CONCEPT_COLUMNS)
    if items is not None:
        catalog = read(items, (C.ITEM_ID,), (C.DOMAIN, C.TITLE))
        items_source = str(items)
    else:
        named = inter.where(F.col(BAD_BYTES).isNull()).select(C.ITEM_ID)
        catalog = no_lines(
            named.unionByName(triples.where(F.col(BAD_BYTES).isNull()).select(C.ITEM_ID))
            .where(F.col(C.ITEM_ID).isNotNull())
            .distinct()
            .select(
                C.ITEM_ID,
                F.lit(None).cast("string").alias(C.DOMAIN),
                F.lit(None).cast("string").alias(C.TITLE),
            )
        )
        items_source = f"items named in {interactions} and {concepts}"
    files = [interactions, concepts] + ([items] if items is not None else [])
    return RawInputs(
        inter,
        catalog,
        triples,
        str(interactions),
        items_source,
        str(concepts),
        fingerprint=content_hash(files),
    )
