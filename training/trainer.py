"""Link-prediction training of SemanticGNN over HASP shards.

One optimizer step consumes ``shards_per_step`` shards: with one process they are run
one after another and their gradients summed; with ``world_size`` processes
(``torch.distributed``, gloo on CPU, nccl on GPU) each rank runs every ``world_size``-th of
them (round-robin) and the gradients are all-reduced. Loss is scaled by
``1 / shards_per_step`` either way, so the two give the same updates.

Cold start is trained for explicitly: each epoch a random share of entities is made
pseudo-new (id and popularity inputs masked, their EELs removed from message passing)
while their EELs stay training targets, and id inputs are dropped for another share.

The epoch kept is the one with the best validation MAP@10 (or AUC, by ``select_by``): AUC
against uniform negatives rewards ranking popular items above unpopular ones and keeps
rising long after the top of the ranking stops improving. Id embeddings start from the
spectral vectors of the training EELs (``id_init``), see :mod:`training.spectral`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from training.evaluate import RankingTask
from training.model import EntityEncoder, ModelConfig, build_model
from training.shard_graph import ShardGraph

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainParams:
    epochs: int = 30
    lr: float = 0.01
    weight_decay: float = 0.0
    objective: str = "bce"  # or "sampled_softmax"
    negatives: int = 1  # bce: corrupted pairs per positive EEL
    softmax_negatives: int = 128  # sampled_softmax: shared sampled candidates per step
    temperature: float = 0.1  # sampled_softmax
    val_share: float = 0.1
    id_dropout: float = 0.3
    pseudo_new_share: float = 0.2
    patience: int = 5  # epochs without a better validation score before stopping
    select_by: str = "map"  # "map" (validation MAP@10) or "auc": picks the epoch kept
    id_init: str = "spectral"  # or "random": id embeddings' start, see training/spectral.py
    # learning rate of the id embeddings relative to ``lr``: below 1 keeps them near their
    # graph-wide spectral start, which no shard can contradict (negatives are shard-local)
    id_lr_scale: float = 1.0
    shards_per_step: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("id_dropout", "pseudo_new_share", "val_share"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"TrainParams.{name} must be in [0, 1), got {getattr(self, name)}")
        if min(self.negatives, self.softmax_negatives, self.shards_per_step, self.epochs) < 1:
            raise ValueError(f"negatives, shards_per_step and epochs must be >= 1: {self}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective {self.objective!r} is not one of {sorted(OBJECTIVES)}")
        if self.select_by not in ("map", "auc"):
            raise ValueError(f"select_by must be 'map' or 'auc', got {self.select_by!r}")
        if self.id_init not in ("spectral", "random"):
            raise ValueError(f"id_init must be 'spectral' or 'random', got {self.id_init!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    state_dict: dict[str, Tensor]
    best_epoch: int
    best_val_auc: float
    best_val_map: float = float("nan")
    curve: list[dict[str, float]] = field(default_factory=list)
    shard_peak_bytes: dict[int, int] = field(default_factory=dict)  # CUDA only, first epoch


def generator(*parts: int) -> torch.Generator:
    """A generator seeded by (seed, epoch, shard, ...), identical in every process."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def auc(pos: Tensor, neg: Tensor) -> float:
    """ROC AUC of positive against negative scores (Mann-Whitney, ties count half)."""
    if pos.numel() == 0 or neg.numel() == 0:
        return float("nan")
    scores = torch.cat([pos, neg])
    order = scores.argsort()
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=scores.dtype, device=scores.device)
    # average ranks of ties
    uniq, inverse = torch.unique(scores, return_inverse=True)
    sums = torch.zeros_like(uniq).index_add_(0, inverse, ranks)
    counts = torch.zeros_like(uniq).index_add_(0, inverse, torch.ones_like(ranks))
    ranks = (sums / counts)[inverse]
    n_pos, n_neg = pos.numel(), neg.numel()
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def negative_pairs(pairs: Tensor, num_entities: int, k: int, gen: torch.Generator) -> Tensor:
    """``k`` corrupted pairs per positive: the source kept, the target drawn uniformly."""
    src = pairs[0].repeat(k)
    dst = torch.randint(num_entities, (src.numel(),), generator=gen).to(pairs.device)
    return torch.stack([src, dst])


def both_ways(pairs: Tensor) -> Tensor:
    """EELs are undirected; with a popularity prior on the candidate, train both readings."""
    return torch.cat([pairs, pairs.flip(0)], dim=1)


def bce_loss(
    model: EntityEncoder,
    h: Tensor,
    pos: Tensor,
    prior: Tensor,
    params: TrainParams,
    gen: torch.Generator,
) -> Tensor:
    """The paper's objective: BCE of ``σ(score)`` against ``negatives`` corrupted pairs each."""
    neg = negative_pairs(pos, h.shape[0], params.negatives, gen)
    logits = torch.cat([model.score(h, pos, prior), model.score(h, neg, prior)])
    labels = torch.cat([torch.ones(pos.shape[1]), torch.zeros(neg.shape[1])]).to(h.device)
    return F.binary_cross_entropy_with_logits(logits, labels)


def sampled_softmax_loss(
    model: EntityEncoder,
    h: Tensor,
    pos: Tensor,
    prior: Tensor,
    params: TrainParams,
    gen: torch.Generator,
) -> Tensor:
    """Softmax over the true candidate and ``softmax_negatives`` shared sampled candidates.

    Candidates are drawn in proportion to how often they are positives (degree + 1), the
    distribution in-batch negatives follow; ``log Q`` is subtracted from every logit
    (the logQ correction) so that popular items are not over-penalised for being sampled
    often. Logits are divided by ``temperature``.
    """
    n = h.shape[0]
    counts = torch.bincount(pos[1], minlength=n).float() + 1.0
    q = counts / counts.sum()
    sampled = torch.multinomial(q.cpu(), params.softmax_negatives, replacement=True, generator=gen)
    sampled = sampled.to(h.device)
    true = model.score(h, pos, prior) / params.temperature - q[pos[1]].log()
    others = model.score_matrix(h, pos[0], sampled, prior) / params.temperature  # (P, S)
    others = others - q[sampled].log()
    others = others.masked_fill(sampled[None, :] == pos[1][:, None], -torch.inf)  # accidental hits
    logits = torch.cat([true[:, None], others], dim=1)
    return F.cross_entropy(logits, torch.zeros(pos.shape[1], dtype=torch.long, device=h.device))


OBJECTIVES = {"bce": bce_loss, "sampled_softmax": sampled_softmax_loss}


def shard_loss(
    model: EntityEncoder, graph: ShardGraph, params: TrainParams, epoch: int, k: int
) -> Tensor:
    """Link-prediction loss on one shard, with this epoch's pseudo-new entities."""
    gen = generator(params.seed, epoch, k)
    n_e = graph.num_entities
    device = graph.edge_index.device
    pseudo_new = (torch.rand(n_e, generator=gen) < params.pseudo_new_share).to(device)
    keep_id = ~pseudo_new & (torch.rand(n_e, generator=gen) >= params.id_dropout).to(device)
    src, dst = graph.edge_index
    touches_new = (src < n_e) & (pseudo_new[src.clamp(max=n_e - 1)] | pseudo_new[dst])
    h = model(graph, keep_id=keep_id, keep_popularity=~pseudo_new, edge_mask=~touches_new)
    prior = graph.log_degree * ~pseudo_new  # a new item has no popularity yet
    return OBJECTIVES[params.objective](model, h, both_ways(graph.train_pairs), prior, params, gen)


def validation_task(graph: ShardGraph) -> RankingTask:
    """Each entity with held-out links ranks the shard's other entities, training links
    skipped: a cheap, shard-local stand-in for the graph-wide MAP that picks the epoch."""
    return RankingTask.from_pairs(
        graph.val_pairs.cpu(), both_ways(graph.train_pairs).cpu(), graph.num_entities
    )


@torch.no_grad()
def validation_scores(
    model: EntityEncoder, graph: ShardGraph, task: RankingTask, params: TrainParams, k: int
) -> tuple[float, float]:
    """(AUC against one uniform negative per held-out pair, MAP@10) on one shard."""
    h = model(graph)
    pos = both_ways(graph.val_pairs)
    neg = negative_pairs(pos, graph.num_entities, 1, generator(params.seed, -1, k))
    roc = auc(model.score(h, pos, graph.log_degree), model.score(h, neg, graph.log_degree))
    everyone = torch.arange(graph.num_entities, device=h.device)
    ap = task.map_at_k(lambda q: model.score_matrix(h, q.to(h.device), everyone, graph.log_degree))
    return roc, ap


def _all_reduce_gradients(model: EntityEncoder) -> None:
    for p in model.parameters():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)


def _all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def train(
    graphs: list[ShardGraph],
    config: ModelConfig,
    params: TrainParams,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
    progress: Callable[[dict[str, float]], None] | None = None,
    id_vectors: Tensor | None = None,
) -> TrainResult:
    """Train on ``graphs`` (all shards; this rank uses its round-robin share).

    ``id_vectors`` ``(num_entities, dim)``, when given, start the id embeddings (see
    ``TrainParams.id_init``); the caller computes them because they need EELs that the
    shards do not hold (those cut by the partition).

    With ``world_size > 1`` the default process group must be initialised. Every rank
    returns the same result.
    """
    if params.shards_per_step % world_size:
        raise ValueError(
            f"shards_per_step ({params.shards_per_step}) must be a multiple of world_size "
            f"({world_size})"
        )
    torch.manual_seed(params.seed)
    model = build_model(config)
    pairs = torch.cat([g.entity_global[g.train_pairs] for g in graphs], dim=1)
    model.trained[pairs.flatten()] = True
    if id_vectors is not None:
        with torch.no_grad():
            model.entity_id.weight.copy_(id_vectors)
    model = model.to(device)
    ids = [model.entity_id.weight]
    others = [p for p in model.parameters() if p is not model.entity_id.weight]
    optimizer = torch.optim.Adam(
        [{"params": others}, {"params": ids, "lr": params.lr * params.id_lr_scale}],
        lr=params.lr,
        weight_decay=params.weight_decay,
    )
    n = len(graphs)
    steps = math.ceil(n / params.shards_per_step)
    mine = [k for k in range(n) if k % world_size == rank]
    tasks = {k: validation_task(graphs[k]) for k in mine}
    best, best_score = TrainResult({}, -1, -math.inf), -math.inf
    for epoch in range(params.epochs):
        epoch_start = time.perf_counter()
        model.train()
        loss_sum = 0.0
        for step in range(steps):
            optimizer.zero_grad()
            group = range(
                step * params.shards_per_step, min((step + 1) * params.shards_per_step, n)
            )
            for k in (k for k in group if k in mine):
                measure = epoch == 0 and device.type == "cuda"
                if measure:
                    torch.cuda.reset_peak_memory_stats(device)
                loss = shard_loss(model, graphs[k].to(device), params, epoch, k)
                (loss / params.shards_per_step).backward()
                loss_sum += loss.item()
                if measure:
                    best.shard_peak_bytes[k] = torch.cuda.max_memory_allocated(device)
            if world_size > 1:
                _all_reduce_gradients(model)
            optimizer.step()
        # loss.item() has waited for each shard's kernels, and validation ends in host
        # copies: so the split of the epoch's time is the device's too, not only Python's
        val_start = time.perf_counter()
        model.eval()
        scores = [validation_scores(model, graphs[k].to(device), tasks[k], params, k) for k in mine]
        scores = [s for s in scores if not math.isnan(s[0])]
        totals = [loss_sum, sum(s[0] for s in scores), sum(s[1] for s in scores), len(scores)]
        if world_size > 1:
            totals = _all_reduce_sum(totals, device)
        count = totals[3] or float("nan")
        point = {
            "epoch": epoch,
            "loss": totals[0] / n,
            "val_auc": totals[1] / count,
            "val_map": totals[2] / count,
            "train_seconds": val_start - epoch_start,
            "val_seconds": time.perf_counter() - val_start,
        }
        best.curve.append(point)
        if progress is not None and rank == 0:
            progress(point)
        # without validation pairs (NaN) the latest epoch is the best one known
        score = point[f"val_{params.select_by}"]
        if math.isnan(score) or score > best_score:
            best.state_dict = {n: t.detach().cpu().clone() for n, t in model.state_dict().items()}
            best.best_epoch, best_score = epoch, score
            best.best_val_auc, best.best_val_map = point["val_auc"], point["val_map"]
        elif epoch - best.best_epoch >= params.patience:
            log.info("Early stop at epoch %d (best %d)", epoch, best.best_epoch)
            break
    return best
