"""RP3β, EASE and concept-kNN against their definitions, computed by hand on tiny graphs."""

from __future__ import annotations

import numpy as np
import torch

from training.baselines import concept_knn, ease, rp3, signals
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
    # β = 0 (the teacher's): the walk alone, exactly what a penalty of ones gives
    q = torch.arange(4)
    walk = rp3(s, 0.0)(q)
    np.testing.assert_allclose(walk.numpy(), p @ p, atol=1e-6)
    ones = torch.expm1(s.log_degree).clamp(min=1.0) ** -0.0
    assert torch.equal(walk, walk * ones)


def test_concept_knn_averages_the_concept_neighbours_eel_rows():
    # entities 0..3 as above; genres: 0 {a}, 1 {a, b}, 2 {b}, 3 {a}; entity 4 {a, b} has no EEL
    src = [a for a, b, _ in PAIRS] + [b for a, b, _ in PAIRS]
    dst = [b for a, b, _ in PAIRS] + [a for a, b, _ in PAIRS]
    genres = np.array([[0, 1, 1, 2, 3, 4, 4], [0, 0, 1, 1, 0, 0, 1]])
    kg = KGArrays(
        num_nodes={ENTITY: 5, "genre": 2},
        eel=np.array([src, dst], dtype=np.int64),
        eel_weight=np.array([w for *_, w in PAIRS] * 2, dtype=np.float32),
        concept_edges={("genre", "genre"): genres},
    )
    s = signals(kg, torch.empty(2, 0, dtype=torch.long))
    idf = np.log(5 / np.array([4, 3]))  # a is on 4 entities, b on 3
    c = np.zeros((5, 2))
    c[genres[0], genres[1]] = idf[genres[1]]
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    w = np.zeros((5, 5))
    for a, b, x in PAIRS:
        w[a, b] = w[b, a] = x
    rows = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    cos = c @ c.T
    cos[:, 4] = 0.0  # entity 4 has no EEL: never a neighbour
    np.fill_diagonal(cos, 0.0)  # nor is an entity its own
    weights = cos / cos.sum(axis=1, keepdims=True)
    degree = np.log1p((w > 0).sum(axis=1))
    expected = weights @ rows + 0.1 * degree[None, :]
    got = concept_knn(s, 0.1)(torch.arange(5)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
