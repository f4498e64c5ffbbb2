"""A seeded synthetic catalog whose co-engagement follows its semantics.

Each item belongs to one latent topic; its concepts (genre, tag, creator) are drawn
mostly from concepts of that topic. Users prefer a few topics (a sparse Dirichlet)
and engage items of their topics in proportion to a power-law popularity. A share of
items is never engaged: they have concepts only, the cold-start case that the
graph embeddings exist for. Deeper engagement (like, purchase) is likelier on a user's
favourite topics, so the kinds of engagement carry signal of their own. A small share of
deliberately broken rows exercises the quarantine path.

Two-domain mode (``cross_domain``) is the cross-domain cold-start case (a music domain and
a live-streaming domain sharing users): each item's domain is drawn independently of its
topic, so a taste carries across domains; ``target_share`` of the items and of each
user's interactions are in the second (target) domain; ``no_target_user_share`` of the
users have no target history at all; concepts of a ``per_domain`` relation (creators)
belong to one domain, the others (genres, tags) are shared.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs import constants as C
from spark_jobs.csv_lines import BAD_BYTES, LINE
from spark_jobs.readers import RawInputs

DAY = 86_400
EPOCH_START = 1_700_000_000  # 2023-11-14, keeps timestamps realistic
EVENTS = (("view", 1.0, 0.80), ("like", 3.0, 0.15), ("purchase", 5.0, 0.05))
BAD_ROW_KINDS = ("missing_user", "bad_ts", "negative_weight", "nan_weight", "unknown_item")


@dataclass(frozen=True)
class RelationSpec:
    name: str
    n_concepts: int
    min_per_item: int
    max_per_item: int
    per_domain: bool = False  # two-domain mode: a concept of this relation has one domain


DEFAULT_RELATIONS = (
    RelationSpec("genre", 24, 1, 3),
    RelationSpec("tag", 300, 2, 6),
    RelationSpec("creator", 500, 1, 1, per_domain=True),
)
CROSS_DOMAINS = ("music", "live")
TASTE_CONCENTRATION = 0.2  # the Dirichlet of users' tastes over topics: a few topics each


@dataclass(frozen=True)
class SyntheticSpec:
    n_users: int = 2_000
    n_items: int = 4_000
    n_interactions: int = 100_000
    n_topics: int = 12
    domains: tuple[str, ...] = ("movie", "series")
    relations: tuple[RelationSpec, ...] = DEFAULT_RELATIONS
    popularity_exponent: float = 1.0
    cold_item_share: float = 0.15
    in_topic_share: float = 0.85  # share of an item's concepts, and of a user's picks, on-topic
    days: int = 180
    bad_row_share: float = 0.001
    seed: int = 7
    cross_domain: bool = False  # two domains sharing users (``domains`` are source, target)
    target_share: float = 0.3  # two-domain mode: share of items and of interactions in the target
    no_target_user_share: float = 0.3  # two-domain mode: users with no target history


@dataclass(frozen=True)
class Latent:
    """What the generator draws before any interaction and never writes: the truth that
    the data is made from, for measuring how much of it a model can recover."""

    item_topic: np.ndarray  # (n_items,)
    popularity: np.ndarray  # (n_items,) an item's weight within its topic, 0 if never engaged
    taste: np.ndarray  # (n_users, n_topics) each user's topic distribution

    def log_popularity(self, at: np.ndarray) -> np.ndarray:
        """The log popularity of the items at ``at``, never-engaged ones far below every
        other but finite (rankings add and subtract it)."""
        return np.log(np.maximum(self.popularity[at], 1e-300))


def item_index(item_ids: np.ndarray) -> np.ndarray:
    """Positions in :class:`Latent`'s arrays of the generator's item ids (``i{i:07d}``)."""
    return np.char.lstrip(item_ids.astype(str), "i").astype(np.int64)


def _draw_latent(spec: SyntheticSpec, rng: np.random.Generator) -> Latent:
    item_topic = rng.integers(spec.n_topics, size=spec.n_items)
    popularity = (rng.permutation(spec.n_items) + 1.0) ** -spec.popularity_exponent
    cold = rng.choice(spec.n_items, size=int(spec.cold_item_share * spec.n_items), replace=False)
    popularity[cold] = 0.0
    taste = rng.dirichlet(np.full(spec.n_topics, TASTE_CONCENTRATION), size=spec.n_users)
    return Latent(item_topic, popularity, taste)


def latent(spec: SyntheticSpec) -> Latent:
    """The hidden topics, popularity and tastes behind :func:`generate`'s output for
    ``spec`` (item ``i`` is ``i{i:07d}``, user ``u`` is ``u{u:06d}``)."""
    return _draw_latent(spec, np.random.default_rng(spec.seed))


def _concepts(
    rng: np.random.Generator, item_topic: np.ndarray, rel: RelationSpec, k: int, in_topic: float
) -> tuple[np.ndarray, np.ndarray]:
    n_items = len(item_topic)
    concept_topic = rng.permutation(np.arange(rel.n_concepts) % k)
    by_topic = np.argsort(concept_topic, kind="stable")
    counts = np.bincount(concept_topic, minlength=k)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    per_item = rng.integers(rel.min_per_item, rel.max_per_item + 1, size=n_items)
    item = np.repeat(np.arange(n_items), per_item)
    topic = item_topic[item]
    on_topic = (rng.random(len(item)) < in_topic) & (counts[topic] > 0)
    pick = np.where(
        on_topic,
        by_topic[
            offsets[topic] + (rng.random(len(item)) * np.maximum(counts[topic], 1)).astype(int)
        ],
        rng.integers(rel.n_concepts, size=len(item)),
    )
    triples = pd.DataFrame({"i": item, "c": pick}).drop_duplicates()
    return triples["i"].to_numpy(), np.array(
        [f"{rel.name}_{c:04d}" for c in range(rel.n_concepts)]
    )[triples["c"].to_numpy()]


def _events(rng: np.random.Generator, affinity: np.ndarray) -> np.ndarray:
    """Each interaction's event (an index into :data:`EVENTS`): deeper engagement is likelier
    the more the user likes the item's topic. The odds of each event beyond a view scale
    with the affinity relative to its mean (squared for the deepest), so the shares stay
    near :data:`EVENTS`' overall while purchases gather on a user's favourite topics."""
    relative = affinity / max(float(affinity.mean()), 1e-12)
    shares = np.array([s for *_, s in EVENTS])
    lift = np.stack([relative**d for d in range(1, len(EVENTS))], axis=1)
    deep = shares[1:] * lift / lift.mean(axis=0)
    deep *= np.minimum(1.0, 0.95 / deep.sum(axis=1, keepdims=True))  # a view stays possible
    cdf = np.cumsum(np.column_stack([1.0 - deep.sum(axis=1), deep]), axis=1)
    return (rng.random(len(affinity))[:, None] > cdf[:, :-1]).sum(axis=1)


def _sample_items(
    rng: np.random.Generator, group: np.ndarray, item_group: np.ndarray, popularity: np.ndarray
) -> np.ndarray:
    """For each interaction's group (a topic, or a topic and domain), an item of that group
    drawn by popularity."""
    out = np.empty(len(group), dtype=np.int64)
    warm = popularity > 0
    for t in np.unique(group):
        rows = np.flatnonzero(group == t)
        pool = np.flatnonzero((item_group == t) & warm)
        if len(pool) == 0:
            pool = np.flatnonzero(warm)
        cdf = np.cumsum(popularity[pool])
        out[rows] = pool[
            np.searchsorted(cdf, rng.random(len(rows)) * cdf[-1], side="right").clip(
                max=len(pool) - 1
            )
        ]
    return out


def generate(spec: SyntheticSpec) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Interactions, items and concept triples as pandas frames (all ids are strings)."""
    if spec.n_items < 2 or spec.n_users < 1 or spec.n_interactions < 1:
        raise ValueError(
            f"Synthetic spec needs n_items >= 2, n_users >= 1, n_interactions >= 1: {spec}"
        )
    for name in ("cold_item_share", "target_share", "no_target_user_share"):
        if not 0 <= getattr(spec, name) < 1:
            raise ValueError(f"{name} must be in [0, 1), got {getattr(spec, name)}")
    if spec.cross_domain and len(spec.domains) != 2:
        raise ValueError(f"cross_domain needs two domains (source, target), got {spec.domains}")
    rng = np.random.default_rng(spec.seed)
    k = spec.n_topics
    item_ids = np.array([f"i{i:07d}" for i in range(spec.n_items)])
    hidden = _draw_latent(spec, rng)
    item_topic, popularity, taste = hidden.item_topic, hidden.popularity, hidden.taste
    activity = rng.pareto(1.5, size=spec.n_users) + 1.0
    user = rng.choice(spec.n_users, size=spec.n_interactions, p=activity / activity.sum())
    topic = (np.cumsum(taste, axis=1)[user] < rng.random((spec.n_interactions, 1))).sum(axis=1)
    off_topic = rng.random(spec.n_interactions) > spec.in_topic_share
    topic[off_topic] = rng.integers(k, size=int(off_topic.sum()))
    topic = np.minimum(topic, k - 1)
    if spec.cross_domain:
        item_domain = (rng.random(spec.n_items) < spec.target_share).astype(np.int64)
        no_target = rng.random(spec.n_users) < spec.no_target_user_share
        domain = ((rng.random(spec.n_interactions) < spec.target_share) & ~no_target[user]).astype(
            np.int64
        )
        item = _sample_items(rng, topic * 2 + domain, item_topic * 2 + item_domain, popularity)
    else:
        item_domain = item_topic % len(spec.domains)
        item = _sample_items(rng, topic, item_topic, popularity)

    start = rng.random(spec.n_users) * spec.days * DAY
    ts = EPOCH_START + (start[user] + rng.exponential(10 * DAY, size=spec.n_interactions)).astype(
        np.int64
    )
    names, weights, _ = zip(*EVENTS, strict=True)
    event = _events(rng, taste[user, item_topic[item]])
    interactions = pd.DataFrame(
        {
            C.USER_ID: np.char.add("u", np.char.zfill(user.astype(str), 6)).astype(object),
            C.ITEM_ID: item_ids[item].astype(object),
            C.EVENT: np.array(names, dtype=object)[event],
            C.WEIGHT: np.array(weights)[event],
            C.TS: ts.astype(str).astype(object),
        }
    )
    _break_rows(rng, interactions, spec.bad_row_share)

    domain_names = np.array(spec.domains, dtype=object)[item_domain]
    items = pd.DataFrame(
        {
            C.ITEM_ID: item_ids.astype(object),
            C.DOMAIN: domain_names,
            C.TITLE: [f"{d} {i}" for i, d in enumerate(domain_names)],
        }
    )
    frames = []
    for rel in spec.relations:
        idx, concept = _concepts(rng, item_topic, rel, k, spec.in_topic_share)
        if spec.cross_domain and rel.per_domain:
            concept = np.char.add(np.char.add(domain_names[idx].astype(str), "_"), concept)
        frames.append(
            pd.DataFrame({C.ITEM_ID: item_ids[idx], C.RELATION: rel.name, C.CONCEPT: concept})
        )
    return interactions, items, pd.concat(frames, ignore_index=True)


def _break_rows(rng: np.random.Generator, df: pd.DataFrame, share: float) -> None:
    """Corrupt ``share`` of the rows in place, cycling through the kinds validation rejects."""
    rows = rng.choice(len(df), size=int(round(share * len(df))), replace=False)
    for n, row in enumerate(rows):
        kind = BAD_ROW_KINDS[n % len(BAD_ROW_KINDS)]
        if kind == "missing_user":
            df.at[row, C.USER_ID] = None
        elif kind == "bad_ts":
            df.at[row, C.TS] = "not-a-time"
        elif kind == "negative_weight":
            df.at[row, C.WEIGHT] = -1.0
        elif kind == "nan_weight":
            df.at[row, C.WEIGHT] = float("nan")
        else:
            df.at[row, C.ITEM_ID] = "no-such-item"


TWO_DOMAIN_FIELDS = ("cross_domain", "target_share", "no_target_user_share")


def content_key(spec: SyntheticSpec) -> str:
    """A hash of what the generator's output depends on: it is deterministic, so its spec
    identifies the content (and so the batch id that append-once ingest keys on). Outside
    two-domain mode the two-domain fields change nothing and are left out, so a
    single-domain spec hashes as it did before they existed and a lake made then is not
    appended to a second time."""
    values = dataclasses.astuple(spec)
    if not spec.cross_domain:
        names = [f.name for f in dataclasses.fields(spec)]
        values = tuple(
            tuple(r[:4] for r in value) if name == "relations" else value  # without per_domain
            for name, value in zip(names, values, strict=True)
            if name not in TWO_DOMAIN_FIELDS
        )
    return hashlib.sha256(repr(values).encode()).hexdigest()[:20]


def synthetic_inputs(spark: SparkSession, spec: SyntheticSpec) -> RawInputs:
    interactions, items, concepts = generate(spec)
    source = f"synthetic(seed={spec.seed})"
    spec_hash = content_key(spec)

    def frame(df: pd.DataFrame) -> DataFrame:
        rows = df.assign(**{LINE: np.arange(1, len(df) + 1), BAD_BYTES: None})
        return spark.createDataFrame(rows).withColumn(BAD_BYTES, F.col(BAD_BYTES).cast("string"))

    return RawInputs(
        interactions=frame(interactions),
        items=frame(items),
        concepts=frame(concepts),
        interactions_source=f"{source}/interactions",
        items_source=f"{source}/items",
        concepts_source=f"{source}/concepts",
        fingerprint=f"synthetic-{spec_hash}",
    )
