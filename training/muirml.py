r"""Multi-relational user-item relevance metric learning (MUIRML, Baidu GMP-GR).

An MLP over a user vector ``u``, an item vector ``v`` and a small exploration vector
``ε`` predicts one probability per behaviour ``b`` (view, like, purchase, ...); the
relevance is their attention-weighted sum, the weights ``a = softmax(w)`` learned (and
re-tunable per scenario):

.. math::
    p_b(u, v) = \sigma\big(\mathrm{MLP}([u ; v ; u \odot v ; ε])_b\big), \qquad
    r(u, v) = \sum_b a_b\, p_b(u, v)

The self-covariant loss makes that learned metric rank like the embeddings' Euclidean
distance, so that a proximity graph built on the embeddings stays navigable under it: over
``n`` sampled pairs with relevances ``r`` and distances ``d``,

.. math::
    \mathrm{SCL} = \frac{\sum_k (r_k - \bar r)(d_k - \bar d)}
    {\sqrt{\sum_k (r_k - \bar r)^2}\,\sqrt{\sum_k (d_k - \bar d)^2}}

(Pearson's correlation, minimised toward −1). Total loss: the behaviours' binary
cross-entropies plus ``λ · SCL``.

The distance is Euclidean (the paper's, ``"l2"``: the one its graph is built on) or the
negative inner product (``"inner"``: the served score's order, which the
``relevance_model`` asset uses).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EPS = 1e-12
DISTANCES = {
    "l2": lambda u, v: (u - v).norm(dim=-1),
    "inner": lambda u, v: -(u * v).sum(-1),
}


def self_covariant_loss(relevance: Tensor, distance: Tensor) -> Tensor:
    """Pearson's correlation of ``relevance`` and ``distance`` ``(n,)`` (−1 is best)."""
    r = relevance - relevance.mean()
    d = distance - distance.mean()
    return (r * d).sum() / (r.norm() * d.norm()).clamp(min=EPS)


class MUIRML(nn.Module):
    """Shapes: users ``(B, D)``, items ``(B, D)`` -> behaviour logits ``(B, n_behaviours)``;
    :meth:`relevance` ``(B,)``."""

    def __init__(self, dim: int, behaviours: int, hidden: int = 64, explore: int = 4) -> None:
        super().__init__()
        self.explore = explore
        self.mlp = nn.Sequential(
            nn.Linear(3 * dim + explore, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, behaviours),
        )
        self.attention = nn.Parameter(torch.zeros(behaviours))

    def forward(self, users: Tensor, items: Tensor, explore: Tensor | None = None) -> Tensor:
        if explore is None:  # serving: no exploration noise
            explore = users.new_zeros(len(users), self.explore)
        return self.mlp(torch.cat([users, items, users * items, explore], -1))

    def weights(self) -> Tensor:
        return F.softmax(self.attention, 0)

    def relevance(self, users: Tensor, items: Tensor, explore: Tensor | None = None) -> Tensor:
        return torch.sigmoid(self.forward(users, items, explore)) @ self.weights()

    def loss(
        self,
        users: Tensor,
        items: Tensor,
        labels: Tensor,
        scl_weight: float,
        generator: torch.Generator,
        distance: str = "l2",
    ) -> tuple[Tensor, Tensor]:
        """Behaviour BCE over labelled pairs ``labels`` ``(B, n_behaviours)`` in {0, 1} and
        SCL over the same pairs; returns (total, SCL)."""
        explore = torch.randn(len(users), self.explore, generator=generator).to(users.device)
        logits = self.forward(users, items, explore)
        bce = F.binary_cross_entropy_with_logits(logits, labels)
        relevance = torch.sigmoid(logits) @ self.weights()
        scl = self_covariant_loss(relevance, DISTANCES[distance](users, items))
        return bce + scl_weight * scl, scl
