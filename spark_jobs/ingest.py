"""Validate raw inputs into the three clean tables and one quarantine frame."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_jobs import constants as C
from spark_jobs.readers import RawInputs
from spark_jobs.validation import check_catalog, check_concepts, check_interactions


@dataclass(frozen=True)
class Ingested:
    interactions: DataFrame
    catalog: DataFrame
    concepts: DataFrame
    quarantine: DataFrame


def ingest(raw: RawInputs, batch_id: str, known_items: DataFrame | None = None) -> Ingested:
    """Clean tables plus every rejected row with its source and reason.

    Interactions and concepts may name the input's items and ``known_items`` (the items
    already in the lake). The catalog's ``first_seen`` is the item's earliest clean
    interaction (null for items nobody engaged: the cold-start items).
    """
    catalog = check_catalog(raw.items, source=raw.items_source, batch_id=batch_id)
    good_items = catalog.good.persist()
    known = good_items.select(C.ITEM_ID)
    if known_items is not None:
        known = known.unionByName(known_items.select(C.ITEM_ID)).distinct()
    interactions = check_interactions(
        raw.interactions, known, source=raw.interactions_source, batch_id=batch_id
    )
    concepts = check_concepts(raw.concepts, known, source=raw.concepts_source, batch_id=batch_id)
    clean = interactions.good.persist()
    first_seen = clean.groupBy(C.ITEM_ID).agg(F.min(C.TS).alias(C.FIRST_SEEN))
    return Ingested(
        interactions=clean,
        catalog=good_items.join(first_seen, C.ITEM_ID, "left"),
        concepts=concepts.good,
        quarantine=catalog.bad.unionByName(interactions.bad).unionByName(concepts.bad),
    )


def merge_catalog(current: DataFrame, new: Ingested) -> DataFrame:
    """The lake's catalog after a batch: every item of either, the batch's domain and
    title where it lists the item, and the earliest ``first_seen`` of the two."""
    batch_first = new.interactions.groupBy(C.ITEM_ID).agg(F.min(C.TS).alias("_batch_first"))
    old = current.select(
        C.ITEM_ID,
        F.col(C.DOMAIN).alias("_old_domain"),
        F.col(C.TITLE).alias("_old_title"),
        F.col(C.FIRST_SEEN).alias("_old_first"),
    )
    return (
        old.join(new.catalog, C.ITEM_ID, "full")
        .join(batch_first, C.ITEM_ID, "left")
        .select(
            C.ITEM_ID,
            F.coalesce(C.DOMAIN, "_old_domain").alias(C.DOMAIN),
            F.coalesce(C.TITLE, "_old_title").alias(C.TITLE),
            F.least("_old_first", C.FIRST_SEEN, "_batch_first").alias(C.FIRST_SEEN),
        )
    )


def new_triples(current: DataFrame, new: DataFrame) -> DataFrame:
    """Triples of ``new`` that the lake's concepts do not hold yet."""
    return new.join(current.select(*C.CONCEPT_COLUMNS), list(C.CONCEPT_COLUMNS), "left_anti")
