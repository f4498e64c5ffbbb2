"""The two-domain generator, the hash-chosen holdout and the user-item edges, on Spark."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from spark_jobs import constants as C
from spark_jobs import domain_holdout as H
from spark_jobs.coengagement import CoengagementParams
from spark_jobs.graph import build_nodes
from spark_jobs.synthetic import (
    CROSS_DOMAINS,
    SyntheticSpec,
    content_key,
    generate,
    item_index,
    latent,
)
from spark_jobs.user_item_edges import ENTITY, USER, user_item_edges

SPEC = SyntheticSpec(
    n_users=400, n_items=300, n_interactions=8_000, cross_domain=True, domains=CROSS_DOMAINS,
    bad_row_share=0.0,
)  # fmt: skip


@pytest.fixture(scope="module")
def two_domains():
    return generate(SPEC)


def test_two_domain_generator_shares_users_and_keeps_creators_per_domain(two_domains):
    interactions, items, concepts = two_domains
    assert set(items[C.DOMAIN]) == set(CROSS_DOMAINS)
    domain = interactions.merge(items, on=C.ITEM_ID).groupby(C.USER_ID)[C.DOMAIN]
    has_live = domain.agg(lambda d: (d == "live").any())
    # some users have no live history at all, most of the others have both
    assert 0.15 < 1 - has_live.mean() < 0.5
    assert domain.agg(lambda d: d.nunique() == 2).mean() > 0.4
    creators = concepts[concepts[C.RELATION] == "creator"].merge(items, on=C.ITEM_ID)
    assert (creators[C.CONCEPT].str.split("_").str[0] == creators[C.DOMAIN]).all()
    genres = concepts[concepts[C.RELATION] == "genre"].merge(items, on=C.ITEM_ID)
    shared = genres.groupby(C.CONCEPT)[C.DOMAIN].nunique()
    assert (shared == 2).mean() > 0.9  # genres span both domains


def test_the_latent_draw_is_what_the_interactions_were_made_from(two_domains):
    interactions, _, _ = two_domains
    hidden = latent(SPEC)
    item = item_index(interactions[C.ITEM_ID].to_numpy())
    user = interactions[C.USER_ID].str.lstrip("u").astype(int).to_numpy()
    assert (hidden.popularity[item] > 0).all()  # never-engaged items stay so
    # a user's topics are those of their taste: far likelier than a topic drawn at random
    chosen = hidden.taste[user, hidden.item_topic[item]].mean()
    assert chosen > 3 * hidden.taste.mean()
    assert np.allclose(hidden.taste.sum(1), 1.0)


def test_holdout_marks_the_target_rows_of_cold_users_and_new_items(spark, two_domains):
    interactions, items, _ = two_domains
    rows = spark.createDataFrame(interactions)
    catalog = spark.createDataFrame(items)
    holdout = H.DomainHoldout("live", cold_user_share=0.3, new_item_share=0.2, seed=5)
    marked = H.marked(rows, catalog, holdout).toPandas()
    assert len(marked) == len(interactions)
    live = marked[C.DOMAIN] == "live"
    assert (marked[H.HELD_OUT] == (live & (marked[H.COLD_USER] | marked[H.NEW_ITEM]))).all()
    assert not marked.loc[~live, H.NEW_ITEM].any()
    per_user = marked.groupby(C.USER_ID)[H.COLD_USER].nunique()
    assert (per_user == 1).all()  # a user is cold or not, in every row
    share = marked.groupby(C.USER_ID)[H.COLD_USER].first().mean()
    assert 0.2 < share < 0.4
    # the same rows whatever the partitioning: the choice is a hash of the id
    again = H.marked(rows.repartition(7), catalog, holdout).toPandas()
    key = [C.USER_ID, C.ITEM_ID, C.TS]
    pd.testing.assert_frame_equal(
        marked.sort_values(key).reset_index(drop=True)[key + [H.HELD_OUT]],
        again.sort_values(key).reset_index(drop=True)[key + [H.HELD_OUT]],
    )
    train = H.training_interactions(rows, catalog, holdout)
    assert train.columns == rows.columns
    assert train.count() == len(interactions) - int(marked[H.HELD_OUT].sum())
    off = H.DomainHoldout("")
    assert H.training_interactions(rows, catalog, off) is rows


def test_items_without_a_domain_are_in_the_default_domain(spark):
    rows = spark.createDataFrame(
        [("u1", "a", 1.0, 1), ("u1", "b", 1.0, 2)], [C.USER_ID, C.ITEM_ID, C.WEIGHT, C.TS]
    )
    catalog = spark.createDataFrame(
        [("a", None), ("b", "live")], f"{C.ITEM_ID} string, {C.DOMAIN} string"
    )
    holdout = H.DomainHoldout("default", cold_user_share=0.999999, new_item_share=0.0)
    held = {r[C.ITEM_ID]: r[H.HELD_OUT] for r in H.marked(rows, catalog, holdout).collect()}
    assert held == {"a": True, "b": False}


def test_user_item_edges_number_users_and_cap_them(spark):
    rows = spark.createDataFrame(
        [("u2", "a", 1.0, 1), ("u2", "b", 1.0, 2), ("u2", "c", 1.0, 3), ("u1", "a", 1.0, 1)],
        [C.USER_ID, C.ITEM_ID, C.WEIGHT, C.TS],
    )
    catalog = spark.createDataFrame(
        [("a", "music", "A"), ("b", "live", "B"), ("c", "live", "C")],
        [C.ITEM_ID, C.DOMAIN, C.TITLE],
    )
    triples = spark.createDataFrame(
        [], f"{C.ITEM_ID} string, {C.RELATION} string, {C.CONCEPT} string"
    )
    nodes = build_nodes(catalog, triples)
    domains = H.item_domains(catalog, "default")
    params = CoengagementParams(max_items_per_user=2)
    edges = user_item_edges(rows, domains, nodes, params).toPandas()
    columns = [C.USER_ID, USER, C.ITEM_ID, ENTITY, C.DOMAIN]
    assert sorted(edges[columns].itertuples(index=False, name=None)) == [
        ("u1", 0, "a", 0, "music"), ("u2", 1, "b", 1, "live"), ("u2", 1, "c", 2, "live"),
    ]  # fmt: skip


def test_single_domain_specs_keep_their_batch_ids():
    """Lakes made before two-domain mode existed hold the demo's input under this batch id:
    the same spec must hash the same, or `make demo` would append it a second time."""
    assert content_key(SyntheticSpec()) == "562f9e8137836d138ddb"
    assert content_key(SPEC) != content_key(dataclasses.replace(SPEC, target_share=0.4))
