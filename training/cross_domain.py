"""The cross-domain cold-start evaluation (after NetEase's music-to-live recall).

The interactions come marked by :mod:`spark_jobs.domain_holdout`: the target-domain rows of
cold users and of new target items were held out of everything the models learned from.
Three measurements, each on a test half (the other half, validation, tunes each scorer's
popularity weight λ: nothing is tuned on test):

* **cold users**: a cold user's query is the mean of the vectors of their training history
  (all of it in other domains), ranked against the target domain's items; truth is their
  held-out target items. Recall@20 and NDCG@20;
* **new items**: a new target item, embedded from its concepts alone, ranks the target
  items; truth is its co-engagement neighbours over all rows (its held-out users
  included), the :data:`TRUTH_K` target items of highest cosine. MAP@10;
* **new-item exposure**: for each held-out (user, new item) row of a user with training
  history, whether the new item is in that user's top 20 of the target domain (λ tuned
  on its own validation half: a prior that buries new items shows as a λ of 0 here).

Every embedding scores by cosine plus ``λ · log(1 + users_j)``, the item's training users.
No-learning scorers: **popular in target** (``log(1 + users_j)``), **cross-domain ItemCF**
(cosine of the items' training user columns, summed over the history: users shared
across domains carry it over), **concepts** (the history's mean TF-IDF concept vector,
cosine; with λ it is popularity + concepts).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from training.arrays import grouped
from training.baselines import Signals
from training.ranking import (
    MAX_QUERIES,
    average_precision_at_k,
    hits_matrix,
    mask_out,
    rank_rows,
    recall_at_k,
)

K_USERS, K_ITEMS = 20, 10
MIN_SUPPORT = 2
TRUTH_K = 20  # a new item's co-engagement neighbours that count as relevant
LAMBDAS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5)
COLD_USERS, NEW_ITEMS, EXPOSURE = "cold_users", "new_items", "new_item_exposure"
POPULAR, ITEMCF, CONCEPTS = "popular_in_target", "cross_domain_itemcf", "popularity+concepts"


@dataclass(frozen=True)
class MarkedInteractions:
    """Distinct (user, entity) rows, users coded ``0..U-1``, with the holdout's marks."""

    user: np.ndarray
    entity: np.ndarray
    held: np.ndarray  # bool: held out of training
    cold_user: np.ndarray  # bool per row: the row's user is a cold user
    new_item: np.ndarray  # bool per row: the row's item is a new target item
    in_target: np.ndarray  # bool per entity ``(N,)``

    @property
    def num_users(self) -> int:
        return int(self.user.max()) + 1 if len(self.user) else 0

    @property
    def num_entities(self) -> int:
        return len(self.in_target)


@dataclass(frozen=True)
class Task:
    """Queries (users or entities), each with its relevant entities and what it must not
    rank; ``validation`` marks the half that tunes λ."""

    queries: np.ndarray
    relevant: list[Tensor]
    exclude: list[Tensor]
    validation: np.ndarray

    def subset(self, rows: np.ndarray) -> Task:
        return Task(
            self.queries[rows],
            [self.relevant[i] for i in rows],
            [self.exclude[i] for i in rows],
            self.validation[rows],
        )

    def half(self, validation: bool) -> Task:
        return self.subset(np.flatnonzero(self.validation == validation))

    def __len__(self) -> int:
        return len(self.queries)


def _groups(keys: np.ndarray, values: np.ndarray, n: int) -> list[np.ndarray]:
    order, bounds = grouped(keys, n)
    return np.split(values[order], bounds[1:-1])


def _halves(n: int, seed: int) -> np.ndarray:
    """A seeded half of ``n`` queries for validation."""
    validation = np.zeros(n, dtype=bool)
    validation[np.random.default_rng(seed).permutation(n)[: n // 2]] = True
    return validation


def _capped(task: Task, seed: int) -> Task:
    """At most :data:`~training.ranking.MAX_QUERIES` queries per half, a seeded sample in
    query order."""
    keep = []
    rng = np.random.default_rng(seed)
    for v in (True, False):
        rows = np.flatnonzero(task.validation == v)
        keep.append(rows if len(rows) <= MAX_QUERIES else rng.choice(rows, MAX_QUERIES, False))
    return task.subset(np.sort(np.concatenate(keep)))


def histories(data: MarkedInteractions) -> list[np.ndarray]:
    """Each user's training entities."""
    train = ~data.held
    return _groups(data.user[train], data.entity[train], data.num_users)


def user_task(data: MarkedInteractions, rows: np.ndarray, seed: int = 0) -> Task:
    """Users with training history and some of ``rows`` (held-out rows): each ranks the
    target from their history; truth is their entities among ``rows``."""
    truth = _groups(data.user[rows], data.entity[rows], data.num_users)
    history = histories(data)
    users = np.array(
        [u for u in range(data.num_users) if len(truth[u]) and len(history[u])], dtype=np.int64
    )
    task = Task(
        users,
        [torch.from_numpy(np.unique(truth[u])) for u in users],
        [torch.from_numpy(history[u]) for u in users],
        _halves(len(users), seed),
    )
    return _capped(task, seed)


def cold_user_task(data: MarkedInteractions, seed: int = 0) -> Task:
    """Cold users with training history and held-out target items."""
    return user_task(data, data.held & data.cold_user, seed)


def exposure_task(data: MarkedInteractions, seed: int = 0) -> Task:
    """Users with training history and held-out new-item rows: are those items reached?"""
    return user_task(data, data.held & data.new_item, seed)


def new_item_task(data: MarkedInteractions, seed: int = 0) -> Task:
    """New target items and their co-engagement neighbours over all rows: the target items
    sharing at least :data:`MIN_SUPPORT` users with it, the :data:`TRUTH_K` of highest
    cosine ``s_ij / √(n_i n_j)`` (as the graph's EELs are chosen: a raw count would make
    every best-seller a neighbour of every item)."""
    n = data.num_entities
    items_of = _groups(data.user, data.entity, data.num_users)
    users = np.bincount(data.entity, minlength=n).astype(np.float64)
    new_rows = data.held & data.new_item
    users_of = _groups(data.entity[new_rows], data.user[new_rows], n)
    queries, relevant = [], []
    for j in np.flatnonzero([len(u) for u in users_of]):
        engaged = np.concatenate([items_of[u] for u in np.unique(users_of[j])])
        support = np.bincount(engaged, minlength=n)
        support[j] = 0
        cosine = np.where(
            (support >= MIN_SUPPORT) & data.in_target,
            support / np.sqrt(np.maximum(users * users[j], 1.0)),
            0.0,
        )
        found = np.flatnonzero(cosine)
        truth = found[np.argsort(-cosine[found], kind="stable")[:TRUTH_K]]
        if len(truth):
            queries.append(j)
            relevant.append(torch.from_numpy(truth))
    queries = np.array(queries, dtype=np.int64)
    task = Task(
        queries,
        relevant,
        [torch.tensor([j]) for j in queries],
        _halves(len(queries), seed),
    )
    return _capped(task, seed)


def sparse_matrix(
    rows: np.ndarray, cols: np.ndarray, values: Tensor, shape: tuple[int, int]
) -> Tensor:
    index = torch.from_numpy(np.stack([rows, cols]).astype(np.int64))
    return torch.sparse_coo_tensor(index, values.float(), shape, check_invariants=True).coalesce()


def seed_matrix(seeds: list[Tensor], n: int) -> Tensor:
    """Sparse ``(B, N)``: row ``b`` spreads weight 1 evenly over ``seeds[b]`` (a user's
    history, or a query item alone)."""
    sizes = [len(p) for p in seeds]
    rows = np.repeat(np.arange(len(seeds)), sizes)
    cols = torch.cat(seeds).numpy() if seeds else np.zeros(0, np.int64)
    weights = np.repeat([1.0 / max(k, 1) for k in sizes], sizes)
    return sparse_matrix(rows, cols, torch.from_numpy(weights), (len(seeds), n))


# A scorer maps a seed matrix (sparse ``(B, N)``) to ``(B, N)`` scores, before λ. An item
# query is a seed matrix with one entity, so item-to-item and history scores are one path.
Scorer = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class InteractionSignals:
    """What the no-learning scorers take from the training interactions."""

    log_users: Tensor  # (N,) log(1 + training users of the item)
    user_columns: Tensor  # (U, N) sparse, each item's user column L2-normalised


def interaction_signals(data: MarkedInteractions) -> InteractionSignals:
    train = ~data.held
    return interaction_signals_of(
        data.user[train], data.entity[train], data.num_users, data.num_entities
    )


def interaction_signals_of(
    user: np.ndarray, entity: np.ndarray, num_users: int, n: int
) -> InteractionSignals:
    """The signals of distinct ``(user, entity)`` training rows."""
    users = np.bincount(entity, minlength=n).astype(np.float32)
    values = torch.from_numpy(1.0 / np.sqrt(np.maximum(users, 1.0))[entity])
    columns = sparse_matrix(user, entity, values, (num_users, n))
    return InteractionSignals(torch.log1p(torch.from_numpy(users)), columns)


def _times_sparse_t(dense: Tensor, matrix: Tensor) -> Tensor:
    """``dense @ matrixᵀ`` for a sparse ``matrix``."""
    return torch.sparse.mm(matrix, dense.t()).t()


def embedding_scorer(vectors: Tensor) -> Scorer:
    """Cosine of the seeds' mean unit vector with every entity's."""
    e = F.normalize(vectors.float(), dim=1)
    return lambda seeds: F.normalize(torch.sparse.mm(seeds, e), dim=1) @ e.t()


def itemcf_scorer(s: InteractionSignals) -> Scorer:
    """``Σ_i∈seeds cos(users_i, users_j)``: the user columns' cosine, summed over the seeds."""
    columns_t = s.user_columns.t().coalesce()
    return lambda seeds: _times_sparse_t(torch.sparse.mm(seeds, columns_t).to_dense(), columns_t)


def concept_scorer(signals: Signals) -> Scorer:
    """Cosine of the seeds' mean TF-IDF concept vector with every entity's."""
    return lambda seeds: _times_sparse_t(
        F.normalize(torch.sparse.mm(seeds, signals.concepts).to_dense(), dim=1), signals.concepts
    )


def popular_scorer(s: InteractionSignals) -> Scorer:
    return lambda seeds: torch.zeros(seeds.shape[0], len(s.log_users))


def topic_posterior_scorer(
    topic: np.ndarray,
    in_target: np.ndarray,
    log_users: Tensor,
    concentration: float,
    on_topic: float,
) -> Scorer:
    """What a scorer that knew each entity's hidden topic could do on data made as the
    synthetic generator makes it (a user's items: a topic from their taste, then an item
    of that topic by popularity): a ceiling for the models, which must learn the topics.
    With λ = 1 on ``log_users`` (``log w``: the log of each entity's popularity, e.g.
    ``log(1 + users)`` of its training users) the score is the log-probability of entity
    ``j`` for the history's user,

        log P(j | h) = log P(t_j | h) + log w_j − log Σ_{i ∈ t_j} w_i,

    the sum over the target's entities of topic ``t_j``, and
    ``P(t | h) = ρ·(c_t + α)/(n + Kα) + (1 − ρ)/K``: the posterior
    mean of a Dirichlet(α) taste given the history's ``n`` items, ``c_t`` of topic ``t``
    (read as if all were on-topic), mixed with the off-topic share ``1 − ρ``."""
    k = int(topic.max()) + 1
    one_hot = F.one_hot(torch.from_numpy(topic), k).float()
    mass = torch.zeros(k).index_add_(
        0, torch.from_numpy(topic[in_target]), torch.exp(log_users[in_target]).float()
    )
    within = -torch.log(mass.clamp(min=1e-12))[topic]

    def score(seeds: Tensor) -> Tensor:
        seeds = seeds.coalesce()
        n = torch.bincount(seeds.indices()[0], minlength=seeds.shape[0]).float()[:, None]
        counts = torch.sparse.mm(seeds, one_hot) * n  # rows of ``seeds`` sum to 1
        taste = (counts + concentration) / (n + k * concentration)
        p = on_topic * taste + (1 - on_topic) / k
        return torch.log(p)[:, topic] + within

    return score


def ranked(
    task: Task, scorer: Scorer, log_users: Tensor, in_target: Tensor, lam: float, k: int,
    batch: int = 256,
) -> Tensor:  # fmt: skip
    """``(len(task), k)`` target entities by descending ``scorer + λ·log_users``, each
    query's seeds (``exclude``) left out."""
    out = [torch.empty(0, k, dtype=torch.long)]
    n = len(log_users)
    for start in range(0, len(task), batch):
        seeds = task.exclude[start : start + batch]
        s = scorer(seed_matrix(seeds, n)).float() + lam * log_users
        s[:, ~in_target] = -torch.inf
        mask_out(s, seeds)
        out.append(rank_rows(s, k))
    return torch.cat(out)


def ndcg_at_k(ranked_ids: Tensor, relevant: list[Tensor]) -> Tensor:
    k = ranked_ids.shape[1]
    gains = 1.0 / torch.log2(torch.arange(2, k + 2).float())
    hits = hits_matrix(ranked_ids, relevant).float()
    ideal = torch.tensor([float(gains[: min(len(r), k)].sum()) for r in relevant])
    return (hits * gains).sum(1) / ideal.clamp(min=1e-12)


HEADLINE = {COLD_USERS: "recall@20", NEW_ITEMS: "map@10", EXPOSURE: "hit@20"}


def task_metrics(kind: str, ranked_ids: Tensor, relevant: list[Tensor]) -> dict[str, float]:
    if not len(relevant):
        return {HEADLINE[kind]: math.nan}
    if kind == NEW_ITEMS:
        return {"map@10": float(average_precision_at_k(ranked_ids, relevant).mean())}
    if kind == EXPOSURE:  # per (user, new item) row
        found = hits_matrix(ranked_ids, relevant).float().sum()
        return {"hit@20": float(found / sum(len(r) for r in relevant))}
    return {
        "recall@20": float(recall_at_k(ranked_ids, relevant).mean()),
        "ndcg@20": float(ndcg_at_k(ranked_ids, relevant).mean()),
    }


@dataclass(frozen=True)
class TaskScore:
    metrics: dict[str, float]  # on the test half
    lam: float  # chosen on the validation half
    queries: int


def score_task(
    kind: str,
    task: Task,
    scorer: Scorer,
    log_users: Tensor,
    in_target: Tensor,
    lambdas: tuple[float, ...] = LAMBDAS,
) -> TaskScore:
    """λ chosen on the validation half by the headline metric, metrics of the test half
    (``lambdas[0]`` when there is no validation half or one λ)."""
    k = K_ITEMS if kind == NEW_ITEMS else K_USERS

    def metrics(t: Task, lam: float) -> dict[str, float]:
        return task_metrics(kind, ranked(t, scorer, log_users, in_target, lam, k), t.relevant)

    val, test = task.half(True), task.half(False)
    lam = lambdas[0]
    if len(val) and len(lambdas) > 1:
        values = [metrics(val, x)[HEADLINE[kind]] for x in lambdas]
        lam = lambdas[int(np.nanargmax(values))]
    return TaskScore(metrics(test, lam), lam, len(test))


JOINT, TARGET_ONLY, BASELINE = "joint", "target_only", "no_learning"
TARGETS = {  # the bars: (task, what the best joint model is divided by, at least)
    "cold_users_vs_popular": (COLD_USERS, BASELINE, POPULAR, 1.3),
    "cold_users_vs_target_only": (COLD_USERS, TARGET_ONLY, None, 1.2),
    "new_items_vs_popularity_concepts": (NEW_ITEMS, BASELINE, CONCEPTS, 1.35),
}


@dataclass
class CrossDomainReport:
    """Every scorer on every task, what each scorer is (joint, target-only, no-learning),
    and the queries each task had. ``empty`` when the target domain has no items."""

    target: str
    counts: dict[str, int]
    results: dict[str, dict[str, dict]]  # task -> scorer -> {metrics, lam, queries}
    kinds: dict[str, str]

    def save(self, folder: Path) -> None:
        save_report(self, folder)

    @property
    def empty(self) -> bool:
        return self.counts.get("target_items", 0) == 0

    def value(self, task: str, scorer: str) -> float:
        return self.results[task][scorer]["metrics"][HEADLINE[task]]

    def best(self, task: str, kind: str) -> tuple[str | None, float]:
        values = {
            name: self.value(task, name)
            for name, k in self.kinds.items()
            if k == kind
            and name in self.results.get(task, {})
            and not math.isnan(self.value(task, name))
        }
        if not values:
            return None, math.nan
        name = max(values, key=values.__getitem__)
        return name, values[name]

    def target_ratios(self) -> dict[str, dict[str, float | str | None]]:
        """For each of :data:`TARGETS`: the best joint model, its peer, the ratio, the bar."""
        out = {}
        for label, (task, kind, peer, bar) in TARGETS.items():
            model, value = self.best(task, JOINT)
            if peer is None:
                peer, base = self.best(task, kind)
            else:
                base = self.value(task, peer) if peer in self.results.get(task, {}) else math.nan
            ratio = value / base if base and not math.isnan(base) else math.nan
            out[label] = {"model": model, "peer": peer, "ratio": ratio, "bar": bar}
        return out


def evaluate_cross_domain(
    data: MarkedInteractions,
    concept_signals: Signals,
    models: dict[str, tuple[str, Tensor]],
    target: str,
    seed: int = 0,
) -> CrossDomainReport:
    """``models``: name -> (JOINT or TARGET_ONLY, entity vectors ``(N, d)``)."""
    tasks = {
        COLD_USERS: cold_user_task(data, seed),
        NEW_ITEMS: new_item_task(data, seed),
        EXPOSURE: exposure_task(data, seed),
    }
    counts = {
        "target_items": int(data.in_target.sum()),
        "users": data.num_users,
        "held_out_rows": int(data.held.sum()),
        **{f"{name}_queries": len(task) for name, task in tasks.items()},
    }
    inter = interaction_signals(data)
    scorers: dict[str, tuple[str, Scorer]] = {
        POPULAR: (BASELINE, popular_scorer(inter)),
        ITEMCF: (BASELINE, itemcf_scorer(inter)),
        CONCEPTS: (BASELINE, concept_scorer(concept_signals)),
    }
    scorers |= {name: (kind, embedding_scorer(v)) for name, (kind, v) in models.items()}
    in_target = torch.from_numpy(data.in_target)
    results: dict[str, dict[str, dict]] = {name: {} for name in tasks}
    if counts["target_items"]:
        for name, (_, scorer) in scorers.items():
            fixed = (1.0,) if name == POPULAR else LAMBDAS  # popularity is its own λ
            for kind, task in tasks.items():
                out = score_task(kind, task, scorer, inter.log_users, in_target, fixed)
                results[kind][name] = asdict(out)
    return CrossDomainReport(target, counts, results, {n: k for n, (k, _) in scorers.items()})


REPORT = "cross_domain.json"


def save_report(report: CrossDomainReport, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / REPORT).write_text(json.dumps(asdict(report), indent=2))


def load_report(folder: Path) -> CrossDomainReport:
    return CrossDomainReport(**json.loads((folder / REPORT).read_text()))
