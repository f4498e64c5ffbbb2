"""No-learning baselines, as score functions over all entities.

Strong on real data, especially for items without interactions, so every learned model
is compared against them on the same split:

* **popularity**: ``log(1 + deg_j)`` over the training EELs, the same for every query;
* **ItemCF**: cosine similarity of the items' weighted co-engagement rows (``W`` of the
  training EELs, ``ŵ_i = W_i / ‖W_i‖``): two items are similar when the same items are
  co-engaged with both, so held-out links can be found (the direct weight of a held-out
  link is gone with it);
* **concepts**: cosine of TF-IDF vectors over concepts (``tf = 1``, ``idf = log(N / df)``);
* **popularity + concepts**: ``cos_ij + λ · log(1 + deg_j)``;
* **blend**: ``a · ItemCF_ij + b · cos_ij + c · log(1 + deg_j)``, weights tuned on validation
  (:func:`best_of` a grid), as is λ;
* **concept-kNN**: what the entities nearest in concepts are co-engaged with,
  ``Σ_k s_ik ŵ_k + w · log(1 + deg_j)`` over the :data:`~training.concept_neighbours.NEIGHBOURS`
  linked entities of largest concept cosine (:mod:`training.concept_neighbours`), ``w`` tuned on
  validation's pseudo-new items: the content-to-CF bar for new items;
* **RP3β** (Paudel et al. 2016): two steps of the random walk over the training EELs, each
  target divided by its popularity: ``(P P)_ij / deg_j^β`` with ``P`` the row-stochastic
  EEL matrix, β tuned on validation;
* **EASE** (Steck 2019): the closed-form item-item regression on the training EEL
  adjacency ``A`` (rows L2-normalised): ``P = (AᵀA + λI)⁻¹``, ``B = I − P·diag(1/diag(P))``
  (so ``diag(B) = 0``), an entity's scores ``A_i B`` (its EEL row as the history); λ tuned
  on validation. Dense ``N × N``: skipped above :data:`EASE_MAX_ENTITIES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import Tensor

from training.concept_neighbours import (
    ConceptNeighbours,
    concept_matrix,
    sparse_product,
    sparse_rows,
)
from training.kg_arrays import KGArrays

Scores = Callable[[Tensor], Tensor]
EASE_MAX_ENTITIES = 15_000  # four dense N x N float32 matrices: 3.6 GB at this size


@dataclass(frozen=True)
class Signals:
    """Sparse item-item and item-concept matrices of the training graph."""

    eel: Tensor  # (N, N) sparse COO, training EEL weights, rows L2-normalised
    concepts: Tensor  # (N, C) sparse COO, L2-normalised TF-IDF rows
    log_degree: Tensor  # (N,)

    # the transposes the cosines multiply by, built once however many scorers (the
    # baselines, each blend, each comparison) are made from these signals
    @cached_property
    def eel_t(self) -> Tensor:
        return self.eel.t().coalesce()

    @cached_property
    def concepts_t(self) -> Tensor:
        return self.concepts.t().coalesce()

    @cached_property
    def neighbours(self) -> ConceptNeighbours:
        """Concept neighbours (the concept-kNN baseline's, and new items' walk factors')."""
        return ConceptNeighbours(self.concepts)

    @cached_property
    def transition(self) -> Tensor:
        """The row-stochastic EEL matrix (RP3β's one step of the walk)."""
        rows, values = self.eel.indices()[0], self.eel.values()
        total = torch.zeros(self.eel.shape[0]).index_add_(0, rows, values)
        return torch.sparse_coo_tensor(
            self.eel.indices(),
            values / total[rows].clamp(min=1e-12),
            self.eel.shape,
            check_invariants=True,
        ).coalesce()

    @cached_property
    def gram(self) -> Tensor:
        """``AᵀA`` of the EEL matrix, dense (EASE's normal equations)."""
        a = self.eel.to_dense()
        return a.t() @ a


def signals(kg: KGArrays, held_out: Tensor) -> Signals:
    """The training view of ``kg``: EELs minus the ``held_out`` pairs (both directions)."""
    n = kg.num_entities
    train = kg.without_eels(held_out.numpy())
    eel = torch.from_numpy(train.eel)
    weight = torch.from_numpy(train.eel_weight).float()
    degree = torch.bincount(eel[0], minlength=n).float()
    row_norm = torch.zeros(n).index_add_(0, eel[0], weight**2).sqrt()
    weight = weight / row_norm[eel[0]].clamp(min=1e-12)
    return Signals(
        eel=torch.sparse_coo_tensor(eel, weight, (n, n), check_invariants=True).coalesce(),
        concepts=concept_matrix(kg),
        log_degree=torch.log1p(degree),
    )


def _cosine(matrix: Tensor, transposed: Tensor) -> Scores:
    """``M_q Mᵀ`` for a sparse ``matrix`` of L2-normalised rows: the queries' cosine with
    every row. Sparse times sparse touches only the queries' neighbours' rows; a sparse
    matrix times the queries' dense rows swept all of ``M`` per batch (4.3 s against
    0.04 s for 256 ItemCF queries over 40,000 entities and 2.4M EELs)."""

    return lambda q: sparse_rows(matrix, q, transposed).to_dense()


def popularity(s: Signals) -> Scores:
    return lambda q: s.log_degree.expand(len(q), -1)


def itemcf(s: Signals) -> Scores:
    return _cosine(s.eel, s.eel_t)


def concepts(s: Signals) -> Scores:
    return _cosine(s.concepts, s.concepts_t)


def blend_family(tuned: dict[str, tuple[float, ...]]) -> dict[str, tuple[float, ...]]:
    """The baselines that are weighted sums of ItemCF, concepts and popularity (in that
    order), by their weights; the weighted ones as tuned on validation."""
    out = {"popularity": (0.0, 0.0, 1.0), "itemcf": (1.0, 0.0, 0.0), "concepts": (0.0, 1.0, 0.0)}
    if "popularity+concepts" in tuned:
        out["popularity+concepts"] = (0.0, 1.0, *tuned["popularity+concepts"])
    if "blend" in tuned:
        out["blend"] = tuned["blend"]
    return out


def blend(s: Signals, a: float, b: float, c: float) -> Scores:
    """``a · itemcf + b · concepts + c · log(1 + deg)``; a part weighted zero is not
    computed (``popularity+concepts`` is ``a = 0``: its ItemCF product, the costly part,
    was computed to be multiplied by zero)."""
    parts = [(w, f) for w, f in ((a, itemcf(s)), (b, concepts(s))) if w]

    def scores(q: Tensor) -> Tensor:
        if not parts:
            return (c * s.log_degree).expand(len(q), -1)
        terms = [w * f(q) for w, f in parts]
        return sum(terms[1:], terms[0]) + c * s.log_degree

    return scores


def rp3_penalty(s: Signals, beta: float) -> Tensor:
    """RP3β's column penalty ``max(deg_j, 1)^-β``, ``(N,)``."""
    return torch.expm1(s.log_degree).clamp(min=1.0) ** -beta


def rp3(s: Signals, beta: float) -> Scores:
    def walk(q: Tensor) -> Tensor:
        return sparse_rows(s.transition, q, s.transition).to_dense()

    if not beta:  # a penalty of ones: a full pass over every score for nothing (the teacher)
        return walk
    penalty = rp3_penalty(s, beta)
    return lambda q: walk(q) * penalty


def concept_neighbour_eels(s: Signals) -> Scores:
    """What the entities nearest in concepts are co-engaged with: ``Σ_k s_qk ŵ_k``,
    ``s_qk`` the concept-neighbour weights (:mod:`training.concept_neighbours`) over
    entities with EELs, ``ŵ_k`` their L2-normalised EEL rows."""
    linked = s.log_degree > 0

    def scores(q: Tensor) -> Tensor:
        # COO times COO (:func:`training.concept_neighbours.sparse_rows` says why)
        return sparse_product(s.neighbours.weights(q, linked).to_sparse_coo(), s.eel).to_dense()

    return scores


def concept_knn(s: Signals, w: float) -> Scores:
    """:func:`concept_neighbour_eels` plus the popularity prior ``w·log(1 + deg_j)``."""
    neighbours = concept_neighbour_eels(s)
    return lambda q: neighbours(q) + w * s.log_degree


def ease_fits(num_entities: int) -> bool:
    return num_entities <= EASE_MAX_ENTITIES


def ease_matrix(gram: Tensor, lam: float) -> Tensor:
    """EASE's ``B`` of the Gram matrix ``AᵀA`` for ridge ``lam`` times the mean of its
    diagonal (a scale-free λ)."""
    g = gram.clone()
    g.diagonal().add_(lam * float(gram.diagonal().mean().clamp(min=1e-12)))
    p = torch.cholesky_inverse(torch.linalg.cholesky(g))
    b = p / (-p.diagonal()).unsqueeze(0)  # B_ij = -P_ij / P_jj
    b.fill_diagonal_(0.0)
    return b


def ease(s: Signals, lam: float) -> Scores:
    b = ease_matrix(s.gram, lam)
    return lambda q: sparse_rows(s.eel, q, b)


def embedding_scores(h: Tensor) -> Scores:
    """A fixed embedding table's score (DeepWalk): ``h_iᵀ h_j``."""
    return lambda q: h[q] @ h.t()


def best_of(grid: list[tuple[float, ...]], values: list[float]) -> tuple[tuple[float, ...], float]:
    """The weights in ``grid`` with the best (validation) value, and that value."""
    best = int(np.nanargmax(values))
    return grid[best], values[best]
