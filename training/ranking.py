"""Ranking metrics and exact top-k retrieval (batched matrix products, no ANN).

Average precision at K for one query with relevant set R and ranked list r_1..r_K:

.. math::
    AP@K = \\frac{1}{\\min(|R|, K)} \\sum_{k=1}^{K} P@k \\cdot [r_k \\in R]

Queries with an empty R carry no information and are left out of the mean (their AP is
NaN). Ties in score are broken by the lower candidate id, so a ranking is reproducible.

A task ranks every query against all N entities: its cost is ``|Q|·N``. So that no step
grows faster than its input, a task is ranked over a seeded sample of at most
:data:`MAX_QUERIES` queries (:meth:`RankingTask.sample`), and the mean is reported with a
percentile bootstrap interval over the sampled queries (:func:`bootstrap_interval`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


def hits_matrix(ranked: Tensor, relevant: list[Tensor]) -> Tensor:
    """``(B, K)`` bool: whether ``ranked[b, k]`` is in ``relevant[b]`` (one ``isin`` call)."""
    sizes = torch.tensor([r.numel() for r in relevant], dtype=torch.long)
    flat = torch.cat([r.long().cpu() for r in relevant]) if relevant else torch.empty(0)
    span = (
        int(max(int(ranked.max()) if ranked.numel() else 0, int(flat.max()) if flat.numel() else 0))
        + 1
    )
    keys = torch.repeat_interleave(torch.arange(len(relevant)), sizes) * span + flat
    rows = torch.arange(ranked.shape[0]).unsqueeze(1) * span
    return torch.isin(ranked.cpu() + rows, keys)


def average_precision_at_k(ranked: Tensor, relevant: list[Tensor]) -> Tensor:
    """``(B,)`` AP@K of each row of ``ranked`` ``(B, K)`` against its relevant ids."""
    k = ranked.shape[1]
    sizes = torch.tensor([r.numel() for r in relevant], dtype=torch.float)
    hits = hits_matrix(ranked, relevant).float()
    precision = hits.cumsum(1) / torch.arange(1, k + 1)
    ap = (precision * hits).sum(1) / sizes.clamp(max=k, min=1)
    return torch.where(sizes > 0, ap, torch.nan)


def recall_at_k(ranked: Tensor, relevant: list[Tensor]) -> Tensor:
    """``(B,)`` share of each query's relevant ids found in its top K (NaN when none)."""
    sizes = torch.tensor([r.numel() for r in relevant], dtype=torch.float)
    found = hits_matrix(ranked, relevant).float().sum(1)
    return torch.where(sizes > 0, found / sizes.clamp(min=1), torch.nan)


def rank_rows(s: Tensor, k: int) -> Tensor:
    """``(B, k)`` column ids of each row of ``s`` by descending score, ties to the lower id.

    ``torch.topk`` is fast but does not say which of several equal scores it keeps, so in
    rows whose k-th score is tied with a score left out the tied columns are chosen by id
    (:func:`_tied_top_k`).
    """
    k = min(k, s.shape[1])
    values, ids = s.topk(min(k + 1, s.shape[1]), dim=1)
    # a tie crosses the boundary exactly when the (k+1)-th best score equals the k-th:
    # one more top-k column instead of a pass comparing every score with the k-th
    if values.shape[1] > k and bool((tied := values[:, k - 1] == values[:, k]).any()):
        rows = tied.nonzero().squeeze(1)
        ids = ids[:, :k].clone()
        for chunk in rows.split(TIED_ROWS):
            ids[chunk] = _tied_top_k(s[chunk], values[chunk, k - 1], k)
    return _by_score(s, ids[:, :k])


TIED_ROWS = 64  # rows of an int32 key over every column held at once


def _by_score(s: Tensor, ids: Tensor) -> Tensor:
    """``ids`` ordered by descending score of ``s``, equal scores by ascending id."""
    ids = torch.sort(ids, dim=1).values  # id order first: the stable sort keeps it
    return ids.gather(1, torch.argsort(s.gather(1, ids), dim=1, descending=True, stable=True))


def _tied_top_k(s: Tensor, kth: Tensor, k: int) -> Tensor:
    """The columns of a stable descending sort's first ``k`` (in any order), where ``kth``
    is each row's k-th best score: every column above it (fewer than k), then the columns
    equal to it by ascending id. One comparison pass and a top k, where sorting every
    column of a row with a tie at the boundary took most of the evaluation's ranking time
    at 400,000 entities (baselines with coarse scores tie often)."""
    n = s.shape[1]
    kth = kth.unsqueeze(1)
    key = torch.where(s == kth, n - torch.arange(n, dtype=torch.int32, device=s.device), -1)
    key.masked_fill_(s > kth, n + 1)
    return key.topk(k, dim=1).indices


@torch.no_grad()  # ranking only: a model's scores must not build an autograd graph
def top_k(
    scores: Callable[[Tensor], Tensor],
    queries: Tensor,
    k: int,
    exclude: list[Tensor],
    batch_size: int = 256,
) -> Tensor:
    """``(len(queries), k)`` candidate ids by descending score, ``exclude[i]`` removed.

    ``scores(q)`` returns the ``(len(q), N)`` score rows of a batch of queries.
    """
    if not len(queries):  # a setting can be empty: a lake without rare concepts, say
        return torch.empty(0, k, dtype=torch.long)
    out = []
    for start in range(0, len(queries), batch_size):
        batch = queries[start : start + batch_size]
        s = scores(batch).float().clone()
        mask_out(s, exclude[start : start + batch_size])
        out.append(rank_rows(s, k))
    return torch.cat(out)


def weighted_sum(weights: tuple[float, ...], parts: list[Tensor], out: Tensor) -> Tensor:
    """``Σ w_i · parts[i]`` (broadcast to ``out``'s shape) written into ``out``, zero
    weights skipped. A weight grid evaluates this for every tuple into one buffer: summing
    the products allocated a temporary per term and ran 4x slower, and a zeroed tensor per
    tuple spent a sixth of validation's time filling zeros."""
    written = False
    for w, p in zip(weights, parts, strict=True):
        if w and written:
            out.add_(p, alpha=w)
        elif w:
            torch.mul(p.expand_as(out), w, out=out)
            written = True
    return out if written else out.zero_()


def excluded_cells(exclude: list[Tensor], device: torch.device) -> tuple[Tensor, Tensor]:
    """Row and column indices of every ``(row, exclude[row][j])``, for one indexed write:
    a write (and a host-to-device copy) per row made GPU validation launch-bound."""
    sizes = torch.tensor([ids.numel() for ids in exclude])
    rows = torch.repeat_interleave(torch.arange(len(exclude)), sizes)
    cols = torch.cat([ids.long().cpu() for ids in exclude])
    return rows.to(device), cols.to(device)


def mask_out(s: Tensor, exclude: list[Tensor]) -> None:
    """``s[row, exclude[row]] = -inf`` for every row."""
    s[excluded_cells(exclude, s.device)] = -torch.inf


POOL = 256  # per component: the candidates a weight tuple's top k is looked for among


def grid_top_k(
    parts: list[Tensor],
    grid: list[tuple[float, ...]],
    exclude: list[Tensor],
    k: int,
    pool: int = POOL,
) -> Iterator[Tensor]:
    """For each weight tuple ``w`` of ``grid``, the ``(B, k)`` :func:`rank_rows` of
    ``Σ_i w_i · parts[i]`` (``parts`` ``(B, N)`` each, or broadcast to it) with
    ``exclude[b]`` removed from row ``b``: exactly what ranking every column gives.

    Ranking all N columns for each tuple was most of a weight search's time. Instead each
    row's candidates are the union of every part's ``pool`` best columns (excluded
    ones left out; a part that is one row for all, like popularity, is ranked once, its
    excluded columns kept), ranked with the same sums: a column outside them scores at most
    ``Σ_i w_i · b_i``, ``b_i`` the part's ``pool``-th best where ``w_i > 0`` and its row
    minimum where ``w_i < 0``. Where the k-th candidate scores above that bound the
    candidates' top k is the top k; other rows (few) are ranked in full."""
    shape = torch.broadcast_shapes(*(p.shape for p in parts))
    rows, n = shape
    k = min(k, n)
    pool = min(max(pool, k), n)  # at least k candidates, so that a top k is found among them
    excluded = torch.zeros(shape, dtype=torch.bool, device=parts[0].device)
    excluded[excluded_cells(exclude, excluded.device)] = True
    tops, floors, chosen = [], [], []
    for p in parts:
        p = p.expand(shape)
        # one row for every query (popularity): its best columns once, with the excluded
        # ones kept (dropped below); what is left out still scores at most the pool-th best
        shared = p.stride(0) == 0
        own = p[:1] if shared else p
        values, ids = (own if shared else own.masked_fill(excluded, -torch.inf)).topk(pool, dim=1)
        tops.append(values[:, -1].expand(rows))
        floors.append(own.amin(dim=1).expand(rows))
        chosen.append(ids.expand(rows, pool))
    candidates, _ = torch.sort(torch.cat(chosen, dim=1), dim=1)  # id order: ties as rank_rows
    repeated = torch.zeros_like(candidates, dtype=torch.bool)
    repeated[:, 1:] = candidates[:, 1:] == candidates[:, :-1]
    dropped = repeated | excluded.gather(1, candidates)
    gathered = [p.expand(shape).gather(1, candidates) for p in parts]
    s = torch.empty_like(gathered[0])
    for weights in grid:
        weighted_sum(weights, gathered, s)
        s.masked_fill_(dropped, -torch.inf)
        top = rank_rows(s, k)
        bound = torch.zeros(rows, device=s.device)
        for w, top_value, floor in zip(weights, tops, floors, strict=True):
            if w:
                bound += w * (top_value if w > 0 else floor)
        kth = s.gather(1, top[:, -1:]).squeeze(1)
        ranked = candidates.gather(1, top)
        unsure = torch.nonzero(~(kth > bound)).squeeze(1)
        if len(unsure):  # ranked in full
            full = torch.empty(len(unsure), n, device=s.device)
            weighted_sum(weights, [p.expand(shape)[unsure] for p in parts], full)
            full.masked_fill_(excluded[unsure], -torch.inf)
            ranked[unsure] = rank_rows(full, k)
        yield ranked


MAX_QUERIES = 2000  # per setting: the mean's 95% interval is then about ±2 points of MAP
BOOTSTRAP_RESAMPLES = 1000


def bootstrap_interval(
    values: Tensor, level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (NaNs, queries without
    relevant items, left out); NaN bounds when nothing is left."""
    v = values[~values.isnan()].double().numpy()
    if not len(v):
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 100):  # 100 resamples a draw: bounded memory
        n = min(100, resamples - start)
        means[start : start + n] = v[rng.integers(0, len(v), size=(n, len(v)))].mean(1)
    tail = (1 - level) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return float(lo), float(hi)


@dataclass(frozen=True)
class RankingTask:
    """Queries, what counts as relevant for each, and what is not ranked (self, known links)."""

    queries: Tensor
    relevant: list[Tensor]
    exclude: list[Tensor]

    @classmethod
    def from_pairs(cls, held_out: Tensor, known: Tensor, num_entities: int) -> RankingTask:
        """Each entity with held-out links ranks every other; its ``known`` links are skipped."""
        return cls.from_links(torch.cat([held_out, held_out.flip(0)], dim=1), known, num_entities)

    @classmethod
    def from_links(cls, links: Tensor, known: Tensor, num_entities: int) -> RankingTask:
        """Directed ``links`` ``(2, P)``: each ``links[0]`` entity is a query whose relevant
        set is its ``links[1]``; itself and its directed ``known`` links are not ranked."""
        queries = torch.unique(links[0])
        relevant = _neighbours(links, num_entities)
        seen = _neighbours(known, num_entities)
        return cls(
            queries,
            [relevant[int(q)] for q in queries],
            [torch.cat([q.view(1), seen[int(q)]]) for q in queries],
        )

    def sample(self, max_queries: int | None = MAX_QUERIES, seed: int = 0) -> RankingTask:
        """At most ``max_queries`` of the queries, chosen by ``seed`` and kept in query
        order (``None``: all of them)."""
        if max_queries is None or len(self.queries) <= max_queries:
            return self
        order = torch.randperm(len(self.queries), generator=torch.Generator().manual_seed(seed))
        keep = torch.sort(order[:max_queries]).values
        return RankingTask(
            self.queries[keep],
            [self.relevant[i] for i in keep.tolist()],
            [self.exclude[i] for i in keep.tolist()],
        )

    def map_at_k(self, scores: Callable[[Tensor], Tensor], k: int = 10) -> float:
        ranked = top_k(scores, self.queries, k, self.exclude).cpu()
        return float(average_precision_at_k(ranked, self.relevant).nanmean())

    @torch.no_grad()
    def map_at_k_each(
        self,
        scores: Callable[[Tensor], Tensor],
        transforms: list[Callable[[Tensor], Tensor]],
        k: int = 10,
        batch_size: int = 256,
    ) -> list[float]:
        """MAP@k of ``t(scores(q))`` for each ``t`` of ``transforms`` (each returns a new
        tensor), ``scores`` computed once per batch of queries: a parameter search over a
        costly score (RP3β's β over one two-step walk, 68 s of validation's 226 s at 10^7
        interactions when each β walked again). Each equals :meth:`map_at_k` of
        ``t ∘ scores``."""
        ap = torch.zeros(len(transforms))
        count = 0
        for start in range(0, len(self.queries), batch_size):
            base = scores(self.queries[start : start + batch_size]).float()
            relevant = self.relevant[start : start + batch_size]
            exclude = self.exclude[start : start + batch_size]
            for i, transform in enumerate(transforms):
                s = transform(base)
                mask_out(s, exclude)
                ap[i] += average_precision_at_k(rank_rows(s, k).cpu(), relevant).nansum()
            count += sum(1 for r in relevant if r.numel())
        return (ap / max(count, 1)).tolist()

    @torch.no_grad()
    def map_at_k_weighted(
        self,
        components: list[Callable[[Tensor], Tensor]],
        grid: list[tuple[float, ...]],
        k: int = 10,
        batch_size: int = 256,
    ) -> list[float]:
        """MAP@k of ``Σ_i w_i · components[i]`` for every weight tuple ``w`` in ``grid``,
        each component scored once per batch of queries (a weight search's cost), each
        tuple ranked by :func:`grid_top_k`."""
        ap = torch.zeros(len(grid))
        count = 0
        for start in range(0, len(self.queries), batch_size):
            batch = self.queries[start : start + batch_size]
            parts = [c(batch).float() for c in components]
            relevant = self.relevant[start : start + batch_size]
            exclude = self.exclude[start : start + batch_size]
            for g, ranked in enumerate(grid_top_k(parts, grid, exclude, k)):
                ap[g] += average_precision_at_k(ranked.cpu(), relevant).nansum()
            count += sum(1 for r in relevant if r.numel())
        return (ap / max(count, 1)).tolist()

    def per_query(
        self, scores: Callable[[Tensor], Tensor], ks: tuple[int, ...] = (10, 50, 100)
    ) -> dict[str, Tensor]:
        """``map@k`` and ``recall@k`` of every query ``(|Q|,)``, from one top-``max(ks)``."""
        return self.metrics(self.rank(scores, max(ks)), ks)

    @torch.no_grad()
    def rank_weighted(
        self,
        components: list[Callable[[Tensor], Tensor]],
        grid: list[tuple[float, ...]],
        k: int,
        batch_size: int = 256,
    ) -> list[Tensor]:
        """For each weight tuple ``w`` of ``grid``, :meth:`rank` of ``Σ_i w_i ·
        components[i]``, each component scored once per batch of queries (scorers that
        share costly parts: the blend and popularity+concepts recomputed ItemCF's and the
        concepts' products that their own rows had just computed)."""
        out: list[list[Tensor]] = [[] for _ in grid]
        for start in range(0, len(self.queries), batch_size):
            parts = [c(self.queries[start : start + batch_size]).float() for c in components]
            exclude = self.exclude[start : start + batch_size]
            for rows, ranked in zip(out, grid_top_k(parts, grid, exclude, k), strict=True):
                rows.append(ranked.cpu())
        return [torch.cat(rows) if rows else torch.empty(0, k, dtype=torch.long) for rows in out]

    def rank(self, scores: Callable[[Tensor], Tensor], k: int) -> Tensor:
        """``(|Q|, k)`` candidates of every query (:func:`top_k`, on the CPU); its first
        ``j < k`` columns are the top ``j`` (ties go to the lower id at every depth)."""
        return top_k(scores, self.queries, k, self.exclude).cpu()

    def metrics(self, ranked: Tensor, ks: tuple[int, ...]) -> dict[str, Tensor]:
        """``map@k`` and ``recall@k`` of every query from its ranking ``(|Q|, ≥ max(ks))``."""
        out = {}
        for k in ks:
            out[f"map@{k}"] = average_precision_at_k(ranked[:, :k], self.relevant)
            out[f"recall@{k}"] = recall_at_k(ranked[:, :k], self.relevant)
        return out


def _neighbours(pairs: Tensor, n: int) -> list[Tensor]:
    order = torch.argsort(pairs[0], stable=True)
    src, dst = pairs[0][order], pairs[1][order]
    counts = torch.bincount(src, minlength=n).tolist()
    return list(torch.split(dst, counts))
