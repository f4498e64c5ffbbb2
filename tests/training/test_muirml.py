"""MUIRML's self-covariant loss and its metric (issue 22, first part)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.muirml import MUIRML, self_covariant_loss


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
