"""Walk factors: refined after a graph grew, exact zeros where no link, truncated, and the
rank chosen on validation."""

from __future__ import annotations

import torch

from training.baselines import signals
from training.kg_arrays import KGArrays
from training.spectral import (
    _only_linked,
    _walk_matrix,
    _walk_scale,
    aligned,
    refined_walk,
    truncated,
    walk_factors,
)
from training.synthetic_kg import community_kg
from training.walk_rank import TOLERANCE, candidate_ranks, choose_walk_rank


def top_k(vectors: torch.Tensor, k: int) -> list[set[int]]:
    scores = vectors @ vectors.t()
    scores.fill_diagonal_(-torch.inf)
    return [set(row.tolist()) for row in scores.topk(k).indices]


def test_refined_walk_matches_a_fresh_one_after_a_small_batch():
    g = torch.Generator().manual_seed(0)
    n, groups = 400, 8
    group = torch.randint(groups, (n,), generator=g)
    pairs = torch.randint(n, (2, 6000), generator=g)
    # mostly within a group, so that the walk has structure to find
    pairs = pairs[:, (group[pairs[0]] == group[pairs[1]]) | (torch.rand(6000, generator=g) < 0.1)]
    pairs = pairs[:, pairs[0] != pairs[1]]
    weights = torch.rand(pairs.shape[1], generator=g) + 0.5
    # the batch: 20 new entities with their links, and 50 more links between old ones
    old = (pairs < n - 20).all(0)
    old[old.nonzero().flatten()[:50]] = False
    trained = walk_factors(pairs[:, old], weights[old], n - 20, 16, seed=0)
    fresh = walk_factors(pairs, weights, n, 16, seed=0)
    refined = aligned(refined_walk(pairs, weights, n, trained, iterations=3), fresh)
    assert refined.shape == (n, 16) and torch.isfinite(refined).all()
    other = walk_factors(pairs, weights, n, 16, seed=1)  # a fresh one's own variation

    def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
        return sum(len(x & y) for x, y in zip(top_k(a, 10), top_k(b, 10), strict=True)) / (10 * n)

    stale = torch.zeros(n, 16)
    stale[: n - 20] = aligned(trained, fresh[: n - 20])  # the batch not taken into account
    # here: 0.74 against 0.57 for a second fresh one and 0.61 for the stale factors
    assert agreement(fresh, refined) >= agreement(fresh, other) - 0.05
    assert agreement(fresh, refined) > agreement(fresh, stale)
    # and it scales like a fresh one (mean squared row norm WALK_NORM²)
    torch.testing.assert_close(refined.pow(2).sum(1).mean(), fresh.pow(2).sum(1).mean())


def test_factors_match_an_exact_decomposition_where_the_spectrum_has_a_gap():
    """The subspace steps normalize by LU and orthonormalize once: at the gap after the
    8 communities' singular values (5.8 to 4.9, then 2.4) the rank-8 factors' dot
    products are the dense SVD's."""
    kg = community_kg(n_entities=400, communities=8, cold_share=0.1, degree=20, seed=1)
    pairs, weights = torch.from_numpy(kg.eel), torch.from_numpy(kg.eel_weight)
    _, s, vt = torch.linalg.svd(_walk_matrix(pairs, weights, 400).to_dense().double())
    exact = _walk_scale(_only_linked((vt[:8].t() * s[:8]).float(), pairs))
    out = walk_factors(pairs, weights, 400, 8, seed=0)
    gram, reference = out @ out.t(), exact @ exact.t()
    assert (gram - reference).norm() / reference.norm() < 1e-3


def test_entities_in_no_pair_get_exact_zero_rows():
    # every 7th of 300 entities is in no pair (new items): their rows must be exactly zero,
    # the readout's sign of "no walk factors of its own" (round-off left ~1e-6 there)
    g = torch.Generator().manual_seed(0)
    pairs = torch.randint(300, (2, 3000), generator=g)
    pairs = pairs[:, (pairs % 7 != 0).all(0) & (pairs[0] != pairs[1])]
    weights = torch.rand(pairs.shape[1], generator=g) + 0.5
    fresh = walk_factors(pairs, weights, 300, 32, seed=0)
    refined = refined_walk(pairs, weights, 300, fresh, iterations=2)
    alone = torch.arange(300) % 7 == 0
    for out in (fresh, refined):
        assert torch.equal(out[alone], torch.zeros(int(alone.sum()), 32))
        assert (out[~alone].abs().sum(1) > 1e-3).all()


def test_truncated_factors_are_a_smaller_rank():
    kg = community_kg(n_entities=400, communities=8, cold_share=0.0, degree=20, seed=1)
    pairs, weights = torch.from_numpy(kg.eel), torch.from_numpy(kg.eel_weight)
    small = walk_factors(pairs, weights, 400, 8, seed=0)
    cut = truncated(walk_factors(pairs, weights, 400, 32, seed=0), 8)
    assert cut.shape == (400, 8)
    torch.testing.assert_close(cut.pow(2).sum(1).mean(), small.pow(2).sum(1).mean())
    # the same leading subspace: the dot products agree
    dots = torch.stack([(cut @ cut.t()).flatten(), (small @ small.t()).flatten()])
    assert torch.corrcoef(dots)[0, 1] > 0.99


def ladder_inputs(kg: KGArrays) -> tuple[torch.Tensor, ...]:
    """Training EELs, their weights, held-out EELs (a tenth of the links, one direction)
    and the training graph's signals: :func:`choose_walk_rank`'s inputs."""
    pairs = torch.from_numpy(kg.eel)
    held = pairs[:, pairs[0] < pairs[1]][:, ::10]
    train = kg.without_eels(held.numpy())
    return torch.from_numpy(train.eel), torch.from_numpy(train.eel_weight), held, signals(kg, held)


def test_walk_rank_is_the_smallest_within_tolerance_of_the_best():
    kg = community_kg(n_entities=2100, communities=40, cold_share=0.0, degree=12, seed=0)
    walk, choice = choose_walk_rank(*ladder_inputs(kg), seed=0)
    assert candidate_ranks(2100) == (256, 512) and candidate_ranks(100) == (100,)
    assert set(choice.validation_map) == {256, 512} and walk.shape == (2100, choice.rank)
    best = max(choice.validation_map.values())
    assert choice.validation_map[choice.rank] >= (1 - TOLERANCE) * best
    smaller = [v for r, v in choice.validation_map.items() if r < choice.rank]
    assert all(v < (1 - TOLERANCE) * best for v in smaller)


def test_walk_rank_ladder_stops_where_a_step_up_does_not_pay():
    # three dense communities: rank 8 already holds the walk, so the ladder stops after 16
    # (no factorization at 32 or 64)
    kg = community_kg(n_entities=600, communities=3, cold_share=0.0, degree=30, seed=0)
    args = ladder_inputs(kg)
    walk, choice = choose_walk_rank(*args, seed=0, ranks=(8, 16, 32, 64))
    assert set(choice.validation_map) == {8, 16} and choice.rank == 8
    assert walk.shape == (600, 8)
    _, flat = choose_walk_rank(*args, seed=0, ranks=(8, 16))
    assert flat.validation_map == choice.validation_map
    # where a step up pays the ladder climbs on, and the rule holds over what it tried
    kg = community_kg(n_entities=600, communities=6, cold_share=0.0, degree=12, seed=0)
    args = ladder_inputs(kg)
    _, climbed = choose_walk_rank(*args, seed=0, ranks=(8, 16, 32, 64))
    assert max(climbed.validation_map) > 16
    best = max(climbed.validation_map.values())
    assert climbed.validation_map[climbed.rank] >= (1 - TOLERANCE) * best
