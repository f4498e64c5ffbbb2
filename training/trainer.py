r"""Link-prediction training of SemanticGNN over HASP shards.

Each shard visit takes ``batches_per_shard`` optimizer steps: the shard's graph stays in
memory and each step's loss covers one slice of its training EELs (a full-batch pass gave
one step per shard and epoch, too few to move anything). One step consumes that slice of
``shards_per_step`` shards: with one process they are run one after another and their
gradients summed; with ``world_size`` processes (``torch.distributed``, gloo on CPU, nccl
on GPU) each rank runs every ``world_size``-th of them (round-robin) and the gradients are
all-reduced. Loss is scaled by ``1 / shards_per_step`` either way, so the two give the
same updates.

Shards share one embedding space: the served vectors carry the graph-wide walk factors
(:mod:`training.model`), and the distillation's negatives (and, with ``global_negatives``,
the link loss's too) are drawn from every entity of the graph, not only the shard's
(:class:`GraphWide`: a bank of each entity's latest served vector, refreshed as its shard
is visited). The loss has three terms:

.. math::
    \mathcal{L} = \mathcal{L}_{link} + \lambda_{a} \mathcal{L}_{align}
    + \lambda_{d} \mathcal{L}_{distill},

* ``L_link``: BCE of each training EEL against corrupted pairs, in-shard (and graph-wide
  with ``global_negatives``: no gain on MovieLens, a loss on a planted-community graph,
  so off by default);
* ``L_align``: for pseudo-new entities, the predicted walk factors ``ê_i`` against their
  own ``e_i`` (squared error over the mean ``‖e‖²``): the cold view learns to rank like
  the warm one;
* ``L_distill``: cross-entropy of the query's softmax over its teacher's top k and shared
  graph-wide negatives against the teacher's distribution (:mod:`training.teacher`).

Cold start is trained for explicitly: each epoch a random share of entities is made
pseudo-new (id and popularity inputs masked, their EELs removed from message passing)
while their EELs stay training targets, and id inputs are dropped for another share.

The epoch kept is the one with the best validation MAP@10 (or AUC, by ``select_by``): AUC
against uniform negatives rewards ranking popular items above unpopular ones and keeps
rising long after the top of the ranking stops improving. Training ends after ``epochs``,
after ``patience_steps`` optimizer steps without a better validation score (in whole
epochs, at least one), or before an epoch that the last one's time says would end past
``max_seconds`` (at 10^7 interactions an epoch over 129 shards takes about 40 s on two cores).
Id embeddings start from the spectral vectors of the training EELs (``id_init``), see
:mod:`training.spectral`.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from training.model import EntityEncoder, ModelConfig, build_model
from training.ranking import RankingTask
from training.shard_graph import ShardGraph
from training.teacher import Teacher

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
    # optimizer steps without a better validation score before stopping, in whole epochs
    # (at least one). Counted in steps, not epochs: an epoch of the demo or MovieLens is 8
    # steps (patience 5 epochs), one at 10^7 interactions 472 (about 40 s on two cores),
    # where validation peaked at the second or third epoch and five epochs of patience
    # followed
    patience_steps: int = 40
    select_by: str = "map"  # "map" (validation MAP@10) or "auc": picks the epoch kept
    id_init: str = "spectral"  # or "random": id embeddings' start, see training/spectral.py
    # learning rate of the id embeddings relative to ``lr``: below 1 keeps them near their
    # graph-wide spectral start, which no shard can contradict (negatives are shard-local)
    id_lr_scale: float = 1.0
    shards_per_step: int = 1
    batches_per_shard: int = 4  # optimizer steps per shard visit
    global_negatives: int = 0  # bce: corrupted pairs per positive drawn over all entities
    align_weight: float = 1.0  # λ_a: the cold view's walk factors against the warm ones
    distill_weight: float = 1.0  # λ_d: listwise distillation toward the teacher (0: off)
    distill_k: int = 10  # the teacher's neighbours per entity
    # the gradient's largest L2 norm (0: unclipped). Steps on the demo and MovieLens stay
    # under 8.1; at 10^6 interactions single steps reached 104 in the first epoch, and
    # the cold view's alignment loss then grew 30-fold within three epochs
    clip_norm: float = 10.0
    # wall-clock budget of the epochs in seconds (0: none): no epoch starts that the last
    # one's time says would end past it, so a nightly run at 10^7 interactions ends on time
    max_seconds: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("id_dropout", "pseudo_new_share", "val_share"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"TrainParams.{name} must be in [0, 1), got {getattr(self, name)}")
        if (
            min(
                self.negatives,
                self.softmax_negatives,
                self.shards_per_step,
                self.epochs,
                self.batches_per_shard,
                self.distill_k,
                self.patience_steps,
            )
            < 1
        ):
            raise ValueError(
                "negatives, shards_per_step, epochs, batches_per_shard, distill_k and "
                f"patience_steps must be >= 1: {self}"
            )
        if (
            min(
                self.global_negatives,
                self.align_weight,
                self.distill_weight,
                self.clip_norm,
                self.max_seconds,
            )
            < 0
        ):
            raise ValueError(
                f"global_negatives, loss weights, clip_norm and max_seconds must be >= 0: {self}"
            )
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


class Prepared(NamedTuple):
    """Graph-wide inputs the caller computes, since they need EELs that the shards do not
    hold (those cut by the partition): ``id_vectors`` ``(N, dim)`` start the id embeddings
    (``TrainParams.id_init``), ``walk`` ``(N, walk_rank)`` are the fixed walk factors the
    model serves, ``teacher`` the distillation target."""

    id_vectors: Tensor | None = None
    walk: Tensor | None = None
    teacher: Teacher | None = None


@dataclass
class TrainResult:
    state_dict: dict[str, Tensor]
    best_epoch: int
    best_val_auc: float
    best_val_map: float = float("nan")
    curve: list[dict[str, float]] = field(default_factory=list)
    shard_peak_bytes: dict[int, int] = field(default_factory=dict)  # CUDA only, first epoch
    stopped: str = "epochs"  # or "patience", "time budget": why the epochs ended


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


@dataclass
class GraphWide:
    """What a shard's loss sees beyond the shard: every entity's latest served vector
    (``bank``, no gradient), the graph-wide log degrees, and the teacher."""

    bank: Tensor  # (N, out_dim)
    log_degree: Tensor  # (N,) log(1 + training EEL degree over all shards)
    teacher: Teacher | None = None

    def sample(self, count: int, gen: torch.Generator) -> Tensor:
        """``count`` entity ids drawn uniformly over the whole graph."""
        return torch.randint(self.bank.shape[0], (count,), generator=gen).to(self.bank.device)

    def scores(self, model: EntityEncoder, z: Tensor, candidates: Tensor) -> Tensor:
        """Queries' live vectors ``z`` ``(Q, D)`` against banked ``candidates``: ``(Q, C)``
        each query its own, or ``(C,)`` shared by all (one matrix product, no ``(Q, C, D)``
        gather)."""
        if candidates.dim() == 1:
            logits = z @ self.bank[candidates].t()
        else:
            logits = torch.einsum("qd,qcd->qc", z, self.bank[candidates])
        if model.config.popularity_prior:
            logits = logits + model.popularity_weight * self.log_degree[candidates]
        return logits


def global_negative_logits(
    model: EntityEncoder, z: Tensor, pos: Tensor, wide: GraphWide, k: int, gen: torch.Generator
) -> Tensor:
    """Logits of ``k`` graph-wide corrupted pairs per positive (source kept)."""
    candidates = wide.sample(pos.shape[1] * k, gen).view(pos.shape[1], k)
    return wide.scores(model, z[pos[0]], candidates).flatten()


def align_loss(model: EntityEncoder, graph: ShardGraph, z: Tensor, cold: Tensor) -> Tensor:
    """``Σ ‖ê_i − e_i‖² / Σ ‖e_i‖²`` over ``cold`` (pseudo-new) entities with walk factors."""
    if not model.config.walk_rank:
        return z.new_zeros(())
    target, has = model.own_walk(graph.entity_global)
    cold = cold & has
    if not cold.any():
        return z.new_zeros(())
    target = target[cold]
    err = (model.walk_part(z)[cold] - target).pow(2).sum()
    return err / target.pow(2).sum().clamp(min=1e-12)


def distill_loss(
    model: EntityEncoder,
    graph: ShardGraph,
    z: Tensor,
    queries: Tensor,
    wide: GraphWide,
    params: TrainParams,
    gen: torch.Generator,
) -> Tensor:
    """Listwise distillation: each query's softmax over its teacher's top k and
    ``softmax_negatives`` shared graph-wide negatives, against the teacher's distribution
    ``p``: ``−Σ_j p_ij log q_ij``. The logits are the scores themselves: the walk factors'
    scale (:data:`training.spectral.WALK_NORM`) already spreads an entity's top 10."""
    teacher = wide.teacher
    ids = teacher.ids[graph.entity_global[queries]]
    probs = teacher.probs[graph.entity_global[queries]]
    keep = probs.sum(1) > 0
    if not keep.any():
        return z.new_zeros(())
    queries, ids, probs = queries[keep], ids[keep], probs[keep]
    shared = wide.sample(params.softmax_negatives, gen)
    top = wide.scores(model, z[queries], ids.clamp(min=0)).masked_fill(ids < 0, -torch.inf)
    logits = torch.cat([top, wide.scores(model, z[queries], shared)], dim=1)
    log_q = torch.log_softmax(logits, dim=1)[:, : ids.shape[1]]
    return -(probs * log_q.masked_fill(ids < 0, 0.0)).sum(1).mean()


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
    wide: GraphWide,
) -> Tensor:
    """The paper's objective: BCE of ``σ(score)`` against ``negatives`` in-shard and
    ``global_negatives`` graph-wide corrupted pairs each."""
    neg = negative_pairs(pos, h.shape[0], params.negatives, gen)
    parts = [model.score(h, pos, prior), model.score(h, neg, prior)]
    if params.global_negatives:
        parts.append(global_negative_logits(model, h, pos, wide, params.global_negatives, gen))
    logits = torch.cat(parts)
    labels = torch.zeros(len(logits), device=h.device)
    labels[: pos.shape[1]] = 1.0
    return F.binary_cross_entropy_with_logits(logits, labels)


def sampled_softmax_loss(
    model: EntityEncoder,
    h: Tensor,
    pos: Tensor,
    prior: Tensor,
    params: TrainParams,
    gen: torch.Generator,
    wide: GraphWide,
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


def batch_pairs(graph: ShardGraph, params: TrainParams, epoch: int, k: int, b: int) -> Tensor:
    """Slice ``b`` of the shard's training EELs, in this epoch's shuffled order."""
    pairs = graph.train_pairs
    order = torch.randperm(pairs.shape[1], generator=generator(params.seed, epoch, k, -1))
    return pairs[:, order.to(pairs.device)].tensor_split(params.batches_per_shard, dim=1)[b]


def shard_loss(
    model: EntityEncoder,
    graph: ShardGraph,
    params: TrainParams,
    wide: GraphWide,
    epoch: int,
    k: int,
    b: int = 0,
) -> Tensor:
    """The loss of mini-batch ``b`` on one shard, with this step's pseudo-new entities;
    refreshes the shard's rows of the bank."""
    gen = generator(params.seed, epoch, k, b)
    n_e = graph.num_entities
    device = graph.edge_index.device
    pseudo_new = (torch.rand(n_e, generator=gen) < params.pseudo_new_share).to(device)
    keep_id = ~pseudo_new & (torch.rand(n_e, generator=gen) >= params.id_dropout).to(device)
    src, dst = graph.edge_index
    touches_new = graph.eels_touching(pseudo_new)
    pos = both_ways(batch_pairs(graph, params, epoch, k, b))
    # the batch's targets carry no messages: a link is predicted from the others, as a
    # held-out one is (else the GNN learns to read its targets off its inputs)
    is_target = torch.isin(src * n_e + dst, pos[0] * n_e + pos[1]) & (graph.edge_type == 0)
    z = model(
        graph,
        keep_id=keep_id,
        keep_popularity=~pseudo_new,
        edge_mask=~(touches_new | is_target),
    )
    wide.bank[graph.entity_global] = z.detach()
    prior = graph.log_degree * ~pseudo_new  # a new item has no popularity yet
    if pos.shape[1]:
        loss = OBJECTIVES[params.objective](model, z, pos, prior, params, gen, wide)
    else:  # a shard the partition left (nearly) no EELs of: its mean over none was NaN
        loss = z.sum() * 0.0  # (113 shards at 10^7 interactions, 91% of EELs cut)
    if params.align_weight:
        loss = loss + params.align_weight * align_loss(model, graph, z, pseudo_new)
    if params.distill_weight and wide.teacher is not None:
        queries = torch.unique(pos[0])
        loss = loss + params.distill_weight * distill_loss(
            model, graph, z, queries, wide, params, gen
        )
    return loss


def validation_task(graph: ShardGraph) -> RankingTask:
    """Each entity with held-out links ranks the shard's other entities, training links
    skipped: a cheap, shard-local stand-in for the graph-wide MAP that picks the epoch
    (the caller samples its queries: a shard's cost is then linear in its size)."""
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
    prepared: Prepared | None = None,
) -> TrainResult:
    """Train on ``graphs`` (all shards; this rank uses its round-robin share), with the
    graph-wide inputs in ``prepared`` (the walk factors are required when
    ``config.walk_rank > 0``).

    With ``world_size > 1`` the default process group must be initialised. Every rank
    returns the same result.
    """
    if params.shards_per_step % world_size:
        raise ValueError(
            f"shards_per_step ({params.shards_per_step}) must be a multiple of world_size "
            f"({world_size})"
        )
    id_vectors, walk, teacher = prepared or Prepared()
    if config.walk_rank and (walk is None or walk.shape != (config.num_entities, config.walk_rank)):
        raise ValueError(f"walk_rank {config.walk_rank} needs walk factors of that width")
    torch.manual_seed(params.seed)
    model = build_model(config)
    pairs = torch.cat([g.entity_global[g.train_pairs] for g in graphs], dim=1)
    model.trained[pairs.flatten()] = True
    with torch.no_grad():
        if id_vectors is not None:
            model.entity_id.weight.copy_(id_vectors)
        if walk is not None:
            model.walk.copy_(walk)
    model = model.to(device)
    degree = torch.bincount(pairs.flatten(), minlength=config.num_entities).float()
    wide = GraphWide(
        torch.zeros(config.num_entities, config.out_dim, device=device),
        torch.log1p(degree).to(device),
        None if teacher is None else Teacher(teacher.ids.to(device), teacher.probs.to(device)),
    )
    ids = [model.entity_id.weight]
    others = [p for p in model.parameters() if p is not model.entity_id.weight]
    # fused: one pass over each parameter per step instead of one per Adam term. Every step
    # updates all of the id table, whichever shard it trained on: at 10^7 interactions
    # (400,000 ids) the unfused steps were 292 s of 545 s of training (2026-12-07)
    optimizer = torch.optim.Adam(
        [{"params": others}, {"params": ids, "lr": params.lr * params.id_lr_scale}],
        lr=params.lr,
        weight_decay=params.weight_decay,
        fused=True,
    )
    n = len(graphs)
    steps = math.ceil(n / params.shards_per_step)
    epoch_steps = steps * params.batches_per_shard  # optimizer steps
    patience = max(1, math.ceil(params.patience_steps / epoch_steps))
    mine = [k for k in range(n) if k % world_size == rank]
    tasks = {k: validation_task(graphs[k]).sample(seed=k) for k in mine}
    with torch.no_grad():  # the bank starts from the untrained model's vectors
        for k in mine:
            graph = graphs[k].to(device)
            wide.bank[graph.entity_global] = model(graph)
    best, best_score = TrainResult({}, -1, -math.inf), -math.inf
    start = time.perf_counter()
    for epoch in range(params.epochs):
        epoch_start = time.perf_counter()
        model.train()
        loss_sum, clipped = 0.0, 0
        for step, b in itertools.product(range(steps), range(params.batches_per_shard)):
            optimizer.zero_grad()
            group = range(
                step * params.shards_per_step, min((step + 1) * params.shards_per_step, n)
            )
            for k in (k for k in group if k in mine):
                measure = epoch == 0 and b == 0 and device.type == "cuda"
                if measure:
                    torch.cuda.reset_peak_memory_stats(device)
                loss = shard_loss(model, graphs[k].to(device), params, wide, epoch, k, b)
                (loss / params.shards_per_step).backward()
                loss_sum += loss.item() / params.batches_per_shard
                if measure:
                    best.shard_peak_bytes[k] = torch.cuda.max_memory_allocated(device)
            if world_size > 1:
                _all_reduce_gradients(model)
            if params.clip_norm:  # after the all-reduce: every rank clips the same gradient
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), params.clip_norm)
                clipped += int(norm > params.clip_norm)
            optimizer.step()
        # loss.item() has waited for each shard's kernels, and validation ends in host
        # copies: so the split of the epoch's time is the device's too, not only Python's
        val_start = time.perf_counter()
        model.eval()
        scores = [validation_scores(model, graphs[k].to(device), tasks[k], params, k) for k in mine]
        scores = [s for s in scores if not math.isnan(s[0])]
        now = time.perf_counter()
        # would one more epoch of this one's length end past the budget? Any rank's yes
        # stops every rank (the sum below), so all of them leave the loop together
        elapsed, last = now - start, now - epoch_start
        over = bool(params.max_seconds) and elapsed + last > params.max_seconds
        totals = [
            loss_sum, sum(s[0] for s in scores), sum(s[1] for s in scores), len(scores), float(over)
        ]  # fmt: skip
        if world_size > 1:
            totals = _all_reduce_sum(totals, device)
        count = totals[3] or float("nan")
        point = {
            "epoch": epoch,
            "loss": totals[0] / n,
            "val_auc": totals[1] / count,
            "val_map": totals[2] / count,
            "steps": epoch_steps,
            "clipped_steps": clipped,
            "train_seconds": val_start - epoch_start,
            "val_seconds": now - val_start,
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
        elif epoch - best.best_epoch >= patience:
            log.info("Early stop at epoch %d (best %d)", epoch, best.best_epoch)
            best.stopped = "patience"
            break
        if totals[4] and epoch + 1 < params.epochs:
            log.info("Time budget of %.0f s: stop after epoch %d", params.max_seconds, epoch)
            best.stopped = "time budget"
            break
    return best
