"""Readers that turn input files into the three raw frames: interactions, items, concepts.

Readers only read and rename; :mod:`spark_jobs.validation` decides which rows are good.
CSV is read as text so that a malformed value reaches validation (and the quarantine
table) instead of becoming a silent null in Spark's type inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs import constants as C

NO_GENRE = "(no genres listed)"  # MovieLens's marker for a movie without genres


@dataclass(frozen=True)
class RawInputs:
    """Unvalidated input frames and where each came from (named in quarantine rows).

    The three sources are distinct, so that quarantined rows count against their input.
    """

    interactions: DataFrame
    items: DataFrame
    concepts: DataFrame
    interactions_source: str
    items_source: str
    concepts_source: str

    def __post_init__(self) -> None:
        if len({self.interactions_source, self.items_source, self.concepts_source}) != 3:
            raise ValueError(
                f"Input sources must be distinct to count rejections per input: {self}"
            )


def read_file(
    spark: SparkSession,
    path: str | Path,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
) -> DataFrame:
    """Read one CSV (header, all text) or Parquet file or folder and check its columns.

    Missing optional columns come back as nulls, so later stages see one schema.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Input file not found: {path}")
    if path.suffix.lower() == ".csv":
        df = spark.read.option("header", True).option("inferSchema", False).csv(str(path))
    elif path.suffix.lower() == ".parquet" or path.is_dir():
        df = spark.read.parquet(str(path))
    else:
        raise ValueError(f"Input file {path} has suffix '{path.suffix}'; expected .csv or .parquet")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(
            f"Input file {path} lacks column(s) {missing}; required {list(required)}, "
            f"found {df.columns}"
        )
    for col in optional:
        if col not in df.columns:
            df = df.withColumn(col, F.lit(None).cast("string"))
    return df.select(*required, *optional)


def read_movielens(spark: SparkSession, root: str | Path) -> RawInputs:
    """MovieLens (ml-latest-small layout): ratings, movie genres and free-text tags."""
    root = Path(root)
    ratings = read_file(spark, root / "ratings.csv", ("userId", "movieId", "rating", "timestamp"))
    movies = read_file(spark, root / "movies.csv", ("movieId", "title", "genres"))
    tags = read_file(spark, root / "tags.csv", ("userId", "movieId", "tag", "timestamp"))
    interactions = ratings.select(
        F.col("userId").alias(C.USER_ID),
        F.col("movieId").alias(C.ITEM_ID),
        F.lit("rating").alias(C.EVENT),
        F.col("rating").alias(C.WEIGHT),
        F.col("timestamp").alias(C.TS),
    )
    items = movies.select(
        F.col("movieId").alias(C.ITEM_ID), F.lit("movie").alias(C.DOMAIN), F.col(C.TITLE)
    )
    genres = movies.select(
        F.col("movieId").alias(C.ITEM_ID),
        F.lit("genre").alias(C.RELATION),
        F.explode(F.split(F.col("genres"), r"\|")).alias(C.CONCEPT),
    ).where(F.col(C.CONCEPT) != NO_GENRE)
    tag_triples = tags.select(
        F.col("movieId").alias(C.ITEM_ID),
        F.lit("tag").alias(C.RELATION),
        F.col("tag").alias(C.CONCEPT),
    )
    return RawInputs(
        interactions=interactions,
        items=items,
        concepts=genres.unionByName(tag_triples),
        interactions_source=str(root / "ratings.csv"),
        items_source=str(root / "movies.csv"),
        concepts_source=f"{root / 'movies.csv'}, {root / 'tags.csv'}",
    )


def read_generic(
    spark: SparkSession,
    interactions: str | Path,
    concepts: str | Path,
    items: str | Path | None = None,
) -> RawInputs:
    """Interactions ``user_id, item_id, ts[, event, weight]`` and concept triples.

    Without an items file the catalog is every item named in either file.
    """
    inter = read_file(spark, interactions, (C.USER_ID, C.ITEM_ID, C.TS), (C.EVENT, C.WEIGHT))
    inter = inter.withColumn(C.WEIGHT, F.coalesce(F.col(C.WEIGHT).cast("string"), F.lit("1.0")))
    triples = read_file(spark, concepts, C.CONCEPT_COLUMNS)
    if items is not None:
        catalog = read_file(spark, items, (C.ITEM_ID,), (C.DOMAIN, C.TITLE))
        items_source = str(items)
    else:
        catalog = (
            inter.select(C.ITEM_ID)
            .unionByName(triples.select(C.ITEM_ID))
            .where(F.col(C.ITEM_ID).isNotNull())
            .distinct()
            .select(
                C.ITEM_ID,
                F.lit(None).cast("string").alias(C.DOMAIN),
                F.lit(None).cast("string").alias(C.TITLE),
            )
        )
        items_source = f"items named in {interactions} and {concepts}"
    return RawInputs(inter, catalog, triples, str(interactions), items_source, str(concepts))
