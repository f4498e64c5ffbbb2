"""TransE pretraining of concept nodes on the semantic triples (entity, relation, concept).

Concept nodes carry only short phrases, so they get their input features from a
knowledge-graph embedding (Bordes et al., 2013) trained with the margin ranking loss

.. math::
    \\mathcal{L} = \\sum \\big[f(e'_t, r, e'_c) - f(e_t, r, e_c) + \\gamma\\big]_+,
    \\qquad f(h, r, t) = -\\lVert h + r - t \\rVert_1

where the negative triple corrupts the head or the tail with a node drawn from the whole
pool (PyG's :class:`~torch_geometric.nn.kge.TransE`; its loss as :func:`margin_loss`
computes it). Held-out triples are ranked against every concept of their relation's type,
with the other known true concepts filtered out.

Training stops at ``epochs``, when the loss has stopped falling (less than
``min_improvement`` relative over the last ``patience`` epochs), or once ``max_seconds``
are spent, whichever comes first: on a large concept vocabulary this pretraining was
two-thirds of a run for a few points of cold-start quality.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn.kge import TransE

from training.kg_arrays import ENTITY, KGArrays, NodeSpace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransEParams:
    dim: int = 64
    margin: float = 1.0
    epochs: int = 30
    batch_size: int = 2048
    # at most this many optimizer steps per epoch: a larger graph takes larger batches. A
    # dense Adam step updates every node's row, so with a fixed batch an epoch cost
    # triples × nodes (exponent 1.35 between 10^5 and 10^6 interactions)
    max_steps_per_epoch: int = 64
    lr: float = 0.01
    holdout: float = 0.1
    # held-out triples ranked for MRR and Hits@10: each against every candidate concept of
    # its relation, so ranking all of them grew with triples × concepts (17 of 30 s of a
    # 10-epoch run at 40,000 entities); the holdout is in random order, so these are a
    # seeded sample
    ranked_triples: int = 2000
    seed: int = 0
    max_seconds: float = 0.0  # 0: no time budget
    min_improvement: float = 0.0  # 0: never stop early on a flat loss
    patience: int = 5

    def __post_init__(self) -> None:
        if min(self.batch_size, self.max_steps_per_epoch, self.epochs) < 1:
            raise ValueError(f"batch_size, max_steps_per_epoch and epochs must be >= 1: {self}")


@dataclass
class TransEResult:
    concept_embeddings: dict[str, torch.Tensor]  # node type -> (num_nodes[type], dim)
    relation_embeddings: dict[str, torch.Tensor]  # relation -> (dim,)
    relations: list[str]
    mrr: float
    hits_at_10: float
    losses: list[float] = field(default_factory=list)
    stopped: str = "epochs"  # or "converged", "time budget"

    def save(self, folder: Path) -> None:
        save_transe(self, folder)


def triple_ids(kg: KGArrays, space: NodeSpace) -> tuple[torch.Tensor, list[str], list[str]]:
    """``(3, T)`` global (head, relation, tail) ids, relation names and each one's concept type."""
    parts, relations, tail_types = [], [], []
    for r, ((relation, ctype), edges) in enumerate(sorted(kg.concept_edges.items())):
        rel = np.full(edges.shape[1], r, dtype=np.int64)
        parts.append(
            np.stack([edges[0] + space.offsets[ENTITY], rel, edges[1] + space.offsets[ctype]])
        )
        relations.append(relation)
        tail_types.append(ctype)
    if not parts:
        raise ValueError("The knowledge graph has no entity-concept edges to pretrain TransE on")
    return torch.from_numpy(np.concatenate(parts, axis=1)), relations, tail_types


def filtered_tail_ranks(
    model: TransE,
    test: torch.Tensor,
    known: dict[tuple[int, int], set[int]],
    candidates: list[torch.Tensor],
    batch_size: int = 512,
) -> torch.Tensor:
    """Rank of each test tail among its relation's candidate tails, other true tails removed."""
    ranks = []
    with torch.no_grad():
        for start in range(0, test.shape[1], batch_size):
            batch = test[:, start : start + batch_size]
            for r in batch[1].unique().tolist():
                rows = batch[:, batch[1] == r]
                cand = candidates[r]
                heads = rows[0].repeat_interleave(len(cand))
                scores = model(heads, torch.full_like(heads, r), cand.repeat(rows.shape[1]))
                scores = scores.view(rows.shape[1], len(cand))
                position = {int(c): i for i, c in enumerate(cand)}
                true = scores[torch.arange(rows.shape[1]), [position[int(t)] for t in rows[2]]]
                for i, (h, t) in enumerate(zip(rows[0].tolist(), rows[2].tolist(), strict=True)):
                    others = [position[x] for x in known[(h, r)] if x != t]
                    scores[i, others] = -torch.inf
                ranks.append(1 + (scores > true[:, None]).sum(dim=1))
    return torch.cat(ranks).float()


def margin_loss(model: TransE, head: Tensor, rel: Tensor, tail: Tensor) -> Tensor:
    """PyG's ``TransE.loss`` (L1 norm: heads and tails L1-normalised, ``f`` the L1
    distance), the positive and corrupted triples' nodes looked up at once. With a lookup
    per side each one's backward wrote a dense gradient of every node's row, and the
    generic vector norm was a quarter of a step: an epoch at 40,000 entities took 2.3 s,
    1.5 s with this loss and fused Adam."""
    corrupt_head, corrupt_rel, corrupt_tail = model.random_sample(head, rel, tail)
    b = head.numel()
    x = model.node_emb(torch.cat([head, tail, corrupt_head, corrupt_tail]))
    x = (x / x.abs().sum(-1, keepdim=True).clamp(min=1e-12)).view(2, 2, b, -1)
    r = model.rel_emb(torch.cat([rel, corrupt_rel])).view(2, b, -1)
    score = -(x[:, 0] + r - x[:, 1]).abs().sum(-1)  # (positive, corrupted) x b
    return F.margin_ranking_loss(
        score[0], score[1], target=torch.ones_like(score[0]), margin=model.margin
    )


def train_transe(
    kg: KGArrays,
    params: TransEParams,
    device: torch.device,
    progress: Callable[[int, float], None] | None = None,
) -> TransEResult:
    """Train TransE on the semantic triples; report filtered MRR and Hits@10 on held-out ones."""
    torch.manual_seed(params.seed)
    space = NodeSpace.of(kg)
    triples, relations, tail_types = triple_ids(kg, space)
    order = torch.randperm(triples.shape[1], generator=torch.Generator().manual_seed(params.seed))
    n_test = int(params.holdout * triples.shape[1])
    test, train = triples[:, order[:n_test]], triples[:, order[n_test:]]

    model = TransE(space.total, len(relations), params.dim, params.margin, p_norm=1.0).to(device)
    # fused: one pass over each parameter per step instead of one per Adam term
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr, fused=True)
    batch_size = max(params.batch_size, math.ceil(train.shape[1] / params.max_steps_per_epoch))
    loader = model.loader(*(x.to(device) for x in train), batch_size=batch_size, shuffle=True)
    losses, stopped, start = [], "epochs", time.perf_counter()
    for epoch in range(params.epochs):
        total, count = 0.0, 0
        for head, rel, tail in loader:
            optimizer.zero_grad()
            loss = margin_loss(model, head, rel, tail)
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * head.numel(), count + head.numel()
        losses.append(total / max(count, 1))
        if progress is not None:
            progress(epoch, losses[-1])
        if converged(losses, params.min_improvement, params.patience):
            stopped = "converged"
            break
        if params.max_seconds and time.perf_counter() - start > params.max_seconds:
            stopped = "time budget"
            break

    known: dict[tuple[int, int], set[int]] = defaultdict(set)
    for h, r, t in triples.t().tolist():
        known[(h, r)].add(t)
    candidates = [
        torch.arange(kg.num_nodes[ctype], device=device) + space.offsets[ctype]
        for ctype in tail_types
    ]
    model.eval()
    if n_test:
        ranked = test[:, : params.ranked_triples].to(device)
        ranks = filtered_tail_ranks(model, ranked, known, candidates)
        mrr, hits = float((1 / ranks).mean()), float((ranks <= 10).float().mean())
    else:
        mrr = hits = float("nan")

    weights = torch.nn.functional.normalize(model.node_emb.weight.detach(), p=1, dim=-1).cpu()
    concept_embeddings = {
        t: weights[space.offsets[t] : space.offsets[t] + kg.num_nodes[t]].clone()
        for t in kg.concept_types
    }
    rel = model.rel_emb.weight.detach().cpu()
    return TransEResult(
        concept_embeddings=concept_embeddings,
        relation_embeddings={name: rel[i].clone() for i, name in enumerate(relations)},
        relations=relations,
        mrr=mrr,
        hits_at_10=hits,
        losses=losses,
        stopped=stopped,
    )


def converged(losses: list[float], min_improvement: float, patience: int) -> bool:
    """Whether the loss fell by less than ``min_improvement`` (relative) over the last
    ``patience`` epochs."""
    if not min_improvement or len(losses) <= patience:
        return False
    before = losses[-1 - patience]
    return before - losses[-1] < min_improvement * abs(before)


def save_transe(result: TransEResult, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "concept_embeddings": result.concept_embeddings,
            "relation_embeddings": result.relation_embeddings,
        },
        folder / "transe.pt",
    )
    meta = {
        "relations": result.relations,
        "mrr": result.mrr,
        "hits_at_10": result.hits_at_10,
        "losses": result.losses,
        "stopped": result.stopped,
    }
    (folder / "transe.json").write_text(json.dumps(meta, indent=2))


def load_transe(folder: Path) -> TransEResult:
    if not (folder / "transe.pt").exists():
        raise FileNotFoundError(f"No TransE embeddings at {folder}")
    tensors = torch.load(folder / "transe.pt", weights_only=True)
    meta = json.loads((folder / "transe.json").read_text())
    return TransEResult(
        concept_embeddings=tensors["concept_embeddings"],
        relation_embeddings=tensors["relation_embeddings"],
        relations=meta["relations"],
        mrr=meta["mrr"],
        hits_at_10=meta["hits_at_10"],
        losses=meta["losses"],
        stopped=meta.get("stopped", "epochs"),
    )
