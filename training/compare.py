"""Every trained variant and every no-learning baseline on the same validation split.

The split is the trainer's: each shard's held-out EEL pairs (absent from message passing
and from training targets), mapped to graph-wide ids. Each entity with held-out links
ranks all entities except itself and its training links, by exact scores; the metric is
MAP@K. Baselines with weights or parameters (popularity + concepts, the blend, RP3β's β,
EASE's λ) are tuned on this split, and so is the weight of each encoder's popularity prior
(:func:`calibrate_priors`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from training.baselines import (
    Signals,
    best_of,
    concepts,
    ease,
    ease_fits,
    embedding_scores,
    itemcf,
    popularity,
    rp3,
    signals,
)
from training.checkpoint import Checkpoint, ModelSet
from training.evaluate import RankingTask
from training.hasp import KGArrays
from training.shard_graph import held_out_pairs, shard_graph

GRID = (0.0, 0.03, 0.1, 0.3, 1.0)
PRIOR_GRID = (0.0, 0.03, 0.1, 0.3, 1.0, 3.0)
BETA_GRID = (0.0, 0.25, 0.5, 0.75)  # RP3β's popularity penalty
LAMBDA_GRID = (3.0, 30.0, 300.0, 3000.0)  # EASE's ridge, times the mean of diag(AᵀA)


@dataclass(frozen=True)
class Row:
    name: str
    map_at_k: float
    weights: tuple[float, ...] = ()


@torch.no_grad()
def shard_embeddings(checkpoint: Checkpoint, shards: list[HeteroData]) -> Tensor:
    """``(num_entities, dim)``: each entity embedded by the model in its own shard."""
    model = checkpoint.model()
    relations = list(checkpoint.config.relations)
    h = torch.zeros(checkpoint.config.num_entities, checkpoint.config.dim)
    for k, shard in enumerate(shards):
        g = shard_graph(
            shard,
            checkpoint.concept_features,
            relations,
            checkpoint.params.val_share,
            checkpoint.params.seed + k,
        )
        h[g.entity_global] = model(g)
    return h


@dataclass(frozen=True)
class Validation:
    """The graph-wide validation task, the training-graph signals baselines score from, and
    each encoder's entity embeddings (every entity in its own shard). The embeddings do
    not depend on the popularity-prior weight, so calibrating it reuses them."""

    task: RankingTask
    signals: Signals
    embeddings: dict[str, Tensor]


def validation_set(models: ModelSet, shards: list[HeteroData], kg: KGArrays) -> Validation:
    best = models.best
    held_out = held_out_pairs(
        shards,
        best.concept_features,
        list(best.config.relations),
        best.params.val_share,
        best.params.seed,
    )
    s = signals(kg, held_out)
    # every EEL not held out is known (cut EELs too, which ItemCF sees): not ranked
    task = RankingTask.from_pairs(held_out, s.eel.indices(), kg.num_entities)
    embeddings = {name: shard_embeddings(c, shards) for name, c in models.checkpoints.items()}
    return Validation(task, s, embeddings)


def calibrate_priors(
    models: ModelSet, validation: Validation, k: int = 10
) -> dict[str, tuple[float, float]]:
    """For each encoder with a popularity prior, the weight ``w`` (the learned one or one of
    :data:`PRIOR_GRID`) with the best validation MAP@k: ``{name: (learned, chosen)}``.
    :func:`set_prior_weights` makes the checkpoints use the chosen ones.

    Trained jointly, ``w`` stays small (about 0.03 on MovieLens, 0.06 on the demo data):
    the objective only needs popularity to tell a link from a uniform random pair, while
    the neighbours of a query are overwhelmingly popular items. One scalar fitted on
    validation lifted demo validation MAP@10 from 0.05 to 0.12. The index serves the
    chosen ``w``, so it serves the score that was validated.
    """
    out = {}
    pop = popularity(validation.signals)
    for name, checkpoint in models.checkpoints.items():
        if not checkpoint.config.popularity_prior:
            continue
        h = validation.embeddings[name]
        learned = float(checkpoint.result.state_dict["popularity_weight"])
        grid = [(1.0, w) for w in (learned, *PRIOR_GRID)]
        values = validation.task.map_at_k_weighted([embedding_scores(h), pop], grid, k)
        (_, chosen), _ = best_of(grid, values)
        out[name] = (learned, chosen)
    return out


def set_prior_weights(models: ModelSet, weights: dict[str, tuple[float, float]]) -> None:
    """Make each named checkpoint score with its chosen popularity-prior weight."""
    for name, (_, chosen) in weights.items():
        models.checkpoints[name].result.state_dict["popularity_weight"] = torch.tensor(chosen)


def compare(models: ModelSet, validation: Validation, k: int = 10) -> list[Row]:
    """MAP@k on validation of every variant in ``models`` and of the no-learning baselines."""
    task, s = validation.task, validation.signals
    rows = []
    everyone = torch.arange(s.log_degree.numel())
    for name, checkpoint in models.checkpoints.items():
        model, h = checkpoint.model(), validation.embeddings[name]
        # the model's own score, popularity prior included when it has one
        scores = lambda q, m=model, h=h: m.score_matrix(h, q, everyone, s.log_degree)  # noqa: E731
        rows.append(Row(name, task.map_at_k(scores, k)))
    for name, table in models.tables.items():
        rows.append(Row(name, task.map_at_k(embedding_scores(table.embeddings), k)))
    rows += [
        Row("popularity", task.map_at_k(popularity(s), k)),
        Row("itemcf", task.map_at_k(itemcf(s), k)),
        Row("concepts", task.map_at_k(concepts(s), k)),
    ]
    parts = [itemcf(s), concepts(s), popularity(s)]
    grid = [(0.0, 1.0, lam) for lam in GRID]
    weights, value = best_of(grid, task.map_at_k_weighted(parts, grid, k))
    rows.append(Row("popularity+concepts", value, weights[2:]))
    grid = [(1.0, b, c) for b, c in itertools.product(GRID, GRID)]
    weights, value = best_of(grid, task.map_at_k_weighted(parts, grid, k))
    rows.append(Row("blend", value, weights))
    rows.append(_tuned("rp3", [task.map_at_k(rp3(s, b), k) for b in BETA_GRID], BETA_GRID))
    if ease_fits(s.eel.shape[0]):  # else left out, and the caller says why
        rows.append(
            _tuned("ease", [task.map_at_k(ease(s, lam), k) for lam in LAMBDA_GRID], LAMBDA_GRID)
        )
    return rows


def _tuned(name: str, values: list[float], grid: tuple[float, ...]) -> Row:
    (param,), value = best_of([(g,) for g in grid], values)
    return Row(name, value, (param,))
