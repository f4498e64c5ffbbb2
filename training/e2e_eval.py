"""User-to-item evaluation of the end-to-end arms and the no-learning peers.

Each query is a user's history (:meth:`~training.time_split.UserTimeSplit.queries`); the
scorer ranks every item, the history left out. Recall@20 and NDCG@20 over the top 20, and
AUC over all the non-history items: the share of (relevant, other) pairs the scores order
correctly (ties count half). The peers: **popular** (training users per item), **ItemCF**
(summed cosines of the history's items' user columns) and **EASE** (Steck 2019) on the
user-item matrix, its λ chosen on validation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from training.baselines import EASE_MAX_ENTITIES, ease_matrix
from training.cross_domain import (
    InteractionSignals,
    itemcf_scorer,
    ndcg_at_k,
    seed_matrix,
    sparse_matrix,
)
from training.ranking import mask_out, rank_rows, recall_at_k

K = 20
EASE_LAMBDAS = (0.1, 0.3, 1.0, 3.0)
# histories -> (B, N) scores
UserScorer = Callable[[list[Tensor]], Tensor]


def _auc(s: Tensor, relevant: list[Tensor], history: list[Tensor]) -> Tensor:
    """``(B,)`` AUC of each row's relevant items against its other non-history items."""
    out = []
    for row, pos, seen in zip(s, relevant, history, strict=True):
        negative = torch.ones(len(row), dtype=torch.bool)
        negative[pos] = False
        negative[seen] = False
        neg = torch.sort(row[negative]).values
        p = row[pos]
        below = torch.searchsorted(neg, p, right=False).float()
        ties = torch.searchsorted(neg, p, right=True).float() - below
        out.append(((below + 0.5 * ties) / max(len(neg), 1)).mean())
    return torch.stack(out) if out else torch.empty(0)


def per_user_metrics(
    scorer: UserScorer, history: list[Tensor], relevant: list[Tensor], batch: int = 256
) -> dict[str, Tensor]:
    """Recall@20, NDCG@20 and AUC of ``scorer`` per query ``(Q,)``."""
    out: dict[str, list[Tensor]] = {"recall@20": [], "ndcg@20": [], "auc": []}
    for start in range(0, len(history), batch):
        h, r = history[start : start + batch], relevant[start : start + batch]
        s = scorer(h).float().cpu().clone()  # a scorer may return a broadcast view
        out["auc"].append(_auc(s, r, h))
        mask_out(s, h)
        top = rank_rows(s, K)
        out["recall@20"].append(recall_at_k(top, r))
        out["ndcg@20"].append(ndcg_at_k(top, r))
    return {name: torch.cat(parts) if parts else torch.empty(0) for name, parts in out.items()}


def means(per_user: dict[str, Tensor]) -> dict[str, float]:
    return {name: float(v.nanmean()) if len(v) else float("nan") for name, v in per_user.items()}


def user_metrics(
    scorer: UserScorer, history: list[Tensor], relevant: list[Tensor]
) -> dict[str, float]:
    """Mean Recall@20, NDCG@20 and AUC of ``scorer`` over the queries."""
    return means(per_user_metrics(scorer, history, relevant))


def popular(s: InteractionSignals) -> UserScorer:
    return lambda history: s.log_users.expand(len(history), -1)


def itemcf(s: InteractionSignals) -> UserScorer:
    score = itemcf_scorer(s)
    n = len(s.log_users)
    return lambda history: score(seed_matrix(history, n))


def ease(
    user: np.ndarray, item: np.ndarray, num_users: int, n: int, lam: float
) -> UserScorer | None:
    """EASE over the items with training users (``None`` above :data:`EASE_MAX_ENTITIES`)."""
    items = np.unique(item)
    if len(items) > EASE_MAX_ENTITIES:
        return None
    local = np.full(n, -1)
    local[items] = np.arange(len(items))
    x = sparse_matrix(user, local[item], torch.ones(len(user)), (num_users, len(items))).to_dense()
    b = ease_matrix(x.t() @ x, lam)
    lookup = torch.from_numpy(local)

    def score(history: list[Tensor]) -> Tensor:
        rows = torch.zeros(len(history), len(items))
        for r, h in enumerate(history):
            known = lookup[h]
            rows[r, known[known >= 0]] = 1.0
        out = torch.full((len(history), n), -1e9)
        out[:, torch.from_numpy(items)] = rows @ b
        return out

    return score
