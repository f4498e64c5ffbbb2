"""The walk factors' rank, chosen on validation.

Low-rank walk factors lose the top of the two-step walk's ranking: on ml-latest-small's
test split the walk factors alone score MAP@10 0.198 at rank 256, 0.221 at 512, 0.242 at
1024 and 0.244 at 2048, against 0.241 for the exact walk (RP3β, β = 0). Where that rank
stops paying depends on the graph, so it is chosen per run, up the ladder of candidate
ranks: a factorization at the next rank, whose leading columns are the smaller ranks'
factors, each rank scored on the validation EELs (with the popularity prior's weight from
a small grid); the rank is the smallest within :data:`TOLERANCE` of the best, and the
ladder stops where a step up did not beat the rank below by more than that. One
factorization at the largest rank was most of the shared inputs' time at 40,000 entities,
where 256 was chosen (a randomized SVD's QR steps grow with the rank squared).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from training.baselines import Signals, best_of, embedding_scores, popularity
from training.spectral import truncated, walk_factors
from training.validation import held_out_task

AUTO = -1  # TrainConfig.walk_rank: chosen here
WALK_RANKS = (256, 512, 1024)
TOLERANCE = 0.01  # relative: a larger rank must beat the smaller by more than 1% to be kept
PRIOR_GRID = (0.0, 0.1, 0.3, 1.0)


@dataclass(frozen=True)
class RankChoice:
    rank: int
    validation_map: dict[int, float] = field(default_factory=dict)  # rank -> MAP@10


def candidate_ranks(num_entities: int) -> tuple[int, ...]:
    """:data:`WALK_RANKS` up to a quarter of the entities (at least the smallest, capped by
    the entities: a tiny graph gets one candidate)."""
    fitting = tuple(r for r in WALK_RANKS if r <= num_entities // 4)
    return fitting or (min(WALK_RANKS[0], num_entities),)


def choose_walk_rank(
    pairs: Tensor,
    weights: Tensor,
    held_out: Tensor,
    s: Signals,
    seed: int,
    k: int = 10,
    ranks: tuple[int, ...] | None = None,
) -> tuple[Tensor, RankChoice]:
    """The walk factors of training EELs ``pairs`` at the chosen rank, and the choice.
    ``held_out`` ``(2, V)`` are the validation EELs, ``s`` the signals of the graph
    without them (its EELs are the known links a query does not rank); ``ranks``: the
    ladder, ascending (default :func:`candidate_ranks`)."""
    n = s.log_degree.numel()
    ranks = candidate_ranks(n) if ranks is None else ranks
    if len(ranks) == 1 or held_out.shape[1] == 0:
        return walk_factors(pairs, weights, n, ranks[-1], seed), RankChoice(ranks[-1])
    task = held_out_task(held_out, s, seed)
    grid = [(1.0, w) for w in PRIOR_GRID]
    scores: dict[int, float] = {}
    for step in ranks[1:]:
        full = walk_factors(pairs, weights, n, step, seed)
        for rank in (r for r in ranks if r <= step and r not in scores):
            parts = [embedding_scores(truncated(full, rank)), popularity(s)]
            scores[rank] = best_of(grid, task.map_at_k_weighted(parts, grid, k))[1]
        best = max(scores.values())
        rank = min(r for r in scores if scores[r] >= (1 - TOLERANCE) * best)
        if rank < step:  # the step up did not pay: no larger one is tried
            break
    return truncated(full, rank), RankChoice(rank, scores)
