"""Every trained variant and every no-learning baseline on the same validation split.

The split is the trainer's: each shard's held-out EEL pairs (absent from message passing
and from training targets), mapped to graph-wide ids. Each entity with held-out links
ranks all entities except itself and its training links, by exact scores; the metric is
MAP@K. Baselines with weights or parameters (popularity + concepts, the blend, RP3β's β,
EASE's λ) are tuned on this split, and so is each encoder's readout: its popularity
prior's weight, degree gate and residual scale (:func:`calibrate`). What concerns new
items (their prior's weight, the concept neighbours' share in their walk factors, the
concept-kNN baseline's popularity weight) is tuned on pseudo-new items (:func:`pseudo_new_task`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from training.baselines import (
    Scores,
    Signals,
    best_of,
    blend_family,
    concept_knn,
    concept_neighbour_eels,
    concepts,
    ease,
    ease_fits,
    embedding_scores,
    itemcf,
    popularity,
    rp3,
    rp3_penalty,
    signals,
)
from training.checkpoint import Checkpoint, ModelSet
from training.concept_neighbours import ConceptNeighbours
from training.kg_arrays import KGArrays
from training.ranking import MAX_QUERIES, RankingTask
from training.shard_graph import held_out_pairs, shard_graph

GRID = (0.0, 0.03, 0.1, 0.3, 1.0)
PRIOR_GRID = (0.0, 0.03, 0.1, 0.3, 1.0, 3.0)
KAPPA_GRID = (0.0, 1.0, 3.0, 10.0)  # the degree gate's half-way degree (0: no gate)
SCALE_GRID = (0.0, 0.1, 0.25, 0.5, 1.0)  # the GNN residual's weight beside the walk factors
SHARE_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)  # the concept neighbours' share in a new item's walk
BETA_GRID = (0.0, 0.25, 0.5, 0.75)  # RP3β's popularity penalty
LAMBDA_GRID = (3.0, 30.0, 300.0, 3000.0)  # EASE's ridge, times the mean of diag(AᵀA)


@dataclass(frozen=True)
class Row:
    name: str
    map_at_k: float
    weights: tuple[float, ...] = ()


@dataclass(frozen=True)
class Readout:
    """A readout being calibrated: the degree gate's ``κ`` and the concept neighbours'
    share ``μ`` in a new item's walk factors (:meth:`EntityEncoder.readout`)."""

    kappa: float
    share: float = 0.0


@torch.no_grad()
def shard_embeddings(
    checkpoint: Checkpoint,
    shards: list[HeteroData],
    readouts: Sequence[Readout] = (),
    pseudo_new: Tensor | None = None,
    neighbours: ConceptNeighbours | None = None,
) -> list[Tensor]:
    """``(num_entities, out_dim)`` each: every entity embedded by the model in its own
    shard, read out with the checkpoint's own readout, or, one tensor per
    :class:`Readout`, with its ``κ`` and ``μ`` and a residual scale of 1 (the readout
    being calibrated: the encoder runs once for all of them).

    ``pseudo_new`` (graph-wide ids) are embedded as new items: their EELs leave message
    passing and their id, popularity and walk factors are masked, as for an item that
    arrived after training. With ``neighbours`` (the graph's concept neighbours), entities
    without walk factors of their own get their concept neighbours' (graph-wide,
    pseudo-new ones excluded)."""
    model = checkpoint.model()
    relations = list(checkpoint.config.relations)
    readouts = list(readouts) or [None]
    n = checkpoint.config.num_entities
    out = [torch.zeros(n, checkpoint.config.out_dim) for _ in readouts]
    shares = [r.share for r in readouts if r is not None] or [float(model.concept_walk_share)]
    walks = None  # read only where some readout mixes them in (μ > 0)
    if neighbours is not None and checkpoint.config.walk_rank and any(shares):
        own, has = model.own_walk(torch.arange(n))
        if pseudo_new is not None:
            has = has & ~torch.isin(torch.arange(n), pseudo_new)
        walks = neighbours.walk(own, has)
    for k, shard in enumerate(shards):
        g = shard_graph(
            shard,
            checkpoint.concept_features,
            relations,
            checkpoint.params.val_share,
            checkpoint.params.seed + k,
        )
        known = edge_mask = None
        if pseudo_new is not None:
            new = torch.isin(g.entity_global, pseudo_new)
            known, edge_mask = ~new, ~g.eels_touching(new)
        h = model.encode(g, known, known, edge_mask)
        local = None if walks is None else walks[g.entity_global]
        for z, readout in zip(out, readouts, strict=True):
            if readout is not None:
                model.gate_kappa.fill_(readout.kappa)
                model.concept_walk_share.fill_(readout.share)
                model.residual_scale.fill_(1.0)
            z[g.entity_global] = model.readout(g, h, known, neighbour_walk=local)
    return out


@dataclass(frozen=True)
class Validation:
    """The graph-wide validation task, the training-graph signals baselines score from, and
    each encoder's entity embeddings (every entity in its own shard). The embeddings do
    not depend on the popularity-prior weight, so calibrating it reuses them.

    ``new_items`` is validation's stand-in for strict cold start: a seeded sample of
    entities with EELs, each embedded as new (:func:`shard_embeddings`' ``pseudo_new``)
    and asked for all its EELs."""

    task: RankingTask
    signals: Signals
    embeddings: dict[str, Tensor]
    new_items: RankingTask


NEW_SHARE = 0.1  # pseudo-new queries: a share of the linked entities, at most MAX_QUERIES


def pseudo_new_task(kg: KGArrays, seed: int) -> RankingTask:
    """A seeded sample of :data:`NEW_SHARE` (at most :data:`MAX_QUERIES`) of ``kg``'s linked
    entities; each one's relevant set is all its EELs, and only itself is not ranked."""
    eel = torch.from_numpy(kg.eel)
    linked = torch.unique(eel[0])
    count = min(MAX_QUERIES, max(1, int(NEW_SHARE * len(linked)))) if len(linked) else 0
    order = torch.randperm(len(linked), generator=torch.Generator().manual_seed(seed))
    chosen = linked[order[:count]]
    links = eel[:, torch.isin(eel[0], chosen)]
    return RankingTask.from_links(links, torch.empty(2, 0, dtype=torch.long), kg.num_entities)


def held_out_task(held_out: Tensor, s: Signals, seed: int) -> RankingTask:
    """Each entity with ``held_out`` EELs ranks every entity but itself and its known links
    (the EELs of ``s``, cut ones included), over a seeded sample of the queries."""
    return RankingTask.from_pairs(held_out, s.eel.indices(), s.log_degree.numel()).sample(seed=seed)


def validation_set(models: ModelSet, shards: list[HeteroData], kg: KGArrays) -> Validation:
    primary = models.primary_checkpoint
    held_out = held_out_pairs(
        shards,
        primary.concept_features,
        list(primary.config.relations),
        primary.params.val_share,
        primary.params.seed,
    )
    s = signals(kg, held_out)
    task = held_out_task(held_out, s, primary.params.seed)
    embeddings = {
        name: shard_embeddings(c, shards, (), None, s.neighbours)[0]
        for name, c in models.checkpoints.items()
    }
    return Validation(task, s, embeddings, pseudo_new_task(kg, primary.params.seed))


@dataclass(frozen=True)
class Calibration:
    """An encoder's readout fitted on validation: the popularity prior's weight ``w`` (and
    the one learned in training), the degree gate's ``κ``, the residual scale ``α``, and
    the prior's weight for queries without EELs (new items)."""

    learned_prior: float
    prior: float
    kappa: float
    scale: float
    new_item_prior: float
    concept_share: float = 0.0


def calibrate(
    models: ModelSet,
    validation: Validation,
    shards: list[HeteroData],
    k: int = 10,
    shares: tuple[float, ...] = SHARE_GRID,
) -> dict[str, Calibration]:
    """For each encoder, the ``(w, κ, α)`` of :data:`PRIOR_GRID` (and the learned ``w``),
    :data:`KAPPA_GRID` and :data:`SCALE_GRID` with the best validation MAP@k, then the
    prior's weight for new items and the concept neighbours' share ``μ`` of ``shares``
    in their walk factors, with the best MAP@k on validation's
    pseudo-new queries.
    :func:`set_calibration` makes the checkpoints use them; the index serves them.

    Trained jointly, ``w`` only needs popularity to tell a link from a uniform random
    pair, while the neighbours of a query are overwhelmingly popular items: the fitted one
    ranks better. ``α = 0`` serves the walk factors alone, so the GNN's residual is kept
    only where it wins on validation. A new item's vector comes from its concepts alone,
    so how much popularity should add to it is fitted apart: a weight fitted on warm
    queries either buries new items' concept neighbours under best-sellers or, on data
    where best-sellers are what new items get, leaves them out.
    """
    out = {}
    pop = popularity(validation.signals)
    for name, checkpoint in models.checkpoints.items():
        config = checkpoint.config
        learned = float(checkpoint.result.state_dict["popularity_weight"])
        priors = (learned, *PRIOR_GRID) if config.popularity_prior else (0.0,)
        grid = [(1.0, a * a, w) for a in SCALE_GRID for w in priors]
        best: tuple[float, Calibration] | None = None
        kappas = KAPPA_GRID if config.walk_rank else (0.0,)
        readouts = [Readout(kappa) for kappa in kappas]
        for kappa, z in zip(kappas, shard_embeddings(checkpoint, shards, readouts), strict=True):
            parts = [*_parts(z, config.walk_rank), pop]
            (_, a2, w), value = best_of(grid, validation.task.map_at_k_weighted(parts, grid, k))
            if best is None or value > best[0]:
                best = (value, Calibration(learned, w, kappa, a2**0.5, w))
        fitted = best[1]
        new = validation.new_items
        readouts = [Readout(fitted.kappa, mu) for mu in (shares if config.walk_rank else (0.0,))]
        grid = [(1.0, fitted.scale**2, w) for w in priors]
        neighbours = validation.signals.neighbours
        embedded = shard_embeddings(checkpoint, shards, readouts, new.queries, neighbours)
        best_new: tuple[float, float, float] | None = None  # (value, μ, w)
        for readout, z in zip(readouts, embedded, strict=True):
            parts = [*_parts(z, config.walk_rank), pop]
            (_, _, w), value = best_of(grid, new.map_at_k_weighted(parts, grid, k))
            if best_new is None or value > best_new[0]:
                best_new = (value, readout.share, w)
        out[name] = replace(fitted, new_item_prior=best_new[2], concept_share=best_new[1])
    return out


def _parts(z: Tensor, walk_rank: int) -> list[Scores]:
    """The walk-factor and GNN-residual scores of served vectors ``z``, apart."""
    return [embedding_scores(z[:, :walk_rank]), embedding_scores(z[:, walk_rank:])]


def set_calibration(
    models: ModelSet, calibration: dict[str, Calibration], validation: Validation,
    shards: list[HeteroData],
) -> None:  # fmt: skip
    """Make each named checkpoint score with its calibration, and re-embed its validation
    entities with it."""
    for name, c in calibration.items():
        checkpoint = models.checkpoints[name]
        state = checkpoint.result.state_dict
        state["popularity_weight"] = torch.tensor(c.prior)
        state["gate_kappa"] = torch.tensor(c.kappa)
        state["residual_scale"] = torch.tensor(c.scale)
        state["cold_prior_shift"] = torch.tensor(c.new_item_prior - c.prior)
        state["concept_walk_share"] = torch.tensor(c.concept_share)
        neighbours = validation.signals.neighbours
        validation.embeddings[name] = shard_embeddings(checkpoint, shards, (), None, neighbours)[0]


def encoder_map(checkpoint: Checkpoint, validation: Validation, name: str, k: int = 10) -> float:
    """Validation MAP@k of an encoder's own score (popularity prior included)."""
    model, h = checkpoint.model(), validation.embeddings[name]
    everyone = torch.arange(h.shape[0])
    log_degree = validation.signals.log_degree
    return validation.task.map_at_k(lambda q: model.score_matrix(h, q, everyone, log_degree), k)


def compare(models: ModelSet, validation: Validation, k: int = 10) -> list[Row]:
    """MAP@k on validation of every variant in ``models`` and of the no-learning baselines."""
    task, s = validation.task, validation.signals
    rows = []
    for name, checkpoint in models.checkpoints.items():
        rows.append(Row(name, encoder_map(checkpoint, validation, name, k)))
    for name, table in models.tables.items():
        rows.append(Row(name, task.map_at_k(embedding_scores(table.embeddings), k)))
    # ItemCF, concepts, popularity and their two weight grids in one pass: each grid
    # computed the ItemCF product again (about 17 s a time at 10^7 interactions)
    parts = [itemcf(s), concepts(s), popularity(s)]
    alone = blend_family({})  # popularity, ItemCF and concepts, each alone
    mixed = [(0.0, 1.0, lam) for lam in GRID]
    blended = [(1.0, b, c) for b, c in itertools.product(GRID, GRID)]
    values = task.map_at_k_weighted(parts, [*alone.values(), *mixed, *blended], k)
    rows += [Row(n, v) for n, v in zip(alone, values[: len(alone)], strict=True)]
    weights, value = best_of(mixed, values[len(alone) : len(alone) + len(mixed)])
    rows.append(Row("popularity+concepts", value, weights[2:]))
    weights, value = best_of(blended, values[len(alone) + len(mixed) :])
    rows.append(Row("blend", value, weights))
    # a scorer for new items: its popularity weight is fitted as theirs is (pseudo-new)
    new = validation.new_items
    # the neighbours (the costly part) found once for the whole grid of w
    grid = [(1.0, w) for w in GRID]
    knn = [concept_neighbour_eels(s), popularity(s)]
    (_, w), _ = best_of(grid, new.map_at_k_weighted(knn, grid, k))
    rows.append(Row("concept-knn", task.map_at_k(concept_knn(s, w), k), (w,)))
    penalties = [rp3_penalty(s, b) for b in BETA_GRID]  # one walk for every β
    values = task.map_at_k_each(rp3(s, 0.0), [partial(torch.mul, other=p) for p in penalties])
    rows.append(_tuned("rp3", values, BETA_GRID))
    if ease_fits(s.eel.shape[0]):  # else left out, and the caller says why
        rows.append(
            _tuned("ease", [task.map_at_k(ease(s, lam), k) for lam in LAMBDA_GRID], LAMBDA_GRID)
        )
    return rows


def _tuned(name: str, values: list[float], grid: tuple[float, ...]) -> Row:
    (param,), value = best_of([(g,) for g in grid], values)
    return Row(name, value, (param,))
