"""The evaluation protocol (after SemanticGNN's): every model and baseline, same split.

Settings, each a :class:`~training.ranking.RankingTask` over all entities:

* **transductive** (Co-Sim): queries are entities with test EELs, ranked against every
  entity except themselves and their training links; also per cold-start group by EEL
  degree in the training graph: group0 ``≤ 3``, group1 ``(3, 6]``, group2 ``> 6``;
* **strict cold start**: the inductive entities, embedded from their concept edges
  alone; truth is all their EELs;
* **warm-up**: the inductive entities with up to 3 of their EELs plugged in at inference;
  truth is the rest of their EELs, the plugged-in ones are not ranked;
* **semantic**: entities sharing a rare concept (used by 2 to ``rare_max`` entities), a
  stand-in for a curated similar-items set.

Learned encoders embed each setting's graph with :func:`training.inference.embed`; no-
learning baselines score from the same graph; their weights come from validation. Each
setting ranks a seeded sample of at most ``max_queries`` of its queries
(:meth:`~training.ranking.RankingTask.sample`); every mean comes with its count and the
MAP@10 with a 95% bootstrap interval (``map@10_low``, ``map@10_high``).

Besides ranking quality, **cold-query exposure** (:func:`cold_query_exposure`): over the
strict cold-start queries, the share of each model's top 10 that are the catalogue's 20
most engaged items (best-sellers), and the share that share a concept with the query.
A model whose cold lists are its best-sellers serves the same list to every new item.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from training.baselines import (
    Scores,
    Signals,
    blend,
    blend_family,
    concept_knn,
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
from training.concept_neighbours import ConceptNeighbours
from training.inference import embed_graph, kg_refined_walk
from training.kg_arrays import KGArrays
from training.ranking import MAX_QUERIES, RankingTask, bootstrap_interval
from training.split import EvaluationSplit, training_view, warmup_view

KS = (10, 50, 100)
COLD_EXPOSURE = "cold_query_exposure"  # a results "setting" holding the two shares
BEST_SELLERS = 20
GROUPS = {"group0": (-math.inf, 3), "group1": (3, 6), "group2": (6, math.inf)}
TRANSDUCTIVE, STRICT, WARMUP, SEMANTIC = "transductive", "strict_cold_start", "warm_up", "semantic"
NO_EDGES = torch.empty(2, 0, dtype=torch.long)


@dataclass(frozen=True)
class Setting:
    task: RankingTask
    view: str  # "train" or "warm": the graph its scores come from
    groups: dict[str, Tensor] = field(default_factory=dict)  # name -> mask over queries


def _links_from(kg: KGArrays, entities: np.ndarray) -> Tensor:
    """Directed EELs of ``kg`` leaving ``entities``."""
    mask = np.isin(kg.eel[0], entities)
    return torch.from_numpy(kg.eel[:, mask])


def rare_concept_links(kg: KGArrays, rare_max: int) -> Tensor:
    """Directed pairs of distinct entities that share a concept used by 2..``rare_max``."""
    links = []
    for edges in kg.concept_edges.values():
        df = np.bincount(edges[1])
        rare = edges[:, (df[edges[1]] >= 2) & (df[edges[1]] <= rare_max)]
        order = np.argsort(rare[1], kind="stable")
        entities, concept = rare[0, order], rare[1, order]
        for group in np.split(entities, np.flatnonzero(np.diff(concept)) + 1):
            a, b = np.meshgrid(group, group)
            keep = a != b
            links.append(np.stack([a[keep], b[keep]]))
    if not links:
        return NO_EDGES
    pairs = torch.from_numpy(np.concatenate(links, axis=1))
    return torch.unique(pairs, dim=1)


def settings(
    kg: KGArrays,
    split: EvaluationSplit,
    rare_max: int = 5,
    max_queries: int | None = MAX_QUERIES,
    seed: int = 0,
) -> dict[str, Setting]:
    n = kg.num_entities
    train = training_view(kg, split)
    known = torch.from_numpy(train.eel)
    degree = torch.bincount(known[0], minlength=n)
    test = torch.from_numpy(split.test_pairs)
    transductive = RankingTask.from_pairs(test, known, n).sample(max_queries, seed)
    d = degree[transductive.queries]
    groups = {name: (d > lo) & (d <= hi) for name, (lo, hi) in GROUPS.items()}
    all_links = _links_from(kg, split.inductive)
    warm = torch.from_numpy(split.warmup_pairs)
    n_ = max(n, 1)
    remaining = all_links[:, ~torch.isin(all_links[0] * n_ + all_links[1], warm[0] * n_ + warm[1])]
    return {
        TRANSDUCTIVE: Setting(transductive, "train", groups),
        STRICT: Setting(
            RankingTask.from_links(all_links, NO_EDGES, n).sample(max_queries, seed), "train"
        ),
        WARMUP: Setting(
            RankingTask.from_links(remaining, warm, n).sample(max_queries, seed), "warm"
        ),
        SEMANTIC: Setting(
            RankingTask.from_links(rare_concept_links(kg, rare_max), NO_EDGES, n).sample(
                max_queries, seed
            ),
            "train",
        ),
    }


def topic_oracle(topic: Tensor, log_popularity: Tensor) -> Scores:
    """A scorer that knows each entity's hidden topic (the synthetic generator's): the
    query's topic first, then by popularity. On data where a topic and popularity decide
    every interaction, a new item's concepts can say no more than its topic, and its
    co-engagement cosine with an entity of its topic grows with that entity's popularity:
    the strict cold-start ranking no model can beat by more than chance."""
    span = float(log_popularity.max() - log_popularity.min()) + 1.0

    def score(q: Tensor) -> Tensor:
        same = (topic[q][:, None] == topic[None, :]).float()
        return same * span + log_popularity[None, :]

    return score


def encoder_scores(
    checkpoint: Checkpoint,
    kg: KGArrays,
    memory_budget_mb: float,
    device: torch.device,
    walk: Tensor | None = None,
    neighbours: ConceptNeighbours | None = None,
) -> Scores:
    """The encoder's own score (popularity prior included) over ``kg``, embedded inductively
    (``walk`` and ``neighbours``: ``kg``'s walk factors and concept neighbours, as
    :func:`embed_graph` takes them)."""
    model = checkpoint.model().to(device)
    out = embed_graph(checkpoint, kg, memory_budget_mb, device, walk=walk, neighbours=neighbours)
    z, log_degree = out.vectors.to(device), out.log_degree.to(device)
    everyone = torch.arange(kg.num_entities, device=device)
    return lambda q: model.score_matrix(z, q.to(device), everyone, log_degree).cpu()


NO_LEARNING = (
    "popularity",
    "itemcf",
    "concepts",
    "popularity+concepts",
    "blend",
    "concept-knn",
    "rp3",
    "ease",
)


def baseline_scores(s: Signals, tuned: dict[str, tuple[float, ...]]) -> dict[str, Scores]:
    """The no-learning baselines; weighted ones take their validation-tuned weights."""
    out = {"popularity": popularity(s), "itemcf": itemcf(s), "concepts": concepts(s)}
    weighted = blend_family(tuned)
    for name in ("popularity+concepts", "blend"):
        if name in weighted:
            out[name] = blend(s, *weighted[name])
    if "concept-knn" in tuned:
        out["concept-knn"] = concept_knn(s, *tuned["concept-knn"])
    if "rp3" in tuned:
        out["rp3"] = rp3(s, *tuned["rp3"])
    if "ease" in tuned and ease_fits(s.eel.shape[0]):
        out["ease"] = ease(s, *tuned["ease"])
    return out


Results = dict[str, dict[str, dict[str, float]]]  # model -> "setting[/group]" -> metric -> value


def evaluate_models(
    models: ModelSet,
    kg: KGArrays,
    split: EvaluationSplit,
    memory_budget_mb: float,
    device: torch.device,
    progress: Callable[[str], None] | None = None,
    max_queries: int | None = MAX_QUERIES,
) -> Results:
    """Every encoder, embedding table and baseline of ``models``, in every setting."""
    cases = settings(kg, split, max_queries=max_queries)
    views = {"train": training_view(kg, split), "warm": warmup_view(kg, split)}
    scorers: dict[str, dict[str, Scores]] = {view: {} for view in views}
    view_signals = {view: signals(graph, NO_EDGES) for view, graph in views.items()}
    # a run's encoders share its graph-wide walk factors, so a view's refinement of them;
    # refined as the served vectors' are (entity_embeddings), the evaluation scores those
    walks: dict[tuple[str, int, int], Tensor] = {}
    for view, graph in views.items():
        for name, checkpoint in models.checkpoints.items():
            walk = None
            if rank := checkpoint.config.walk_rank:
                key = (view, rank, checkpoint.params.seed)
                if key not in walks:
                    walks[key] = kg_refined_walk(graph, checkpoint.result.state_dict["walk"])
                walk = walks[key]
            neighbours = view_signals[view].neighbours  # the view's encoders share them too
            scorers[view][name] = encoder_scores(
                checkpoint, graph, memory_budget_mb, device, walk, neighbours
            )
        for name, table in models.tables.items():
            scorers[view][name] = embedding_scores(table.embeddings)
        scorers[view].update(baseline_scores(view_signals[view], models.tuned_weights()))
    results: Results = {name: {} for name in scorers["train"]}
    family = blend_family(models.tuned_weights())
    shared: dict[str, dict[str, Tensor]] = {}  # setting -> the family's rankings, by name
    for name in results:
        ranked: dict[str, Tensor] = {}  # setting -> its top max(KS): one ranking per setting
        for setting_name, setting in cases.items():
            if progress is not None:
                progress(f"{name}: {setting_name}")
            if name in family:
                if setting_name not in shared:  # the whole family, its parts scored once
                    s = view_signals[setting.view]
                    parts = [itemcf(s), concepts(s), popularity(s)]
                    rankings = setting.task.rank_weighted(parts, list(family.values()), max(KS))
                    shared[setting_name] = dict(zip(family, rankings, strict=True))
                ranked[setting_name] = shared[setting_name][name]
            else:
                ranked[setting_name] = setting.task.rank(scorers[setting.view][name], max(KS))
            per_query = setting.task.metrics(ranked[setting_name], KS)
            results[name][setting_name] = _means(per_query)
            for group, mask in setting.groups.items():
                results[name][f"{setting_name}/{group}"] = _means(per_query, mask)
        results[name][COLD_EXPOSURE] = cold_query_exposure(  # the strict ranking's top 10
            cases[STRICT].task.queries, ranked[STRICT][:, :10], view_signals["train"]
        )
    return results


def cold_query_exposure(
    queries: Tensor, ranked: Tensor, s: Signals, best_sellers: int = BEST_SELLERS
) -> dict[str, float]:
    """Over ``queries`` and their top ``ranked`` ``(|Q|, k)``: the share of the lists that are
    the ``best_sellers`` most engaged entities of ``s``, and the share that share at least
    one concept with the query."""
    if not len(ranked):
        return {"bestseller_share": math.nan, "concept_overlap_share": math.nan}
    top = torch.topk(s.log_degree, min(best_sellers, s.log_degree.numel())).indices
    shared = 0.0
    for start in range(0, len(ranked), 256):  # dense concept rows, a batch at a time
        q, r = queries[start : start + 256], ranked[start : start + 256]
        rows = s.concepts.index_select(0, torch.cat([q, r.flatten()])).to_dense() > 0
        query, found = rows[: len(q)], rows[len(q) :].view(*r.shape, -1)
        shared += float((found & query.unsqueeze(1)).any(-1).sum())
    return {
        "bestseller_share": float(torch.isin(ranked, top).float().mean()),
        "concept_overlap_share": shared / ranked.numel(),
    }


def _means(per_query: dict[str, Tensor], mask: Tensor | None = None) -> dict[str, float]:
    out = {}
    for metric, values in per_query.items():
        v = values if mask is None else values[mask]
        out[metric] = float(v.nanmean()) if v.numel() else float("nan")
    v = per_query["map@10"] if mask is None else per_query["map@10"][mask]
    out["map@10_low"], out["map@10_high"] = bootstrap_interval(v)
    first = next(iter(per_query.values()))
    valid = ~first.isnan() if mask is None else ~first.isnan() & mask
    out["queries"] = float(valid.sum())
    return out


def gate_bars(report: EvaluationReport, accepted: dict | None) -> dict[str, float]:
    """What the primary model's all-entity MAP@10 must reach, by name: the best no-learning
    baseline of the report (named, since which one leads differs by dataset) and the last
    accepted model (``{"model_version", "map_at_10"}``), when there is one."""
    bars = {}
    if any(m in report.results for m in NO_LEARNING):
        name, value = report.best_baseline(TRANSDUCTIVE, "map@10", NO_LEARNING)
        bars[f"best no-learning baseline ({name})"] = value
    if accepted is not None:
        bars[f"accepted {accepted['model_version']}"] = accepted["map_at_10"]
    return bars


def gate_failures(value: float, bars: dict[str, float], margin: float) -> dict[str, float]:
    """The bars (:func:`gate_bars`) that ``value`` falls more than
    ``margin`` (relative) below; empty when the model may pass."""
    return {name: bar for name, bar in bars.items() if value < bar * (1 - margin)}


REPORT = "evaluation.json"
HEADLINE = (
    (f"{TRANSDUCTIVE}", "map@10"),
    (f"{TRANSDUCTIVE}", "map@50"),
    (f"{TRANSDUCTIVE}", "map@100"),
    (f"{TRANSDUCTIVE}/group0", "map@10"),
    (f"{TRANSDUCTIVE}/group1", "map@10"),
    (f"{TRANSDUCTIVE}/group2", "map@10"),
    (STRICT, "map@10"),
    (STRICT, "map@50"),
    (STRICT, "map@100"),
    (WARMUP, "map@10"),
    (WARMUP, "map@50"),
    (WARMUP, "map@100"),
    (SEMANTIC, "map@10"),
)


@dataclass
class EvaluationReport:
    """Results of every model and baseline, the primary model and the model version."""

    results: Results
    primary: str
    model_version: str

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        payload = {
            "primary": self.primary,
            "model_version": self.model_version,
            "results": self.results,
        }
        (folder / REPORT).write_text(json.dumps(payload, indent=2))

    def value(self, model: str, setting: str = TRANSDUCTIVE, metric: str = "map@10") -> float:
        return self.results[model][setting][metric]

    def interval(self, model: str, setting: str = TRANSDUCTIVE) -> str:
        """The 95% bootstrap interval of ``model``'s MAP@10 in ``setting``, as text."""
        r = self.results[model][setting]
        return f"[{r['map@10_low']:.4f}, {r['map@10_high']:.4f}]"

    def best_baseline(
        self, setting: str, metric: str, among: tuple[str, ...] | None = None
    ) -> tuple[str, float]:
        """The best row other than the primary model (ablations included), or the best of
        ``among`` (for example :data:`NO_LEARNING`) that the report has."""
        others = {
            m: r[setting][metric]
            for m, r in self.results.items()
            if m != self.primary and (among is None or m in among)
        }
        name = max(others, key=lambda m: -math.inf if math.isnan(others[m]) else others[m])
        return name, others[name]


def load_report(folder: Path) -> EvaluationReport:
    path = folder / REPORT
    if not path.exists():
        raise FileNotFoundError(f"No evaluation report at {path}")
    payload = json.loads(path.read_text())
    return EvaluationReport(payload["results"], payload["primary"], payload["model_version"])
