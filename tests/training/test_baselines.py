"""RP3β and EASE against their definitions, computed by hand on a 4-entity graph."""

from __future__ import annotations

import numpy as np
import torch

from training.baselines import ease, rp3, signals
from training.kg_arrays import ENTITY, KGArrays

# a path 0-1-2-3 and the chord 0-2, with weights
PAIRS = [(0, 1, 1.0), (1, 2, 2.0), (2, 3, 1.0), (0, 2, 3.0)]


def four_entities():
    src = [a for a, b, _ in PAIRS] + [b for a, b, _ in PAIRS]
    dst = [b for a, b, _ in PAIRS] + [a for a, b, _ in PAIRS]
    weight = [w for *_, w in PAIRS] * 2
    kg = KGArrays(
        num_nodes={ENTITY: 4, "genre": 1},
        eel=np.array([src, dst], dtype=np.int64),
        eel_weight=np.array(weight, dtype=np.float32),
        concept_edges={("genre", "genre"): np.array([[0, 1, 2, 3], [0, 0, 0, 0]])},
    )
    w = np.zeros((4, 4))
    for a, b, x in PAIRS:
        w[a, b] = w[b, a] = x
    return signals(kg, torch.empty(2, 0, dtype=torch.long)), w


def test_ease_equals_its_closed_form():
    s, w = four_entities()
    a = w / np.linalg.norm(w, axis=1, keepdims=True)  # rows L2-normalised, as ItemCF's
    g = a.T @ a
    lam = 3.0 * np.diag(g).mean()
    p = np.linalg.inv(g + lam * np.eye(4))
    b = np.eye(4) - p / np.diag(p)[None, :]
    assert np.allclose(np.diag(b), 0)
    expected = a @ b
    got = ease(s, 3.0)(torch.arange(4)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_rp3_is_a_two_step_walk_over_popularity():
    s, w = four_entities()
    p = w / w.sum(axis=1, keepdims=True)
    degree = (w > 0).sum(axis=0)
    expected = (p @ p) / degree[None, :] ** 0.5
    got = rp3(s, 0.5)(torch.arange(4)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
