"""The distillation teacher: each entity's top-k neighbours by a no-learning scorer.

The scorer is RP3β with β = 0 on the training EELs (:func:`training.baselines.rp3`), two
steps of the random walk ``(P P)_{ij}`` with ``P = D^{-1} W``: the strongest no-learning
scorer of the comparison on MovieLens and the demo data. Each entity ``i`` keeps its ``k``
best candidates ``j ≠ i`` and their share of its top-k mass,

.. math::
    p_{ij} = \\frac{(P P)_{ij}}{\\sum_{j' \\in \\mathrm{top}_k(i)} (P P)_{ij'}},

the listwise target the trainer distils toward (:func:`training.trainer.distill_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from training.baselines import Signals, rp3


@dataclass(frozen=True)
class Teacher:
    ids: Tensor  # (N, k) graph-wide ids of each entity's top k; -1 pads short rows
    probs: Tensor  # (N, k) their distribution (rows sum to 1; 0 for padding)


def walk_teacher(s: Signals, k: int, batch_size: int = 1024) -> Teacher:
    """:class:`Teacher` of the two-step walk over the training graph ``s``."""
    n = s.log_degree.numel()
    k = min(k, max(n - 1, 0))
    scores_of = rp3(s, 0.0)
    ids = torch.full((n, k), -1, dtype=torch.long)
    probs = torch.zeros(n, k)
    for start in range(0, n, batch_size):
        q = torch.arange(start, min(start + batch_size, n))
        scores = scores_of(q)
        scores[torch.arange(len(q)), q] = 0.0  # never its own neighbour
        top, at = scores.topk(k, dim=1)
        found = top > 0
        ids[q] = torch.where(found, at, -1)
        probs[q] = torch.where(found, top / top.sum(1, keepdim=True).clamp(min=1e-12), 0.0)
    return Teacher(ids, probs)
