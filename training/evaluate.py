"""Ranking metrics and exact top-k retrieval (batched matrix products, no ANN).

Average precision at K for one query with relevant set R and ranked list r_1..r_K:

.. math::
    AP@K = \\frac{1}{\\min(|R|, K)} \\sum_{k=1}^{K} P@k \\cdot [r_k \\in R]

Queries with an empty R carry no information and are left out of the mean (their AP is
NaN). Ties in score are broken by the lower candidate id, so a ranking is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


def average_precision_at_k(ranked: Tensor, relevant: list[Tensor]) -> Tensor:
    """``(B,)`` AP@K of each row of ``ranked`` ``(B, K)`` against its relevant ids."""
    k = ranked.shape[1]
    out = torch.full((ranked.shape[0],), float("nan"))
    for row, (ids, rel) in enumerate(zip(ranked, relevant, strict=True)):
        if rel.numel() == 0:
            continue
        hits = torch.isin(ids, rel).float()
        precision = hits.cumsum(0) / torch.arange(1, k + 1)
        out[row] = float((precision * hits).sum() / min(rel.numel(), k))
    return out


def recall_at_k(ranked: Tensor, relevant: list[Tensor]) -> Tensor:
    """``(B,)`` share of each query's relevant ids found in its top K (NaN when none)."""
    out = torch.full((ranked.shape[0],), float("nan"))
    for row, (ids, rel) in enumerate(zip(ranked, relevant, strict=True)):
        if rel.numel():
            out[row] = float(torch.isin(rel, ids).float().mean())
    return out


@torch.no_grad()  # ranking only: a model's scores must not build an autograd graph
def top_k(
    scores: Callable[[Tensor], Tensor],
    queries: Tensor,
    k: int,
    exclude: list[Tensor],
    batch_size: int = 256,
) -> Tensor:
    """``(len(queries), k)`` candidate ids by descending score, ``exclude[i]`` removed.

    ``scores(q)`` returns the ``(len(q), N)`` score rows of a batch of queries.
    """
    out = []
    for start in range(0, len(queries), batch_size):
        batch = queries[start : start + batch_size]
        s = scores(batch).float().clone()
        for row, ids in enumerate(exclude[start : start + batch_size]):
            s[row, ids] = -torch.inf
        # a stable sort keeps equal scores in id order: lower id first
        out.append(torch.argsort(s, dim=1, descending=True, stable=True)[:, :k])
    return torch.cat(out)


@dataclass(frozen=True)
class RankingTask:
    """Queries, what counts as relevant for each, and what is not ranked (self, known links)."""

    queries: Tensor
    relevant: list[Tensor]
    exclude: list[Tensor]

    @classmethod
    def from_pairs(cls, held_out: Tensor, known: Tensor, num_entities: int) -> RankingTask:
        """Each entity with held-out links ranks every other; its ``known`` links are skipped."""
        both = torch.cat([held_out, held_out.flip(0)], dim=1)
        queries = torch.unique(both[0])
        relevant = _neighbours(both, num_entities)
        seen = _neighbours(known, num_entities)
        return cls(
            queries,
            [relevant[int(q)] for q in queries],
            [torch.cat([q.view(1), seen[int(q)]]) for q in queries],
        )

    def map_at_k(self, scores: Callable[[Tensor], Tensor], k: int = 10) -> float:
        ranked = top_k(scores, self.queries, k, self.exclude)
        return float(average_precision_at_k(ranked, self.relevant).nanmean())


def _neighbours(pairs: Tensor, n: int) -> list[Tensor]:
    order = torch.argsort(pairs[0], stable=True)
    src, dst = pairs[0][order], pairs[1][order]
    counts = torch.bincount(src, minlength=n).tolist()
    return list(torch.split(dst, counts))
