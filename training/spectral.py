"""Spectral entity vectors: a truncated SVD of the row-normalised co-engagement matrix.

With ``Â`` the training EELs, rows L2-normalised, and ``Â ≈ U S Vᵀ`` at rank ``d``, the rows
of ``U S^{1/2}`` are entity vectors whose dot products approximate a damped ItemCF
similarity (``Â Âᵀ = U S² Uᵀ``), up to one global scale. They serve as the starting
point of the id embeddings: a full-batch GNN gets one optimizer step per shard and epoch,
far too few to learn id embeddings from random vectors, and the SVD takes about a second
on MovieLens.
"""

from __future__ import annotations

import torch
from torch import Tensor


def spectral_embedding(pairs: Tensor, num_entities: int, dim: int, seed: int) -> Tensor:
    """``(num_entities, dim)`` vectors from undirected ``pairs`` ``(2, P)``; rows of entities
    without links are zero. Deterministic for a given ``seed``."""
    n = num_entities
    both = torch.cat([pairs, pairs.flip(0)], dim=1)
    both = torch.unique(both[0] * n + both[1])
    rows, cols = both // n, both % n
    degree = torch.bincount(rows, minlength=n).float()
    values = degree[rows].rsqrt()
    matrix = torch.sparse_coo_tensor(
        torch.stack([rows, cols]), values, (n, n), check_invariants=True
    ).coalesce()
    rank = min(dim, n)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # svd_lowrank draws a random projection
    try:
        u, s, _ = torch.svd_lowrank(matrix, q=rank, niter=4)
    finally:
        torch.random.set_rng_state(state)
    out = torch.zeros(n, dim)
    out[:, :rank] = u * s.sqrt()
    # rows of unit mean norm: on the scale of the other inputs (popularity embeddings of
    # std 0.1 per channel) and of Adam's steps, which would otherwise wash the SVD out
    norms = out.norm(dim=1)
    return out / norms[norms > 0].mean().clamp(min=1e-12)
