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


def ingest(raw: RawInputs, batch_id: str) -> Ingested:
    """Clean tables plus every rejected row with its source and reason.

    The catalog's ``first_seen`` is the item's earliest clean interaction (null for
    items nobody engaged: the cold-start items).
    """
    catalog = check_catalog(raw.items, source=raw.items_source, batch_id=batch_id)
    good_items = catalog.good.persist()
    interactions = check_interactions(
        raw.interactions, good_items, source=raw.interactions_source, batch_id=batch_id
    )
    concepts = check_concepts(
        raw.concepts, good_items, source=raw.concepts_source, batch_id=batch_id
    )
    clean = interactions.good.persist()
    first_seen = clean.groupBy(C.ITEM_ID).agg(F.min(C.TS).alias(C.FIRST_SEEN))
    return Ingested(
        interactions=clean,
        catalog=good_items.join(first_seen, C.ITEM_ID, "left"),
        concepts=concepts.good,
        quarantine=catalog.bad.unionByName(interactions.bad).unionByName(concepts.bad),
    )
