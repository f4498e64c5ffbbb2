"""Entity vectors from truncated SVDs of the training co-engagement graph.

* :func:`walk_factors` (the served model's propagation part): with ``W`` the weighted
  training EELs, ``D`` their weighted degrees and ``X = D^{-1/2} W``,

  .. math::
      X^\\top X = W D^{-1} W, \\qquad (P P)_{ij} = \\frac{(W D^{-1} W)_{ij}}{d_i}
      \\quad (P = D^{-1} W),

  so the rows of ``V S`` (``X ≈ U S Vᵀ`` at rank ``r``) are vectors whose dot products
  rank each query's candidates as RP3β with β = 0 does (two steps of the random walk;
  the query's ``1/d_i`` scales a whole row and changes no ranking). On MovieLens'
  validation EELs, rank 64/128/256/512 reproduce 0.64/0.79/0.90/0.97 of the exact
  two-step walk's MAP@10.
  Inference recomputes them on the graph it embeds (:func:`walk_factors`, then :func:`aligned`), so
  EELs added after training (validation's, an inbox batch's) count at once; an inbox batch
  refines the trained factors instead (:func:`refined_walk`).
* :func:`spectral_embedding` (``TrainParams.id_init="spectral"``): ``U S^{1/2}`` of the
  binary, row-normalised matrix: a damped ItemCF, the id embeddings' optional start.

Rows of entities without training links are zero in both.
"""

from __future__ import annotations

import torch
from torch import Tensor

from training.csr import to_csr

WALK_NORM = 3.0


def _undirected(pairs: Tensor, weights: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Both directions of ``pairs``, duplicates merged (weights summed)."""
    both = torch.cat([pairs, pairs.flip(0)], dim=1)
    matrix = torch.sparse_coo_tensor(
        both, torch.cat([weights, weights]), (n, n), check_invariants=True
    ).coalesce()
    return matrix.indices(), matrix.values()


def _csr_pair(matrix: Tensor) -> tuple[Tensor, Tensor]:
    """``matrix`` (sparse COO) and its transpose, in CSR layout."""
    return to_csr(matrix), to_csr(matrix.t().coalesce())


def _span(y: Tensor) -> Tensor:
    """A well-conditioned basis of ``y``'s column span (``y`` tall): the rows of ``L`` of
    its pivoted LU factorization ``y = P L U``, put back in ``y``'s row order. What the
    subspace iterations need between their products is the span, not an orthonormal
    basis (Halko et al. 2011 orthonormalize at every step; scikit-learn's randomized SVD,
    ``power_iteration_normalizer="LU"``, and fbpca normalize with LU there and
    orthonormalize once at the end). At 400,000 × 512 it takes a third of a Householder
    QR's time (2026-12-07; the same singular values to 2e-6 on MovieLens at rank 512)."""
    lu, pivots, _ = torch.linalg.lu_factor_ex(y)
    _, lower, _ = torch.lu_unpack(lu, pivots, unpack_pivots=False)
    order = list(range(y.shape[0]))  # the row swaps LAPACK made, in order
    for i, p in enumerate((pivots - 1).tolist()):
        order[i], order[p] = order[p], order[i]
    out = torch.empty_like(lower)
    out[torch.tensor(order)] = lower
    return out


def _low_rank(
    matrix: Tensor, rank: int, seed: int, niter: int = 6
) -> tuple[Tensor, Tensor, Tensor]:
    """``(U, S, V)`` of a sparse ``matrix`` at ``rank``: Halko et al.'s randomized SVD
    (their Algorithm 4.4 with ``niter`` subspace iterations, then 5.1), from the seeded
    projection that :func:`torch.svd_lowrank` draws, with the products in CSR (on COO they
    were most of the walk factors' time) and LU between them (:func:`_span`)."""
    x, xt = _csr_pair(matrix)
    projection = torch.randn(matrix.shape[1], rank, generator=torch.Generator().manual_seed(seed))
    q = _span(torch.sparse.mm(x, projection))
    for _ in range(niter):
        q = _span(torch.sparse.mm(x, _span(torch.sparse.mm(xt, q))))
    q = torch.linalg.qr(q).Q
    # Qᵀ X = (Xᵀ Q)ᵀ: the SVD of the tall (n, rank) block gives X's V as its U
    v, s, wt = torch.linalg.svd(torch.sparse.mm(xt, q), full_matrices=False)
    return q @ wt.t(), s, v


def _walk_matrix(pairs: Tensor, weights: Tensor, n: int) -> Tensor:
    """``X = D^{-1/2} W`` (sparse) of undirected, weighted ``pairs``."""
    (rows, cols), w = _undirected(pairs, weights.float(), n)
    degree = torch.zeros(n).index_add_(0, rows, w)
    return torch.sparse_coo_tensor(
        torch.stack([rows, cols]), w * degree[rows].rsqrt(), (n, n), check_invariants=True
    ).coalesce()


def _only_linked(out: Tensor, pairs: Tensor) -> Tensor:
    """``out`` with exact zero rows for entities in no pair. The factorizations leave
    round-off there (Householder QR mixes rows; the refinement starts from seeded noise),
    and a zero row is what says "no walk factors of its own" (``EntityEncoder.readout``):
    with 1e-6 of noise a new item was served that noise instead of predicted factors."""
    linked = torch.zeros(out.shape[0], dtype=torch.bool)
    linked[pairs.flatten()] = True
    return out * linked.unsqueeze(1)


def _walk_scale(out: Tensor) -> Tensor:
    # a scale the link logits can use: mean squared row norm WALK_NORM² (raw, an entity's
    # best dot products are about 0.2 on MovieLens, and a residual h of unit-scale
    # inputs outweighed them from the first step)
    norms = out.pow(2).sum(1)
    return out * WALK_NORM / norms[norms > 0].mean().clamp(min=1e-12).sqrt()


def walk_factors(pairs: Tensor, weights: Tensor, num_entities: int, rank: int, seed: int) -> Tensor:
    """``(num_entities, rank)`` vectors ``V S`` of ``D^{-1/2} W`` for undirected, weighted
    ``pairs`` ``(2, P)``, scaled to a mean squared row norm of ``WALK_NORM²``.
    Deterministic per ``seed``; columns past the graph's rank are zero."""
    n = num_entities
    out = torch.zeros(n, rank)
    if pairs.shape[1] == 0 or rank == 0:
        return out
    q = min(rank, n)
    _, s, v = _low_rank(_walk_matrix(pairs, weights, n), q, seed)
    out[:, :q] = v * s
    return _walk_scale(_only_linked(out, pairs))


def truncated(walk: Tensor, rank: int) -> Tensor:
    """The leading ``rank`` columns of :func:`walk_factors` ``walk`` (columns come in
    decreasing singular value), rescaled as :func:`walk_factors` scales its output: the
    factors of a smaller rank from one decomposition."""
    return _walk_scale(walk[:, :rank].clone())


def refined_walk(
    pairs: Tensor, weights: Tensor, num_entities: int, start: Tensor, iterations: int = 2
) -> Tensor:
    """:func:`walk_factors` of a graph grown from the one that ``start`` (its walk
    factors, rows = entities, any basis) was computed on, such as the graph after an inbox
    batch: ``iterations`` steps of subspace iteration on ``XᵀX`` from ``start``'s columns,
    then Rayleigh-Ritz (``X Q = U_b S W_bᵀ`` gives ``V S = Q W_b S``). Where the graph
    changed little the subspace is already nearly exact: with three steps, a third of the
    time of a fresh randomized SVD (six power iterations from random vectors) on the
    benchmark lake."""
    n, rank = num_entities, start.shape[1]
    if pairs.shape[1] == 0 or rank == 0:
        return torch.zeros(n, rank)
    x, xt = _csr_pair(_walk_matrix(pairs, weights, n))
    q = min(rank, n)  # as in walk_factors: columns past the graph's size stay zero
    y = torch.zeros(n, q)
    y[: min(n, len(start))] = start[:n, :q]
    # columns past the old graph's rank are zero: seeded noise keeps the basis full
    y += 1e-6 * torch.randn(n, q, generator=torch.Generator().manual_seed(0))
    for _ in range(iterations):
        y = _span(torch.sparse.mm(xt, torch.sparse.mm(x, y)))
    y = torch.linalg.qr(y).Q
    _, s, wt = torch.linalg.svd(torch.sparse.mm(x, y), full_matrices=False)
    out = torch.zeros(n, rank)
    out[:, :q] = y @ wt.t() * s
    return _walk_scale(_only_linked(out, pairs))


def aligned(walk: Tensor, reference: Tensor) -> Tensor:
    """:func:`walk_factors` ``walk`` of a (newer, bigger) graph, rotated onto the basis of
    the ``reference`` factors a model was trained with: the orthogonal ``R`` minimising
    ``‖E R − E_ref‖`` over the entities both have (Procrustes: ``R = U Vᵀ`` from the SVD
    of ``Eᵀ E_ref``). Dot products are unchanged by ``R``; what it keeps valid is the
    model's map from its output to walk factors (``ê``) for entities without any."""
    n = min(walk.shape[0], reference.shape[0])
    both = (walk[:n].abs().sum(1) > 0) & (reference[:n].abs().sum(1) > 0)
    if not both.any():
        return walk
    u, _, vt = torch.linalg.svd(walk[:n][both].t() @ reference[:n][both])
    return walk @ (u @ vt)


def spectral_embedding(pairs: Tensor, num_entities: int, dim: int, seed: int) -> Tensor:
    """``(num_entities, dim)`` vectors ``U S^{1/2}`` from undirected ``pairs`` ``(2, P)``,
    scaled to unit mean row norm (the scale of the other inputs and of Adam's steps)."""
    n = num_entities
    (rows, cols), _ = _undirected(pairs, torch.ones(pairs.shape[1]), n)
    degree = torch.bincount(rows, minlength=n).float()
    matrix = torch.sparse_coo_tensor(
        torch.stack([rows, cols]), degree[rows].rsqrt(), (n, n), check_invariants=True
    ).coalesce()
    rank = min(dim, n)
    u, s, _ = _low_rank(matrix, rank, seed)
    out = torch.zeros(n, dim)
    out[:, :rank] = u * s.sqrt()
    norms = out.norm(dim=1)
    return out / norms[norms > 0].mean().clamp(min=1e-12)
