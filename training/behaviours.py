"""Behaviour labels for MUIRML: which kinds of engagement each (user, item) pair had.

Events keep their names (view, click, like, add_to_cart, purchase...), ordered shallow to
deep by :data:`DEPTH` (an event outside it counts as shallower than all of them). A numeric
rating (event ``rating``, how MovieLens is read) is a view, also a like from
:data:`LIKE_SHARE` of the highest rating seen up (4 of 5), and also a love at the highest
rating. The deepest behaviour present is the one a scenario is tuned for and evaluated on:
held-out purchases on the synthetic data, held-out loves on MovieLens.

Pairs are split in time per user as the end-to-end ranker's are
(:func:`training.time_split.temporal_parts`); a pair's labels are every behaviour it ever
had, and its time the first of them. A user is their training history: the mean of its
items' embeddings (:func:`user_vectors`), which is how the service makes one too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.time_split import first_engagements, temporal_parts

DEPTH = ("view", "click", "tag", "like", "add_to_cart", "love", "purchase")
RATING = "rating"
LIKE_SHARE = 0.8


@dataclass(frozen=True)
class BehaviourPairs:
    """Distinct (user, item) pairs: users on dense codes, items on embedding rows."""

    user: np.ndarray
    item: np.ndarray
    labels: np.ndarray  # (n, behaviours) in {0, 1}
    part: np.ndarray  # 0 train, 1 validation, 2 test
    behaviours: tuple[str, ...]  # shallow to deep
    num_users: int
    dropped: int  # interactions on items without an embedding

    @property
    def target(self) -> str:
        return self.behaviours[-1]

    def __len__(self) -> int:
        return len(self.user)


def behaviour_rows(interactions: pd.DataFrame) -> pd.DataFrame:
    """``user_id, item_id, behaviour, ts`` rows of ``user_id, item_id, event, weight, ts``
    interactions (ratings expanded into the behaviours they stand for)."""
    rated = interactions["event"].astype(str) == RATING
    rest = interactions.loc[~rated].assign(behaviour=lambda d: d["event"].astype(str))
    ratings = interactions.loc[rated]
    weight = pd.to_numeric(ratings["weight"], errors="coerce")
    top = float(weight.max()) if len(weight) else 0.0
    parts = [rest, ratings.assign(behaviour="view")]
    parts.append(ratings.loc[weight >= LIKE_SHARE * top].assign(behaviour="like"))
    parts.append(ratings.loc[weight >= top].assign(behaviour="love"))
    return pd.concat(parts, ignore_index=True)[["user_id", "item_id", "behaviour", "ts"]]


def behaviour_order(names: set[str]) -> tuple[str, ...]:
    """``names`` shallow to deep: unknown ones first (by name), then :data:`DEPTH`'s order."""
    return tuple(sorted(names - set(DEPTH))) + tuple(d for d in DEPTH if d in names)


def behaviour_pairs(
    interactions: pd.DataFrame,
    item_ids: np.ndarray,
    test_share: float = 0.2,
    valid_share: float = 0.1,
) -> BehaviourPairs:
    """Labelled pairs of ``interactions`` on items with an embedding (``item_ids``: the
    item id of each embedding row)."""
    rows = behaviour_rows(interactions)
    if rows.empty:
        raise ValueError("MUIRML needs interactions; the table is empty")
    item = pd.Index(np.asarray(item_ids).astype(str)).get_indexer(rows["item_id"].astype(str))
    dropped = int((item < 0).sum())
    rows, item = rows.loc[item >= 0], item[item >= 0]
    users = pd.Index(pd.unique(rows["user_id"].astype(str))).sort_values()
    user = users.get_indexer(rows["user_id"].astype(str))
    behaviours = behaviour_order(set(rows["behaviour"]))
    code = pd.Index(behaviours).get_indexer(rows["behaviour"])
    ts = rows["ts"]
    if not pd.api.types.is_numeric_dtype(ts):  # timestamps; numbers are epoch seconds
        ts = pd.to_datetime(ts, utc=True).astype("datetime64[s, UTC]").astype("int64")
    first = first_engagements(user, item, ts.to_numpy(np.int64))
    key = pd.MultiIndex.from_arrays([user, item])
    labels = np.zeros((len(first), len(behaviours)), dtype=np.float32)
    at = pd.MultiIndex.from_arrays([first["u"], first["i"]]).get_indexer(key)
    labels[at, code] = 1.0
    return BehaviourPairs(
        first["u"].to_numpy(np.int64),
        first["i"].to_numpy(np.int64),
        labels,
        temporal_parts(first, test_share, valid_share),
        behaviours,
        len(users),
        dropped,
    )


def user_vectors(pairs: BehaviourPairs, embeddings: np.ndarray) -> np.ndarray:
    """Each user's training history as one vector ``(users, d)``: the mean of its items'
    embeddings (zeros for a user with none)."""
    train = pairs.part == 0
    sums = np.zeros((pairs.num_users, embeddings.shape[1]), dtype=np.float64)
    np.add.at(sums, pairs.user[train], embeddings[pairs.item[train]])
    counts = np.bincount(pairs.user[train], minlength=pairs.num_users)
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
