"""The distillation teacher: each entity's top-k neighbours by a no-learning scorer.

The scorer is RP3β with β = 0 on the training EELs (:func:`training.baselines.rp3`), two
steps of the random walk ``(P P)_{ij}`` with ``P = D^{-1} W``: the strongest no-learning
scorer of the comparison on MovieLens and the demo data. Each entity ``i`` keeps its ``k``
best candidates ``j ≠ i`` and their share of its top-k mass,

.. math::
    p_{ij} = \\frac{(P P)_{ij}}{\\sum_{j' \\in \\mathrm{top}_k(i)} (P P)_{ij'}},

the listwise target the trainer distils toward (:func:`training.trainer.distill_loss`).

A row costs a dense sweep of every entity and, before that, one partial product per
two-step path: ``Σ_{j ∈ N(i)} d_j``, which the hubs make large (at 400,000 entities, 0.5M
on average, with hubs linked to 120,000 entities). So the teacher covers a seeded sample
of at most :data:`MAX_ROWS` linked entities (every one, below that), in batches cut at
:data:`BATCH_CELLS` of that cost; the others' rows are padding, which the distillation
loss skips. At 400,000 entities every row in 1,024-row batches grew the process past
24 GB; 20,000 rows now take 225 s and 0.4 GB over the graph's own (2026-12-07).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from training.baselines import Signals, rp3


@dataclass(frozen=True)
class Teacher:
    ids: Tensor  # (N, k) graph-wide ids of each entity's top k; -1 pads short rows
    probs: Tensor  # (N, k) their distribution (rows sum to 1; 0 for padding)


MAX_ROWS = 20_000  # entities with a target: every linked one of the lakes in docs/quality.md
BATCH_CELLS = 2**26  # a batch's dense scores and two-step paths
BATCH_ROWS = 1024


def taught_entities(log_degree: Tensor, max_rows: int, seed: int) -> Tensor:
    """The linked entities (ascending) that get a target: all, or a seeded sample of
    ``max_rows``."""
    linked = (log_degree > 0).nonzero().squeeze(1)
    if len(linked) <= max_rows:
        return linked
    gen = torch.Generator().manual_seed(seed)
    return linked[torch.randperm(len(linked), generator=gen)[:max_rows]].sort().values


def row_costs(s: Signals) -> Tensor:
    """Each entity's cells in a batch: its dense row and its two-step paths ``Σ_{j ∈ N(i)}
    d_j``."""
    degree = torch.expm1(s.log_degree)
    rows, cols = s.eel.indices()
    paths = torch.zeros_like(degree).index_add_(0, rows, degree[cols])
    return paths + degree.numel()


def batches(costs: list[float], budget: float, max_rows: int) -> Iterator[slice]:
    """Consecutive runs of rows whose costs sum to at most ``budget`` (a costlier row
    alone), of at most ``max_rows`` rows."""
    start, total = 0, 0.0
    for i, cost in enumerate(costs):
        if i > start and (total + cost > budget or i - start == max_rows):
            yield slice(start, i)
            start, total = i, 0.0
        total += cost
    if start < len(costs):
        yield slice(start, len(costs))


def walk_teacher(
    s: Signals, k: int, max_rows: int = MAX_ROWS, batch_cells: int = BATCH_CELLS, seed: int = 0
) -> Teacher:
    """:class:`Teacher` of the two-step walk over the training graph ``s``, for
    :func:`taught_entities`."""
    n = s.log_degree.numel()
    k = min(k, max(n - 1, 0))
    ids = torch.full((n, k), -1, dtype=torch.long)
    probs = torch.zeros(n, k)
    scores_of = rp3(s, 0.0)
    taught = taught_entities(s.log_degree, max_rows, seed)
    for batch in batches(row_costs(s)[taught].tolist(), batch_cells, BATCH_ROWS):
        q = taught[batch]
        scores = scores_of(q)
        scores[torch.arange(len(q)), q] = 0.0  # never its own neighbour
        top, at = scores.topk(k, dim=1)
        found = top > 0
        ids[q] = torch.where(found, at, -1)
        probs[q] = torch.where(found, top / top.sum(1, keepdim=True).clamp(min=1e-12), 0.0)
    return Teacher(ids, probs)
