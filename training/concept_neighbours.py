r"""Concept neighbours: the entities nearest to an entity in its concepts, and what they carry.

A new item has concepts and nothing else. The entities that share its concepts have
co-engagements, and those say where it belongs far better than the concepts alone:
on the demo lake, ranking a new item's candidates by its concept neighbours'
co-engagement rows scores test strict cold start MAP@10 0.43, against 0.28 for
popularity plus concept cosine.

Each entity's row of concepts is TF-IDF weighted and L2-normalised (``tf = 1``,
``idf = log(N / df)``), neighbours are by cosine, and an entity's neighbour weights are its
:data:`NEIGHBOURS` largest cosines among the ``candidates`` (never itself), normalised to
sum to one:

.. math::
    s_{ik} = \frac{\cos(c_i, c_k)}{\sum_{k' \in N(i)} \cos(c_i, c_{k'})},
    \qquad k \in N(i) = \operatorname{top}_{K}\{\cos(c_i, c_k) : k \in \text{candidates}\}.

The weights average per-entity rows: walk factors (a new item's predicted walk factors,
:meth:`ConceptNeighbours.walk`, :meth:`training.model.EntityEncoder.readout`) or EEL rows
(the ``concept-knn`` baseline, :mod:`training.baselines`).
"""

from __future__ import annotations

import hashlib
from functools import cached_property

import torch
from torch import Tensor

from training.csr import to_csr
from training.kg_arrays import KGArrays

# neighbours averaged: on the demo lake 50 gave 0.41, 200 gave 0.43 and all of them 0.43
NEIGHBOURS = 200
BATCH = 256  # rows of the dense (batch, N) cosine matrix held at once
ROUNDING = 6  # decimals of a cosine kept when choosing neighbours
# candidates a neighbour is looked for among: every entity with EELs of the lakes in
# docs/quality.md, a seeded sample of them above that (cost: queries x pool)
MAX_CANDIDATES = 20_000


def concept_matrix(kg: KGArrays) -> Tensor:
    """``(N, C)`` sparse: each entity's TF-IDF concept row, L2-normalised, over every concept
    of every type (types side by side)."""
    n = kg.num_entities
    rows, cols, offset = [], [], 0
    for (_, ctype), edges in sorted(kg.concept_edges.items()):
        rows.append(torch.from_numpy(edges[0]))
        cols.append(torch.from_numpy(edges[1]) + offset)
        offset += kg.num_nodes[ctype]
    row, col = (
        (torch.cat(rows), torch.cat(cols)) if rows else (torch.empty(0, dtype=torch.long),) * 2
    )
    width = max(offset, 1)
    pairs = torch.unique(row * width + col)
    row, col = pairs // width, pairs % width
    df = torch.bincount(col, minlength=width).float()
    idf = torch.log(n / df.clamp(min=1))[col]
    norm = torch.zeros(n).index_add_(0, row, idf**2).sqrt()
    values = idf / norm[row].clamp(min=1e-12)
    return torch.sparse_coo_tensor(
        torch.stack([row, col]), values, (n, width), check_invariants=True
    ).coalesce()


def sparse_product(left: Tensor, right: Tensor) -> Tensor:
    """A sparse ``left`` times ``right`` (sparse or dense; COO times COO goes through CSR
    inside torch)."""
    return torch.sparse.mm(left, right)


def sparse_rows(matrix: Tensor, q: Tensor, right: Tensor) -> Tensor:
    """Rows ``q`` of a sparse COO ``matrix`` times ``right`` (dense, or sparse COO).

    Sparse times sparse stays in COO: torch's CSR times CSR product on CPU (about a fifth
    faster) keeps about 0.7 MB of every row it computed (pytorch/pytorch#109445), which
    took the distillation teacher of 400,000 entities past 24 GB; COO's keeps nothing."""
    return sparse_product(matrix.index_select(0, q), right)


def top_neighbours(
    concepts: Tensor, pool_csr: Tensor, q: Tensor, pool: Tensor, k: int = NEIGHBOURS
) -> tuple[Tensor, Tensor]:
    """``(|q|, min(k, P))`` each: the columns (ascending) and weights ``s_qk`` of the
    module docstring among the ``pool`` ``(P,)`` of candidates (ascending ids), each row's
    weights summing to one, or to zero for an entity with no concept shared with any of
    them. ``pool_csr`` is the pool's rows of ``concepts`` in CSR layout, built once by the
    caller (its product with the queries' dense rows took half the time of the
    sparse-sparse one)."""
    size = len(pool)
    cos = sparse_product(pool_csr, concepts.index_select(0, q).to_dense().t()).t()
    # keys in float64 (one pass each, in place): cosines rounded to ROUNDING decimals as an
    # integer count of steps, so that entities with the same concepts get the same
    # neighbours (float noise in the products would otherwise pick among tied candidates
    # differently); times P plus P - 1 - position, so that ties go to the lower column
    # (the pool is ascending), the same way for every row. Exact below 2^53 (10^6 steps x
    # P). Rounded and offset out of place, this took 2.5x as long as the topk that follows.
    scale = 10.0**ROUNDING
    key = cos.to(torch.float64).mul_(scale).round_()
    at = torch.searchsorted(pool, q).clamp(max=max(size - 1, 0))
    own = (pool[at] == q).nonzero().flatten() if size else at[:0]
    key[own, at[own]] = 0.0  # never an entity's own neighbour
    key = torch.add(torch.arange(size - 1, -1, -1, dtype=key.dtype), key, alpha=size, out=key)
    top = torch.topk(key, min(k, size), dim=1).indices
    top = top.sort(dim=1).values  # CSR keeps each row's columns in order
    values = torch.div(key.gather(1, top), size, rounding_mode="floor") / scale
    return pool[top], (values / values.sum(1, keepdim=True).clamp(min=1e-12)).float()


def as_csr(columns: Tensor, values: Tensor, n: int) -> Tensor:
    """``(rows, n)`` sparse CSR of ``(rows, k)`` columns and values per row."""
    crow = torch.arange(len(columns) + 1) * columns.shape[1]
    return torch.sparse_csr_tensor(
        crow, columns.flatten(), values.flatten(), (len(columns), n), check_invariants=False
    )


class ConceptNeighbours:
    """One graph's concept neighbours, found once per candidate set.

    Every encoder of a run embeds the same graph with the same walk factors, so which
    neighbours a new item has, and with what weights, does not depend on the encoder:
    finding them (a cosine row against every entity) took 46% of validation at 40,000
    entities when each encoder and readout found them again. The weights of each
    candidate set asked for are kept, sparse (:data:`NEIGHBOURS` per row).

    Neighbours are looked for in a pool of at most ``max_candidates`` candidates: all of
    them, or a seeded sample (the same entities for every candidate set that holds them).
    Every entity without walk factors asks, so against every candidate the work grew with
    the square of the catalogue: at 400,000 entities (123,201 of them without EELs)
    validation spent over 10 minutes there."""

    def __init__(
        self,
        concepts: Tensor,
        k: int = NEIGHBOURS,
        max_candidates: int = MAX_CANDIDATES,
        seed: int = 0,
    ) -> None:
        self.concepts = concepts
        self.k = k
        self.max_candidates = max_candidates
        self.seed = seed
        self._found: dict[bytes, Tensor] = {}  # candidates' digest -> weights of the others

    @cached_property
    def csr(self) -> Tensor:
        return to_csr(self.concepts)

    @cached_property
    def _draw(self) -> Tensor:
        """Each entity's place in one seeded order: a pool is the candidates first in it."""
        gen = torch.Generator().manual_seed(self.seed)
        return torch.randperm(self.concepts.shape[0], generator=gen)

    def pool(self, candidates: Tensor) -> Tensor:
        """The candidates neighbours are looked for among (ascending ids): all of them, or
        the ``max_candidates`` first in the seeded order."""
        ids = candidates.nonzero().flatten()
        if len(ids) <= self.max_candidates:
            return ids
        first = self._draw[ids].topk(self.max_candidates, largest=False).indices
        return ids[first.sort().values]

    def weights(self, q: Tensor, candidates: Tensor) -> Tensor:
        """``(|q|, N)`` sparse CSR: :func:`top_neighbours` of entities ``q`` among the
        :meth:`pool` of ``candidates`` ``(N,)`` bool, as a matrix."""
        pool = self.pool(candidates.cpu())
        n = self.concepts.shape[0]
        if len(pool) == n:
            rows = self.csr
        else:
            rows = to_csr(self.concepts.index_select(0, pool).coalesce())
        parts = [
            top_neighbours(self.concepts, rows, q[start : start + BATCH], pool, self.k)
            for start in range(0, len(q), BATCH)
        ]
        columns, values = (torch.cat(p) for p in zip(*parts, strict=True))
        return as_csr(columns, values, n)

    def walk(self, walk: Tensor, has: Tensor) -> Tensor:
        """``(N, r)``: for each entity without walk factors of its own (``has`` False), the
        concept neighbours' weighted mean of theirs; zero rows for the others (which keep
        their own)."""
        out = torch.zeros_like(walk)
        has = has.cpu()
        rows = torch.nonzero(~has).flatten()
        if not len(rows) or not bool(has.any()):
            return out
        key = hashlib.blake2b(has.numpy().tobytes(), digest_size=16).digest()
        if key not in self._found:
            self._found[key] = self.weights(rows, has)
        out[rows] = sparse_product(self._found[key], walk.cpu()).to(walk.device)
        return out
