"""The end-to-end ranker's offline protocol: a temporal split of each user's interactions.

Each user's distinct items are ordered by first interaction time; the last
``test_share`` of them (at least one, for a user with at least :data:`MIN_ITEMS`) are
the test items, the ``valid_share`` before those validate (early stopping, ranker
choices), the rest train. Every model learns from the training rows alone; a test query is
the user's training and validation history, ranked against every item, that history left
out. A single global cut (everyone's interactions after one date) is the stricter protocol
but leaves ml-latest-small with 28 users who are active on both sides of any cut, so the
cut is per user (the common temporal leave-last-out protocol); other users' later
interactions can still shape the training graph, for every arm alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

MIN_ITEMS = 5  # a user with fewer distinct items only trains


@dataclass(frozen=True)
class E2EInputs:
    """Interactions and item concepts on dense codes (users ``0..U-1``, items ``0..N-1``,
    concepts ``0..C-1`` with a relation code each)."""

    user: np.ndarray
    item: np.ndarray
    ts: np.ndarray  # seconds, int64
    concept_item: np.ndarray
    concept: np.ndarray
    concept_relation: np.ndarray  # per concept
    relations: tuple[str, ...]
    item_ids: np.ndarray  # the item_id string of each item code

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def num_users(self) -> int:
        return int(self.user.max()) + 1 if len(self.user) else 0

    @property
    def num_concepts(self) -> int:
        return len(self.concept_relation)


def e2e_inputs(interactions: pd.DataFrame, concepts: pd.DataFrame) -> E2EInputs:
    """Codes for ``user_id, item_id, ts`` interactions (``ts``: timestamps, or epoch
    seconds) and ``item_id, relation, concept`` rows (every catalogue item with concepts
    gets a code, engaged or not)."""
    if interactions.empty:
        raise ValueError("The end-to-end ranker needs interactions; the table is empty")
    item_ids = pd.Index(
        pd.unique(pd.concat([interactions["item_id"], concepts["item_id"]]).astype(str))
    ).sort_values()
    users = pd.Index(pd.unique(interactions["user_id"].astype(str))).sort_values()
    key = concepts["relation"].astype(str) + "\x1f" + concepts["concept"].astype(str)
    concept_keys = pd.Index(pd.unique(key)).sort_values()
    relation_of = concept_keys.str.split("\x1f").str[0]
    relations = tuple(sorted(set(relation_of)))
    ts = interactions["ts"]
    if not pd.api.types.is_numeric_dtype(ts):  # timestamps; numbers are epoch seconds
        ts = pd.to_datetime(ts, utc=True).astype("datetime64[s, UTC]").astype("int64")
    return E2EInputs(
        user=users.get_indexer(interactions["user_id"].astype(str)),
        item=item_ids.get_indexer(interactions["item_id"].astype(str)),
        ts=ts.to_numpy(np.int64),
        concept_item=item_ids.get_indexer(concepts["item_id"].astype(str)),
        concept=concept_keys.get_indexer(key),
        concept_relation=pd.Index(relations).get_indexer(relation_of),
        relations=relations,
        item_ids=item_ids.to_numpy(str),
    )


@dataclass(frozen=True)
class UserTimeSplit:
    """Distinct (user, item) rows, each in one part: 0 train, 1 validation, 2 test."""

    user: np.ndarray
    item: np.ndarray
    part: np.ndarray
    num_users: int
    num_items: int

    def rows(self, *parts: int) -> tuple[np.ndarray, np.ndarray]:
        keep = np.isin(self.part, parts)
        return self.user[keep], self.item[keep]

    def histories(self, *parts: int) -> list[Tensor]:
        """Each user's items of ``parts``, in time order."""
        user, item = self.rows(*parts)
        order = np.argsort(user, kind="stable")
        cuts = np.cumsum(np.bincount(user, minlength=self.num_users))[:-1]
        return [torch.from_numpy(h) for h in np.split(item[order], cuts)]

    def queries(self, part: int) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Users with items in ``part``; each one's earlier history and its ``part`` items."""
        before = self.histories(*range(part))
        truth = self.histories(part)
        users = [u for u in range(self.num_users) if len(truth[u]) and len(before[u])]
        return (
            torch.tensor(users, dtype=torch.long),
            [before[u] for u in users],
            [truth[u] for u in users],
        )


def user_time_split(
    data: E2EInputs, test_share: float = 0.2, valid_share: float = 0.1
) -> UserTimeSplit:
    """Each user's distinct items by first time: the last ``test_share`` test, the
    ``valid_share`` before them validation (users with fewer than :data:`MIN_ITEMS` items
    only train)."""
    first = first_engagements(data.user, data.item, data.ts)
    part = temporal_parts(first, test_share, valid_share)
    return UserTimeSplit(
        first["u"].to_numpy(np.int64),
        first["i"].to_numpy(np.int64),
        part,
        data.num_users,
        data.num_items,
    )


def first_engagements(user: np.ndarray, item: np.ndarray, ts: np.ndarray) -> pd.DataFrame:
    """Distinct (user ``u``, item ``i``) pairs with their first time ``t``, each user's in
    time order."""
    rows = pd.DataFrame({"u": user, "i": item, "t": ts})
    first = rows.groupby(["u", "i"], sort=False)["t"].min().reset_index()
    return first.sort_values(["u", "t", "i"], kind="stable", ignore_index=True)


def temporal_parts(first: pd.DataFrame, test_share: float, valid_share: float) -> np.ndarray:
    """The part (0 train, 1 validation, 2 test) of each row of :func:`first_engagements`."""
    size = first.groupby("u")["i"].transform("size").to_numpy()
    position = first.groupby("u").cumcount().to_numpy()
    n_test = np.where(size >= MIN_ITEMS, np.maximum(1, np.floor(size * test_share)), 0)
    n_valid = np.where(size >= MIN_ITEMS, np.maximum(1, np.floor(size * valid_share)), 0)
    from_end = size - position
    part = np.where(from_end <= n_test, 2, np.where(from_end <= n_test + n_valid, 1, 0))
    return part.astype(np.int8)
