"""MUIRML: the self-covariant loss, the model, behaviour labels from events and ratings,
and the multi-behaviour relevance against the single-behaviour one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from training.behaviours import BehaviourPairs, behaviour_order, behaviour_pairs, behaviour_rows
from training.muirml import MUIRML, self_covariant_loss
from training.muirml_fit import MuirmlParams, fit, target_auc, target_pairs


def test_scl_is_pearsons_correlation_on_a_small_batch():
    rng = np.random.default_rng(0)
    r, d = rng.random(7), rng.random(7)
    expected = np.corrcoef(r, d)[0, 1]
    got = self_covariant_loss(torch.tensor(r), torch.tensor(d)).item()
    assert got == pytest.approx(expected, abs=1e-12)


def test_scl_is_minus_one_for_perfectly_anti_correlated_pairs():
    d = torch.tensor([0.5, 1.0, 2.0, 3.5, 4.0], dtype=torch.float64)
    assert self_covariant_loss(3.0 - 0.7 * d, d).item() == pytest.approx(-1.0, abs=1e-12)
    assert self_covariant_loss(2 * d, d).item() == pytest.approx(1.0, abs=1e-12)


def test_training_with_scl_makes_relevance_fall_with_distance():
    g = torch.Generator().manual_seed(0)
    users, items = torch.randn(256, 8, generator=g), torch.randn(256, 8, generator=g)
    labels = (torch.rand(256, 3, generator=g) < 0.3).float()
    model = MUIRML(dim=8, behaviours=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    _, before = model.loss(users, items, labels, 1.0, g)
    for _ in range(150):
        total, scl = model.loss(users, items, labels, 1.0, g)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert scl.item() < min(before.item(), -0.5)
    w = model.weights()
    assert w.sum().item() == pytest.approx(1.0) and (w > 0).all()
    assert model.relevance(users, items).shape == (256,)


def test_ratings_expand_into_behaviours_ordered_shallow_to_deep():
    rows = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b", "b"],
            "item_id": ["x", "y", "z", "x", "w"],
            "event": ["rating", "rating", "rating", "tag", "rating"],
            "weight": [5.0, 4.0, 2.5, 1.0, 4.5],
            "ts": [1, 2, 3, 4, 5],
        }
    )
    out = behaviour_rows(rows)
    got = set(zip(out["user_id"], out["item_id"], out["behaviour"], strict=True))
    assert got == {
        ("a", "x", "view"), ("a", "x", "like"), ("a", "x", "love"),
        ("a", "y", "view"), ("a", "y", "like"), ("a", "z", "view"),
        ("b", "x", "tag"), ("b", "w", "view"), ("b", "w", "like"),
    }  # fmt: skip
    assert behaviour_order({"purchase", "view", "zap", "like"}) == (
        "zap",
        "view",
        "like",
        "purchase",
    )
    # "w" has no embedding: its interaction is counted, not used
    pairs = behaviour_pairs(rows, np.array(["x", "y", "z"]))
    assert pairs.behaviours == ("view", "tag", "like", "love") and pairs.dropped == 2
    x_of_a = (pairs.user == 0) & (pairs.item == 0)
    assert pairs.labels[x_of_a].tolist() == [[1.0, 0.0, 1.0, 1.0]]


def test_multi_behaviour_relevance_learns_what_a_single_label_cannot():
    # purchases follow a second direction that engagement alone does not show
    rng = np.random.default_rng(0)
    n_users, n_items, d = 300, 400, 8
    users = rng.standard_normal((n_users, d)).astype(np.float32)
    items = rng.standard_normal((n_items, d)).astype(np.float32)
    user = np.repeat(np.arange(n_users), 20)
    item = rng.integers(n_items, size=len(user))
    bought = (users[user, :4] * items[item, :4]).sum(1) > 0.5
    labels = np.column_stack([np.ones(len(user)), bought]).astype(np.float32)
    part = rng.choice(3, size=len(user), p=[0.7, 0.1, 0.2]).astype(np.int8)
    pairs = BehaviourPairs(user, item, labels, part, ("view", "purchase"), n_users, 0)
    u, v = torch.from_numpy(users), torch.from_numpy(items)
    test = target_pairs(pairs, 2, n_items, seed=1)
    aucs = {}
    for single in (False, True):
        fitted = fit(pairs, u, v, MuirmlParams(epochs=6, single=single, distance="l2"))
        aucs[single] = target_auc(fitted, test, u, v)
    assert aucs[False]["auc_vs_shallow"] > aucs[True]["auc_vs_shallow"] + 0.1
    assert aucs[False]["auc"] > aucs[True]["auc"]
