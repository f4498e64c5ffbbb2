"""ANN indexes over the served score: faiss HNSW (optionally 8-bit or fp16 quantized) and
an exact flat index as the reference.

The served score is the model's own, ``h_iᵀh_j + w_i·log(1 + deg_j)``: an item is stored as
``[h_j, log(1 + deg_j)]`` and a query as ``[h_i, w_i]``, so a maximum-inner-product search
ranks by exactly the score the evaluation measured; the query's weight ``w_i`` is free to
differ per query (the model's own for new items, or the caller's).

Maximum inner product is not a metric, and HNSW navigates it poorly (on the MovieLens
walk readout, raw inner-product HNSW stalls at recall@10 0.92 with ef 1024). The standard
reduction (Bachrach et al. 2014) turns it into nearest-neighbour search: an item ``x`` is
stored as ``[x, √(M² − ‖x‖²)]`` and a query ``q`` as ``[c·q, 0]``, so
``‖q' − x'‖² = c²‖q‖² + M² − 2c·qᵀx`` and the L2 order is the inner-product order; scores
are converted back. One ``M`` for every item fails when norms spread (hubs of the walk
factors): items far below ``M`` sit together near the pole ``[0, M]``, where HNSW cannot
tell them apart, and in float32 ``M²`` swamps their inner products (at 400,000 items with
norms from 0.01 to 245, recall@10 0.03 at ef 1024). So the index is norm-ranged (Yan et al.
2018): an item of norm in ``(M/2^(j+1), M/2^j]`` goes to part ``j``, which holds its own
HNSW graph over the reduction with ``M_j = M/2^j``, and each query is scaled to ``‖c·q‖ =
M_j`` for it. Parts are searched from the longest norms down, and a query stops once its
k-th score reaches ``‖q‖·M_j``, the most any item of the next part can score. ``M`` is the
largest item norm at build time times a headroom, so that updated vectors usually still
fit (one that does not is clamped, and ``overflow`` counts it: time to rebuild).

Incremental updates: faiss HNSW cannot delete, so a changed vector is added again under a
new internal row and its old row is masked at search time (``IDSelectorNot``); a new item
is simply added. Row -> entity id lives beside the index (``labels``).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np

MEMBERS, META = "members.npz", "index.json"
PART = "index-{level}.faiss"  # one file per norm level
LEGACY_INDEX = "index.faiss"  # the one part of an index saved before norm ranges
QUANTIZERS = {
    "none": None,
    "sq8": faiss.ScalarQuantizer.QT_8bit,
    "fp16": faiss.ScalarQuantizer.QT_fp16,
}


@dataclass(frozen=True)
class IndexParams:
    kind: str = "hnsw"  # or "flat" (exact)
    m: int = 32
    ef_construction: int = 200
    quantize: str = "none"  # "sq8" or "fp16": a quarter or half of the vector memory
    target_recall: float = 0.95  # recall@10 against exact search that picks ef_search
    ef_grid: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024)  # the cap: 1024
    # an HNSW that misses target_recall at the largest ef is replaced by exact search
    exact_fallback: bool = True
    sample_queries: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("hnsw", "flat"):
            raise ValueError(f"index kind must be 'hnsw' or 'flat', got {self.kind!r}")
        if self.quantize not in QUANTIZERS:
            raise ValueError(f"quantize must be one of {sorted(QUANTIZERS)}, got {self.quantize!r}")
        if not 0 < self.target_recall <= 1:
            raise ValueError(f"target_recall must be in (0, 1], got {self.target_recall}")


def item_vectors(vectors: np.ndarray, log_degree: np.ndarray, prior: bool) -> np.ndarray:
    """``[h_j, log(1 + deg_j)]`` (or ``[h_j, 0]`` for a model without the prior), float32."""
    extra = log_degree if prior else np.zeros_like(log_degree)
    return np.ascontiguousarray(np.column_stack([vectors, extra]), dtype=np.float32)


def query_vectors(vectors: np.ndarray, weight: float | np.ndarray) -> np.ndarray:
    """``[h_i, w_i]``: the query side of the served score (one weight, or one per query)."""
    w = np.broadcast_to(np.asarray(weight, dtype=np.float32).reshape(-1, 1), (len(vectors), 1))
    return np.ascontiguousarray(np.column_stack([vectors, w]), dtype=np.float32)


NORM_HEADROOM = 1.25
# norm levels: part j holds norms in (M/2^(j+1), M/2^j]; below M/2^MAX_LEVEL (zero vectors
# among them) the last part holds them all, as their scores are too small to rank anyway
MAX_LEVEL = 30
# rows upserted since the build that every query also scores exactly (577 floats each: 12
# MFLOP a query at the cap); past it, HNSW alone answers until the nightly rebuild
FRESH_EXACT_MAX = 20_000
DIGEST_BYTES = 20


NEAR_DUPLICATE = 1e-5  # an upserted vector this close to a row (relative) joins it


def vector_digest(vector: np.ndarray) -> bytes:
    """Identity of an item vector, for finding an identical row: rounded to 5 decimals, as
    two inference runs differ in the last float bits (summation order)."""
    rounded = np.round(np.asarray(vector, dtype=np.float64), 5) + 0.0  # -0.0 -> 0.0
    return hashlib.sha1(rounded.tobytes()).digest()


def norm_levels(norms: np.ndarray, max_norm: float) -> np.ndarray:
    """Each norm's part: ``j`` with ``max_norm/2^(j+1) < norm ≤ max_norm/2^j`` (0 above
    ``max_norm``, :data:`MAX_LEVEL` at most)."""
    with np.errstate(divide="ignore"):
        ratio = np.log2(max_norm / np.asarray(norms, dtype=np.float64))
    return np.clip(np.floor(np.nan_to_num(ratio, posinf=MAX_LEVEL)), 0, MAX_LEVEL).astype(np.int64)


def to_l2_items(items: np.ndarray, max_norm: float) -> np.ndarray:
    """``[x, √(M² − ‖x‖²)]`` per row (a row longer than ``M`` is clamped to ``[x, 0]``)."""
    extra = max_norm**2 - np.einsum("ij,ij->i", items, items)
    return np.ascontiguousarray(np.column_stack([items, np.sqrt(np.maximum(extra, 0))]), np.float32)


@dataclass
class VectorIndex:
    """Unique vectors in norm-ranged faiss indexes; each row stands for the entities that
    share it.

    Many new items share a vector (same concepts, no interactions: on MovieLens 9,742
    vectors hold 5,162 distinct ones, one of them 595 times), and exact duplicates wreck
    HNSW's graph (neighbour lists fill with zero-distance copies). So each distinct vector
    is one row; ``members[row]`` lists its entities in id order, which is also how ties
    are broken. ``entity_row[e]`` is entity ``e``'s current row (``-1``: none); a row none of
    whose members is current any more is masked at search time. Row ``r`` lives in part
    ``row_level[r]``, at its rank among that part's rows.
    """

    parts: dict[int, faiss.Index]  # norm level -> the index of its rows
    row_level: np.ndarray  # row -> norm level (int64)
    members: list[np.ndarray]  # row -> int64 entity ids (sorted)
    digests: list[bytes]  # row -> hash of its item vector, to find an identical one
    params: IndexParams
    max_norm: float  # M of level 0; level j's is max_norm / 2^j
    ef_search: int = 64
    deleted: set[int] = field(default_factory=set)  # rows with no current member
    overflow: int = 0  # vectors added with a norm above max_norm (clamped)
    meta: dict = field(default_factory=dict)
    built_rows: int = -1  # rows HNSW's graph was built with (-1: all it holds now)
    _solo_cache: np.ndarray | None = field(default=None, init=False, repr=False)
    _fresh_cache: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False)
    _part_cache: dict | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.built_rows < 0:
            self.built_rows = len(self.members)
        top = max((int(m.max()) for m in self.members if len(m)), default=-1)
        self.entity_row = np.full(top + 1, -1, dtype=np.int64)
        for row, ids in enumerate(self.members):
            self.entity_row[ids] = row
        self.row_of = {d: r for r, d in enumerate(self.digests)}

    @property
    def dim(self) -> int:
        """The query dimension (the index holds one more)."""
        return next(iter(self.parts.values())).d - 1

    def __len__(self) -> int:
        """Entities searchable now."""
        return int((self.entity_row >= 0).sum())

    def contains(self, entity_id: int) -> bool:
        return 0 <= entity_id < len(self.entity_row) and self.entity_row[entity_id] >= 0

    def part_norm(self, level: int) -> float:
        """``M_j``: the reduction's ``M`` in part ``level`` (the most norm its rows have)."""
        return self.max_norm / 2.0**level

    def nbytes(self) -> int:
        """Bytes of the serialized parts."""
        return sum(int(faiss.serialize_index(p).nbytes) for p in self.parts.values())

    def _part_rows(self) -> dict[int, tuple[np.ndarray, faiss.IDSelector | None, tuple]]:
        """Per part: its rows (local -> row), and the selector masking its replaced rows
        with the arrays it points into (faiss holds raw pointers: they must stay
        referenced); cached until the next upsert."""
        cache = self._part_cache
        if cache is None:  # built whole, then published: searches run in threads
            deleted = np.fromiter(self.deleted, dtype=np.int64, count=len(self.deleted))
            cache = {}
            for level in self.parts:
                rows = np.flatnonzero(self.row_level == level)
                masked = np.searchsorted(rows, deleted[self.row_level[deleted] == level])
                selector, keep = None, ()
                if len(masked):
                    batch = faiss.IDSelectorBatch(masked.astype(np.int64))
                    selector = faiss.IDSelectorNot(batch)
                    keep = (masked, batch)
                cache[level] = (rows, selector, keep)
            self._part_cache = cache
        return cache

    def _search_part(
        self, level: int, queries: np.ndarray, norms: np.ndarray, k: int, ef: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(B, k)`` rows and inner-product scores of one part's best rows (``-1`` /
        ``-inf`` where fewer), each query scaled to the part's ``M``."""
        rows, selector, _ = self._part_rows()[level]
        big = self.part_norm(level)
        scale = np.where(norms > 0, big / np.maximum(norms, np.finfo(np.float32).tiny), 1.0)
        padded = np.column_stack([queries * scale[:, None], np.zeros(len(queries))])
        if self.params.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=ef or self.ef_search, sel=selector)
        else:
            params = faiss.SearchParameters(sel=selector) if selector is not None else None
        distances, local = self.parts[level].search(padded.astype(np.float32), k, params=params)
        scaled_sq = (scale * norms)[:, None] ** 2
        scores = (scaled_sq + big**2 - distances) / (2 * scale[:, None])
        found = local >= 0
        return np.where(found, rows[np.maximum(local, 0)], -1), np.where(found, scores, -np.inf)

    def search(
        self, queries: np.ndarray, k: int, ef: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(B, k)`` inner-product scores and entity ids (``-1`` / ``-inf`` where fewer
        than k exist)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        norms = np.sqrt(np.einsum("ij,ij->i", queries, queries, dtype=np.float64))
        rows = np.full((len(queries), k), -1, dtype=np.int64)
        row_scores = np.full((len(queries), k), -np.inf)
        for level in sorted(self.parts):  # longest norms first
            # no row of this part can beat a query's k-th score above ‖q‖·M_j
            open_ = np.flatnonzero(row_scores[:, -1] < norms * self.part_norm(level))
            if not len(open_):
                break
            found, scores = self._search_part(level, queries[open_], norms[open_], k, ef)
            both = np.concatenate([row_scores[open_], scores], axis=1)
            best = np.argsort(-both, axis=1, kind="stable")[:, :k]
            rows[open_] = np.take_along_axis(np.concatenate([rows[open_], found], 1), best, 1)
            row_scores[open_] = np.take_along_axis(both, best, 1)
        padded = np.column_stack([queries, np.zeros(len(queries), np.float32)])
        rows, row_scores = self._with_fresh_rows(padded, rows, row_scores, k)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        # Most rows stand for one entity: a query whose rows all do (or are faiss's -1
        # padding) maps row for row, in one step for the batch. Only queries that meet a
        # shared row (tied new items) expand it in the loop below; a per-query loop for
        # every query capped a 16-core machine at ~16k queries a second.
        solo = np.where(rows >= 0, self._solo()[np.maximum(rows, 0)], -1)
        simple = ((solo >= 0) | (rows < 0)).all(axis=1)
        ids[simple] = solo[simple]
        scores[simple] = np.where(rows[simple] >= 0, row_scores[simple], -np.inf)
        for b in np.flatnonzero(~simple):
            filled = 0
            for row, score in zip(rows[b], row_scores[b], strict=True):
                if row < 0 or filled == k:
                    break
                group = self.members[row]
                group = group[self.entity_row[group] == row][: k - filled]
                ids[b, filled : filled + len(group)] = group
                scores[b, filled : filled + len(group)] = score
                filled += len(group)
        return scores, ids

    def _stored(self, rows: np.ndarray) -> np.ndarray:
        """``(n, d + 1)`` the stored (reduced) vectors of ``rows``."""
        parts = self._part_rows()
        stored = [
            self.parts[level].reconstruct(int(np.searchsorted(parts[level][0], row)))
            for row, level in zip(rows.tolist(), self.row_level[rows].tolist(), strict=True)
        ]
        return np.stack(stored) if stored else np.zeros((0, self.dim + 1), np.float32)

    def _fresh(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows upserted into HNSW's graph after it was built (and still current), with
        their stored vectors; cached until the next upsert."""
        if self._fresh_cache is None:
            rows = np.array(
                [r for r in range(self.built_rows, len(self.members)) if r not in self.deleted],
                dtype=np.int64,
            )
            self._fresh_cache = (rows, self._stored(rows))
        return self._fresh_cache

    def _with_fresh_rows(
        self, padded: np.ndarray, rows: np.ndarray, row_scores: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """HNSW's answer merged with an exact pass over the rows upserted since the build.

        A handful of rows joined to a built graph are reached less often than the rows it
        was built with: on the benchmark lake ef 1,024 found 5 of the 7 new items that the
        exact scores put in some warm item's top-10. They are few (the drift check asks for
        a retrain past a tenth of the entities), so they are scored exactly for every query.
        """
        if self.params.kind != "hnsw":
            return rows, row_scores
        fresh, vectors = self._fresh()
        if not len(fresh) or len(fresh) > FRESH_EXACT_MAX:
            return rows, row_scores
        found = np.where((rows >= 0) & ~np.isin(rows, fresh), row_scores, -np.inf)
        every = np.concatenate([rows, np.broadcast_to(fresh, (len(rows), len(fresh)))], axis=1)
        scores = np.concatenate([found, padded @ vectors.T], axis=1)
        best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        scores = np.take_along_axis(scores, best, axis=1)
        return np.where(np.isfinite(scores), np.take_along_axis(every, best, 1), -1), scores

    def _solo(self) -> np.ndarray:
        """``(rows,)`` the entity of each row with exactly one current member, else ``-1``;
        cached until the next upsert."""
        if self._solo_cache is None:
            sizes = np.fromiter(map(len, self.members), np.int64, len(self.members))
            flat = np.concatenate(self.members) if self.members else np.empty(0, np.int64)
            row = np.repeat(np.arange(len(self.members)), sizes)
            current = self.entity_row[flat] == row
            solo = np.full(len(self.members), -1, dtype=np.int64)
            solo[row[current]] = flat[current]
            solo[np.bincount(row[current], minlength=len(self.members)) != 1] = -1
            self._solo_cache = solo
        return self._solo_cache

    def upsert(self, entity_ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add new entities, or move known ones to their new vector.

        An entity whose vector equals an existing row's joins that row (new items with the
        same concepts share a vector, and copies would crowd HNSW's graph again); any other
        gets a new row, in the part of its norm. Rows left without a current member are
        masked.
        """
        entity_ids = np.asarray(entity_ids, dtype=np.int64)
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(np.unique(entity_ids)) != len(entity_ids):
            raise ValueError("upsert got the same entity id twice")
        if len(entity_ids) and entity_ids.max() >= len(self.entity_row):
            grown = np.full(int(entity_ids.max()) + 1, -1, dtype=np.int64)
            grown[: len(self.entity_row)] = self.entity_row
            self.entity_row = grown
        old_rows = set(self.entity_row[entity_ids][self.entity_row[entity_ids] >= 0].tolist())
        added = []
        digests = [vector_digest(v) for v in vectors]
        near = self._near_duplicates(vectors, [self.row_of.get(d) is None for d in digests])
        for entity, vector, digest, close in zip(
            entity_ids.tolist(), vectors, digests, near, strict=True
        ):
            row = self.row_of.get(digest, close)
            if row is None:
                row = len(self.members)
                self.members.append(np.array([entity], dtype=np.int64))
                self.digests.append(digest)
                self.row_of[digest] = row
                added.append(vector)
            else:
                self.members[row] = np.union1d(self.members[row], [entity])
                self.deleted.discard(row)
            self.entity_row[entity] = row
        self.deleted.update(
            r for r in old_rows if not (self.entity_row[self.members[r]] == r).any()
        )
        if added:
            self._add(np.stack(added))
        self._solo_cache = self._fresh_cache = self._part_cache = None

    def _add(self, vectors: np.ndarray) -> None:
        """New rows after the last, each in the part of its norm (a new part if none)."""
        norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
        levels = norm_levels(norms, self.max_norm)
        self.overflow += int((norms > self.max_norm).sum())
        for level in np.unique(levels).tolist():
            if level not in self.parts:
                self.parts[level] = empty_index(vectors.shape[1] + 1, self.params)
            add_rows(
                self.parts[level], to_l2_items(vectors[levels == level], self.part_norm(level))
            )
        self.row_level = np.concatenate([self.row_level, levels])

    def _near_duplicates(self, vectors: np.ndarray, missed: list[bool]) -> list[int | None]:
        """For each ``missed`` vector (its digest matched no row), the stored row within
        :data:`NEAR_DUPLICATE` of it (relative to its norm) if its part's index finds one:
        the digest rounds, and two vectors a float bit apart can round to either side of a
        fifth decimal."""
        out: list[int | None] = [None] * len(vectors)
        todo = np.flatnonzero(missed)
        norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
        levels = norm_levels(norms, self.max_norm)
        for level in np.unique(levels[todo]).tolist():
            if level not in self.parts or self.parts[level].ntotal == 0:
                continue
            mine = todo[levels[todo] == level]
            queries = to_l2_items(vectors[mine], self.part_norm(level))
            distance, local = self.parts[level].search(queries, 1)
            close = (local[:, 0] >= 0) & (distance[:, 0] <= NEAR_DUPLICATE**2 * norms[mine] ** 2)
            rows = self._part_rows()[level][0]
            for i in np.flatnonzero(close):
                out[mine[i]] = int(rows[local[i, 0]])
        return out

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for level, part in self.parts.items():
            faiss.write_index(part, str(folder / PART.format(level=level)))
        sizes = np.array([len(m) for m in self.members], dtype=np.int64)
        flat = np.concatenate(self.members) if self.members else np.empty(0, np.int64)
        digests = np.frombuffer(b"".join(self.digests), dtype=np.uint8).reshape(-1, DIGEST_BYTES)
        np.savez(folder / MEMBERS, sizes=sizes, ids=flat, digests=digests, levels=self.row_level)
        meta = {
            **self.meta,
            "params": asdict(self.params),
            "max_norm": self.max_norm,
            "levels": sorted(self.parts),
            "overflow": self.overflow,
            "ef_search": self.ef_search,
            "deleted": sorted(self.deleted),
            "built_rows": self.built_rows,
        }
        (folder / META).write_text(json.dumps(meta, indent=2))


def load_index(folder: Path) -> VectorIndex:
    missing = [f for f in (MEMBERS, META) if not (folder / f).exists()]
    if missing:
        raise FileNotFoundError(f"ANN index at {folder} lacks {missing}")
    meta = json.loads((folder / META).read_text())
    params = meta.pop("params")
    params = IndexParams(**{**params, "ef_grid": tuple(params["ef_grid"])})
    groups = np.load(folder / MEMBERS)
    members = (
        np.split(groups["ids"], np.cumsum(groups["sizes"])[:-1]) if len(groups["sizes"]) else []
    )
    if "levels" in meta:
        files = {level: PART.format(level=level) for level in meta.pop("levels")}
        row_level = groups["levels"]
    else:  # saved before norm ranges: one part, every row at level 0
        files, row_level = {0: LEGACY_INDEX}, np.zeros(len(members), dtype=np.int64)
    absent = [f for f in files.values() if not (folder / f).exists()]
    if absent:
        raise FileNotFoundError(f"ANN index at {folder} lacks {absent}")
    return VectorIndex(
        {level: faiss.read_index(str(folder / f)) for level, f in files.items()},
        row_level,
        members,
        [bytes(d) for d in groups["digests"]],
        params,
        meta.pop("max_norm"),
        meta.pop("ef_search"),
        set(meta.pop("deleted")),
        meta.pop("overflow"),
        meta,
        meta.pop("built_rows", -1),  # indexes saved before it was kept: all rows built
    )


def empty_index(dim: int, params: IndexParams) -> faiss.Index:
    metric = faiss.METRIC_L2
    quantizer = QUANTIZERS[params.quantize]
    if params.kind == "flat":
        if quantizer is None:
            return faiss.IndexFlatL2(dim)
        return faiss.IndexScalarQuantizer(dim, quantizer, metric)
    if quantizer is None:
        index = faiss.IndexHNSWFlat(dim, params.m, metric)
    else:
        index = faiss.IndexHNSWSQ(dim, quantizer, params.m, metric)
    index.hnsw.efConstruction = params.ef_construction
    return index


def add_rows(index: faiss.Index, rows: np.ndarray) -> None:
    """``rows`` appended to ``index``, which a quantizer first trains on them if new."""
    if not index.is_trained:
        index.train(rows)
    index.add(rows)


def row_hashes(rows: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """A 64-bit hash of each float32 row's bits, ``chunk`` rows at a time."""
    multipliers = np.random.default_rng(0).integers(1, 1 << 62, rows.shape[1], np.uint64) | 1
    bits = rows.view(np.uint32)
    return np.concatenate(
        [
            (bits[lo : lo + chunk].astype(np.uint64) * multipliers).sum(1, dtype=np.uint64)
            for lo in range(0, len(rows), chunk)
        ]
        or [np.zeros(0, np.uint64)]
    )


def unique_rows(rows: np.ndarray, chunk: int = 1 << 16) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of float32 ``rows`` in order of first appearance, and each row's
    place among them.

    ``np.unique(axis=0)`` sorts the rows field by field: 9.8 s of the index's 69 s at
    400,000 rows of 64, and growing faster than the rows. Here each row is a 64-bit hash
    of its bits (a seeded random odd multiplier per column, summed with wraparound), the
    hashes are sorted, and the rows are checked equal to their group's first; a collision
    (never seen) falls back to the field sort."""
    rows = np.ascontiguousarray(rows, dtype=np.float32) + np.float32(0.0)  # -0.0 is 0.0
    _, first, inverse = np.unique(row_hashes(rows, chunk), return_index=True, return_inverse=True)
    order = np.argsort(first)
    place = np.empty_like(order)
    place[order] = np.arange(len(order))
    unique, inverse = rows[first[order]], place[inverse.reshape(-1)]
    if not np.array_equal(unique[inverse], rows):
        unique, inverse = np.unique(rows, axis=0, return_inverse=True)
        return unique, inverse.reshape(-1)
    return unique, inverse


def build(items: np.ndarray, entity_ids: np.ndarray, params: IndexParams) -> VectorIndex:
    """An index over ``items`` (rows of :func:`item_vectors`), not yet tuned."""
    items = np.asarray(items, dtype=np.float32)
    entity_ids = np.asarray(entity_ids, dtype=np.int64)
    unique, inverse = unique_rows(items)
    order = np.lexsort((entity_ids, inverse))
    members = np.split(entity_ids[order], np.cumsum(np.bincount(inverse))[:-1])
    norms = np.sqrt(np.einsum("ij,ij->i", unique, unique))
    max_norm = float(norms.max(initial=1e-6)) * NORM_HEADROOM
    parts = {0: empty_index(items.shape[1] + 1, params)}  # the longest vector's part
    digests = [vector_digest(u) for u in unique]
    index = VectorIndex(parts, np.zeros(0, np.int64), members, digests, params, max_norm)
    index._add(unique)
    return index


def recall_at_k(found_scores: np.ndarray, exact_scores: np.ndarray, tol: float = 1e-4) -> float:
    """Share of returned results that score at least the exact k-th score (less ``tol``).

    Counted by score, not by id: items with equal vectors (new items with the same
    concepts) tie, and any of them is a correct k-th result.
    """
    return float(_hits(found_scores, exact_scores, tol).mean()) if len(found_scores) else math.nan


def _hits(found_scores: np.ndarray, exact_scores: np.ndarray, tol: float) -> np.ndarray:
    kth = exact_scores[:, -1:] - tol * np.maximum(1.0, np.abs(exact_scores[:, -1:]))
    return found_scores >= kth


Z_95 = 1.645  # one-sided 95%


def recall_lower_bound(found_scores: np.ndarray, exact_scores: np.ndarray) -> float:
    """A one-sided 95% lower bound of :func:`recall_at_k` over the query population: the
    mean of per-query recalls less 1.645 standard errors. Tuning compares this with the
    target: at 10^6 vectors the ef_search whose 200-query sample reached 0.95 measured
    0.928 on 2,000 other queries."""
    per_query = _hits(found_scores, exact_scores, 1e-4).mean(axis=1)
    if len(per_query) < 2:
        return float(per_query.mean()) if len(per_query) else math.nan
    error = per_query.std(ddof=1) / math.sqrt(len(per_query))
    return float(per_query.mean() - Z_95 * error)


@dataclass(frozen=True)
class Tuning:
    ef_search: int
    recall_at_10: float
    queries_per_second: float
    curve: list[dict[str, float]]  # ef, recall@10, its lower bound, QPS for each tried ef
    recall_at_10_low: float = math.nan  # one-sided 95% lower bound (recall_lower_bound)


def tune(index: VectorIndex, items: np.ndarray, queries: np.ndarray, k: int = 10) -> Tuning:
    """The smallest ``ef_search`` of the grid whose recall@k against exact search over
    ``items`` (row = entity id) reaches the target with 95% confidence over queries
    (:func:`recall_lower_bound`), else the best tried; with the measured query rate of
    each. Results are re-scored exactly, so a quantized index is judged by what it
    returns, not by its approximate scores."""
    full = queries @ items.T  # (Q, N) exact scores
    truth = -np.sort(-full, axis=1)[:, :k]
    curve = []
    grid = index.params.ef_grid if index.params.kind == "hnsw" else (0,)
    for ef in grid:
        start = time.perf_counter()
        _, ids = index.search(queries, k, ef=ef or None)
        seconds = time.perf_counter() - start
        found = np.where(ids >= 0, np.take_along_axis(full, np.maximum(ids, 0), 1), -np.inf)
        curve.append(
            {
                "ef": ef,
                "recall": recall_at_k(found, truth),
                "recall_low": recall_lower_bound(found, truth),
                "qps": len(queries) / seconds,
            }
        )
        if curve[-1]["recall_low"] >= index.params.target_recall:
            break
    best = next(
        (p for p in curve if p["recall_low"] >= index.params.target_recall),
        max(curve, key=lambda p: p["recall"]),
    )
    index.ef_search = int(best["ef"]) or index.ef_search
    return Tuning(index.ef_search, best["recall"], best["qps"], curve, best["recall_low"])


def sample_queries(items: np.ndarray, weight: float, n: int, seed: int) -> np.ndarray:
    """Query vectors of ``n`` random items (the similar-items workload)."""
    rows = np.random.default_rng(seed).choice(len(items), size=min(n, len(items)), replace=False)
    return query_vectors(items[rows, :-1], weight)
