"""Neural multi-relational retrieval (GMP-GR): the learned relevance searched over an HNSW
graph against brute-force neural ranking, on synthetic embeddings.

A synthetic world: items and users in ``d`` dimensions around topic centres; a pair's
behaviours are drawn from its distance (views) and from a hidden bilinear taste that the
distance does not hold (likes, purchases), so that the neural metric is not the distance.
MUIRML is trained on those pairs (with SCL, without it, and the single-behaviour model),
an L2 HNSW graph is built over the item embeddings, and each arm answers the same users:

- **cosine HNSW**: faiss's own search by distance, measured against the neural top-k;
- **neural graph search** with P ∈ {1, 2, 4, 8} parallel searches and several ``ef``;
- **without SCL** and the **single-behaviour** metric, each against its own brute force;
- **seeded**: level 0 starting from the user's nearest items (as the service starts from
  its best rows by inner product) instead of HNSW's descent;
- **Q-HiPANNS**: many users searched side by side, their candidates scored in calls of at
  most B pairs, against the same users searched one by one.

Beside it: the SCL ablation over several seeds at equal work, and the held-out purchase
AUCs, also on ml-latest-small (held-out loves). Rec@k is the share of the brute-force top-k
(same metric) that the search returns; "scored" the items whose relevance a query
computed. Brute force is the same numpy scorer over every item, then a partial sort.

    python -m bench.neural_retrieval            # 10^5 and 10^6 items, into docs/benchmarks.md
    python -m bench.neural_retrieval --tiny     # seconds: a smoke run (written only to --out)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from bench.report import DOC, stamp, write_section
from resources.markdown import markdown_table
from serving.graph_search import HnswGraph, search, search_many
from serving.neural_metric import NeuralMetric, scoring_device
from settings import current
from training.behaviours import BehaviourPairs, behaviour_pairs
from training.muirml_fit import Fitted, MuirmlParams, export_arrays, fit, target_auc, target_pairs
from training.muirml_run import run_relevance

BEHAVIOURS = ("view", "like", "purchase")
SEEDS = 32  # the seeded arm: level 0 starts from the user's 32 nearest items (faiss)
Seeder = Callable[[np.ndarray], np.ndarray]  # a user (d,) -> seed node ids


@dataclass(frozen=True)
class World:
    items: np.ndarray  # (N, d)
    users: np.ndarray  # (U, d)
    taste: np.ndarray  # (d, d): the hidden bilinear part of likes and purchases


def world(n_items: int, n_users: int, dim: int, topics: int, seed: int) -> World:
    """Topic centres and the hidden taste come from ``seed`` alone, items and users from
    their own streams, so a larger catalogue is the same world with more items."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, dim)).astype(np.float32)
    taste = rng.standard_normal((dim, dim)).astype(np.float32) / dim

    def around(stream: int, n: int) -> np.ndarray:
        r = np.random.default_rng([seed, stream])
        noise = 0.6 * r.standard_normal((n, dim)).astype(np.float32)
        return centres[r.integers(topics, size=n)] + noise

    return World(around(1, n_items), around(2, n_users), taste)


def behaviour_labels(w: World, user: np.ndarray, item: np.ndarray, seed: int) -> np.ndarray:
    """Nested behaviours: a view from closeness, then likes and purchases from closeness
    plus the hidden taste."""
    rng = np.random.default_rng(seed)
    u, v = w.users[user], w.items[item]
    close = -((u - v) ** 2).sum(1) / u.shape[1]
    hidden = np.einsum("nd,de,ne->n", u, w.taste, v)
    view = rng.random(len(user)) < 1 / (1 + np.exp(-(4 * close + 6)))
    like = view & (rng.random(len(user)) < 1 / (1 + np.exp(-(2 * close + 3 * hidden + 1))))
    buy = like & (rng.random(len(user)) < 1 / (1 + np.exp(-(6 * hidden - 1))))
    return np.column_stack([view, like, buy]).astype(np.float32)


def training_pairs(w: World, per_user: int, seed: int) -> BehaviourPairs:
    """Each user's candidates (half near it, half random), kept where it viewed them; the
    parts are drawn at random (the world has no time)."""
    rng = np.random.default_rng(seed)
    index = faiss.IndexHNSWFlat(w.items.shape[1], 16)
    index.add(w.items)
    _, near = index.search(w.users, 4 * per_user)
    user = np.repeat(np.arange(len(w.users)), per_user)
    picks = near[user, rng.integers(4 * per_user, size=len(user))]
    random = rng.random(len(user)) < 0.5
    item = np.where(random, rng.integers(len(w.items), size=len(user)), picks)
    labels = behaviour_labels(w, user, item, seed)
    keep = labels[:, 0] > 0
    part = rng.choice(3, size=int(keep.sum()), p=[0.7, 0.1, 0.2]).astype(np.int8)
    return BehaviourPairs(
        user[keep], item[keep], labels[keep], part, BEHAVIOURS, len(w.users), dropped=0
    )


def exact_top(metric: NeuralMetric, items: np.ndarray, users: np.ndarray, k: int):
    """Brute force: every item scored per user; returns top ids ``(Q, k)`` and seconds
    per user."""
    start = time.perf_counter()
    top = []
    for user in users:
        scores = metric.scores(user, items)
        best = np.argpartition(-scores, k)[:k]
        top.append(best[np.argsort(-scores[best], kind="stable")])
    return np.stack(top), (time.perf_counter() - start) / len(users)


def overlap(found: np.ndarray, exact: np.ndarray, k: int) -> float:
    return len(set(found[:k].tolist()) & set(exact[:k].tolist())) / k


def graph_arm(
    graph: HnswGraph, metric: NeuralMetric, items: np.ndarray, users: np.ndarray,
    exact: np.ndarray, ef: int, parallel: int, seeder: Seeder | None = None,
) -> dict[str, float]:  # fmt: skip
    """Each user searched alone (latency per query, seeding included)."""
    terms = metric.user_terms(users)
    latencies, rec10, rec100, scored = [], [], [], []
    for q, user in enumerate(users):
        start = time.perf_counter()
        found = search(
            graph,
            lambda ids, q=q, u=user: metric.pair_scores(u[None], terms[q : q + 1], items[ids]),
            k=100,
            ef=max(ef, 100),
            parallel=parallel,
            seeds=None if seeder is None else seeder(user),
        )
        latencies.append(time.perf_counter() - start)
        rec10.append(overlap(found.ids, exact[q], 10))
        rec100.append(overlap(found.ids, exact[q], 100))
        scored.append(len(found.scored))
    lat = np.array(latencies)
    return {
        "rec10": float(np.mean(rec10)),
        "rec100": float(np.mean(rec100)),
        "scored": float(np.mean(scored)),
        "qps": len(users) / lat.sum(),
        "p50_ms": 1000 * float(np.percentile(lat, 50)),
        "p99_ms": 1000 * float(np.percentile(lat, 99)),
    }


def batched_arm(
    graph: HnswGraph, metric: NeuralMetric, items: np.ndarray, users: np.ndarray,
    exact: np.ndarray, ef: int, parallel: int, max_batch: int,
) -> dict[str, float]:  # fmt: skip
    """All users searched side by side (throughput)."""
    terms = metric.user_terms(users)
    calls: list[int] = []
    start = time.perf_counter()
    found = search_many(
        graph,
        lambda q, ids: metric.pair_scores(users[q], terms[q], items[ids]),
        len(users), 100, max(ef, 100), parallel, max_batch, calls.append,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    return {
        "rec10": float(np.mean([overlap(f.ids, e, 10) for f, e in zip(found, exact, strict=True)])),
        "qps": len(users) / seconds,
        "calls": len(calls),
        "mean_call": float(np.mean(calls)),
    }


def hnsw_arm(index: faiss.IndexHNSWFlat, users: np.ndarray, exact: np.ndarray, ef: int):
    index.hnsw.efSearch = max(ef, 100)
    start = time.perf_counter()
    _, ids = index.search(users, 100)
    seconds = time.perf_counter() - start
    return {
        "rec10": float(np.mean([overlap(f, e, 10) for f, e in zip(ids, exact, strict=True)])),
        "rec100": float(np.mean([overlap(f, e, 100) for f, e in zip(ids, exact, strict=True)])),
        "qps": len(users) / seconds,
    }


MAIN = "multi-behaviour, SCL λ 0.1"
ARMS = {
    MAIN: MuirmlParams(distance="l2"),
    "multi-behaviour, SCL λ 0.5": MuirmlParams(distance="l2", scl_weight=0.5),
    "multi-behaviour, no SCL": MuirmlParams(distance="l2", scl_weight=0.0),
    "single-behaviour, SCL λ 0.1": MuirmlParams(distance="l2", single=True),
}
TRAIN_ITEMS = 100_000


def models(
    w: World, pairs: BehaviourPairs, epochs: int, seed: int
) -> dict[str, tuple[Fitted, dict]]:
    """Every arm's model on the same pairs (initialised and sampled by ``seed``), with its
    held-out purchase AUCs."""
    users, items = torch.from_numpy(w.users), torch.from_numpy(w.items)
    test = target_pairs(pairs, 2, len(w.items), 1)
    out = {}
    for name, params in tqdm(ARMS.items(), desc=f"models, seed {seed}"):
        fitted = fit(pairs, users, items, replace(params, epochs=epochs, seed=seed))
        out[name] = (fitted, target_auc(fitted, test, users, items))
    return out


def metric_of(fitted: Fitted, device: str) -> NeuralMetric:
    arrays = export_arrays(fitted, BEHAVIOURS)
    return NeuralMetric({k: v.astype(np.float32) if v.dtype.kind == "f" else v
                         for k, v in arrays.items()}).on(device)  # fmt: skip


@dataclass(frozen=True)
class Scale:
    items: int
    queries: int
    efs: tuple[int, ...]
    parallels: tuple[int, ...]  # the main metric's; the ablation arms run at ABLATION_P
    batches: tuple[int, ...]


ABLATION_P = 2
ABLATION_EFS = (100, 150, 200, 300)  # at least k = 100
SCALES = (
    Scale(100_000, 200, (100, 150, 200, 300), (1, 2, 4, 8), (256, 2048, 16384)),
    Scale(1_000_000, 100, (100, 300, 600, 1000), (1, 2, 4, 8), (256, 2048, 16384)),
)
TINY = (Scale(3_000, 20, (100,), (1, 2), (256,)),)


def run_scale(scale: Scale, fitted: dict, dim: int, topics: int, seed: int, device: str) -> dict:
    w = world(scale.items, 2_000, dim, topics, seed)
    users = w.users[: scale.queries]
    t = time.perf_counter()
    index = faiss.IndexHNSWFlat(dim, 16)
    index.hnsw.efConstruction = 80
    index.add(w.items)
    out: dict = {"build_s": time.perf_counter() - t, "arms": [], "brute_qps": {}}
    graph = HnswGraph.of(index.hnsw)
    for name, (f, _) in tqdm(fitted.items(), desc=f"{scale.items:,} items"):
        metric = metric_of(f, device)
        exact, brute_s = exact_top(metric, w.items, users, 100)
        out["brute_qps"][name] = 1 / brute_s
        for parallel in scale.parallels if name == MAIN else (ABLATION_P,):
            for ef in scale.efs:
                r = graph_arm(graph, metric, w.items, users, exact, ef, parallel)
                out["arms"].append({"metric": name, "P": parallel, "ef": ef, **r,
                                    "speedup": r["qps"] * brute_s})  # fmt: skip
        if name == MAIN:  # level 0 from the nearest items instead of the descent
            index.hnsw.efSearch = 2 * SEEDS

            def seeder(user: np.ndarray) -> np.ndarray:
                return index.search(user[None], SEEDS)[1][0]

            for ef in scale.efs:
                r = graph_arm(graph, metric, w.items, users, exact, ef, ABLATION_P, seeder)
                out["arms"].append({"metric": name, "P": f"{ABLATION_P}, {SEEDS} seeds",
                                    "ef": ef, **r, "speedup": r["qps"] * brute_s})  # fmt: skip
        if name != MAIN:
            continue
        out["hnsw"] = [hnsw_arm(index, users, exact, ef) | {"ef": ef} for ef in scale.efs]
        ef = scale.efs[0]
        alone = graph_arm(graph, metric, w.items, users, exact, ef, ABLATION_P)
        out["batched_ef"] = ef
        out["batched"] = [{"B": "one query at a time", "rec10": alone["rec10"],
                           "qps": alone["qps"], "calls": None, "mean_call": None}]  # fmt: skip
        for b in scale.batches:
            out["batched"].append(
                {"B": b, **batched_arm(graph, metric, w.items, users, exact, ef, ABLATION_P, b)}
            )
    return out


def movielens_behaviours(root: Path) -> pd.DataFrame:
    """Ratings (a view, a like from 4, a love at 5) and tags (a tag) as interactions."""
    ratings, tags = pd.read_csv(root / "ratings.csv"), pd.read_csv(root / "tags.csv")
    frames = [
        pd.DataFrame({"user_id": ratings["userId"], "item_id": ratings["movieId"],
                      "event": "rating", "weight": ratings["rating"], "ts": ratings["timestamp"]}),
        pd.DataFrame({"user_id": tags["userId"], "item_id": tags["movieId"], "event": "tag",
                      "weight": 1.0, "ts": tags["timestamp"]}),
    ]  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def svd_items(pairs: BehaviourPairs, num_items: int, dim: int) -> np.ndarray:
    """Item vectors from the training pairs alone: the top ``dim`` singular directions of
    the user-item matrix, scaled by the root of their singular values."""
    train = pairs.part == 0
    matrix = torch.zeros(pairs.num_users, num_items)
    matrix[torch.from_numpy(pairs.user[train]), torch.from_numpy(pairs.item[train])] = 1.0
    torch.manual_seed(0)
    _, values, vectors = torch.svd_lowrank(matrix, q=dim)
    return (vectors * values.sqrt()).numpy().astype(np.float32)


def movielens_aucs(root: Path, seeds: int, dim: int) -> list[dict[str, dict]]:
    """Multi- against single-behaviour on ml-latest-small's held-out loves, over item
    vectors from the training interactions (an SVD, not the served GNN embeddings)."""
    frame = movielens_behaviours(root)
    item_ids = np.unique(frame["item_id"].astype(str))
    vectors = svd_items(behaviour_pairs(frame, item_ids), len(item_ids), dim)
    runs = []
    for seed in range(seeds):
        params = MuirmlParams(distance="inner", seed=seed)
        run = run_relevance(frame, item_ids, vectors, "svd", params, log=lambda _: None)
        runs.append({"target": run.report.target, **run.report.aucs})
    return runs


def ablation(
    w: World,
    runs: list[dict[str, tuple[Fitted, dict]]],
    queries: int,
    efs: tuple[int, ...],
    device: str,
) -> list[dict]:
    """Every arm of every seed's models over one graph at P = ABLATION_P: Rec@10 against
    items scored, the SCL ablation at equal work."""
    index = faiss.IndexHNSWFlat(w.items.shape[1], 16)
    index.hnsw.efConstruction = 80
    index.add(w.items)
    graph, users = HnswGraph.of(index.hnsw), w.users[:queries]
    rows = []
    for seed, fitted in enumerate(runs):
        for name, (f, _) in fitted.items():
            metric = metric_of(f, device)
            exact, _ = exact_top(metric, w.items, users, 100)
            for ef in efs:
                r = graph_arm(graph, metric, w.items, users, exact, ef, ABLATION_P)
                rows.append({"seed": seed, "metric": name, "ef": ef, **r})
    return rows


def mean_sd(values: list[float]) -> str:
    return (
        f"{np.mean(values):.3f} ± {np.std(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"
    )


def movielens_part(runs: list[dict], keys: tuple[str, ...]) -> list[str]:
    if not runs:
        return []
    arms = [name for name in runs[0] if name != "target"]
    rows = [[n, *(mean_sd([r[n][key] for r in runs]) for key in keys)] for n in arms]
    return [
        f"ml-latest-small, held-out **{runs[0]['target']}s** (rating 5; behaviours: view = "
        "any rating, like from 4, love at 5, tag), per-user temporal split, item vectors "
        f"from an SVD of the training pairs, mean ± sd over {len(runs)} seeds:",
        markdown_table(["metric", "AUC", "vs shallower", "vs random"], rows),
    ]


def best_fast(result: dict, target: float = 0.9) -> dict | None:
    """The main metric's fastest setting that reaches ``target`` Rec@10."""
    good = [a for a in result["arms"] if a["metric"] == MAIN and a["rec10"] >= target]
    return max(good, key=lambda a: a["qps"], default=None)


def section(
    aucs: list[dict[str, dict]],
    ablated: list[dict],
    results: dict[int, dict],
    dim: int,
    movielens: list[dict],
    device: str,
) -> str:
    keys = ("auc", "auc_vs_shallow", "auc_vs_random")
    auc_rows = [[n, *(mean_sd([a[n][key] for a in aucs]) for key in keys)] for n in aucs[0]]
    ablation_rows = []
    for name in aucs[0]:
        for ef in sorted({a["ef"] for a in ablated}):
            group = [a for a in ablated if a["metric"] == name and a["ef"] == ef]
            scored = f"{np.mean([a['scored'] for a in group]):.0f}"
            recalls = [mean_sd([a[key] for a in group]) for key in ("rec10", "rec100")]
            ablation_rows.append([name, ef, scored, *recalls])
    parts = [
        "## Neural multi-relational retrieval (GMP-GR): graph search against brute force",
        stamp("numpy", "faiss-cpu", "torch"),
        f"Synthetic world: {dim}-dimensional items and 2,000 users around 64 topic centres; "
        "views follow distance, likes and purchases also a hidden bilinear taste, so the "
        f"learned metric is not the distance. Models trained on {TRAIN_ITEMS:,} items' pairs "
        "(70/10/20 random split); each scale searches the same world with more items over an "
        "L2 HNSW graph (M 16, efConstruction 80). Rec@k: share of the brute-force top-k "
        "under the same metric that the search returns (the paper's Cov is Rec@100 here); "
        "scored: items whose relevance one query computed; QPS one query at a time, one "
        "core's worth of Python; × brute force: QPS over brute-force QPS of the same metric. "
        f"Relevance scored on {device} (numpy on the CPU, torch on a CUDA card), brute "
        "force and searches alike. P 1 is NANN's search (Chen et al. 2022: one beam search "
        "of the embeddings' HNSW graph under the neural metric), without NANN's adversarial "
        "training of the metric; P > 1 adds GMP-GR's shared-heap parallel searches.",
        f"### Held-out purchases (AUC, mean ± sd over {len(aucs)} seeds)",
        "Positives: test pairs with a purchase; negatives: the test pairs without one "
        "(viewed or liked only) and as many random never-engaged items.",
        markdown_table(["metric", "AUC", "vs shallower", "vs random"], auc_rows),
        *movielens_part(movielens, keys),
        f"### SCL ablation: Rec@10 at equal work ({TRAIN_ITEMS:,} items, P {ABLATION_P}, "
        f"mean ± sd over {len(aucs)} seeds)",
        "Each metric searched over the same graph against its own brute force; the "
        "single-behaviour metric beside them.",
        markdown_table(["metric", "ef", "scored", "Rec@10", "Rec@100"], ablation_rows),
    ]
    for items, r in results.items():
        best = best_fast(r)
        headline = (
            f"Fastest main-metric setting at Rec@10 ≥ 0.9: P {best['P']}, ef {best['ef']}: "
            f"Rec@10 {best['rec10']:.3f}, {best['qps']:.0f} QPS = "
            f"{best['speedup']:.1f}× brute force ({r['brute_qps'][MAIN]:.2f} QPS)."
            if best
            else "No main-metric setting reached Rec@10 0.9."
        )
        rows = [
            [a["metric"], a["P"], a["ef"], f"{a['scored']:.0f}", f"{a['rec10']:.3f}",
             f"{a['rec100']:.3f}", f"{a['qps']:.0f}", f"{a['speedup']:.1f}×",
             f"{a['p50_ms']:.1f}", f"{a['p99_ms']:.1f}"]
            for a in r["arms"]
        ]  # fmt: skip
        rows += [
            ["cosine HNSW (faiss, by distance)", "—", h["ef"], "—", f"{h['rec10']:.3f}",
             f"{h['rec100']:.3f}", f"{h['qps']:.0f}", f"{h['qps'] / r['brute_qps'][MAIN]:.0f}×",
             "—", "—"]
            for h in r["hnsw"]
        ]  # fmt: skip
        batched = [
            [b["B"], b["calls"] or "—", "—" if b["mean_call"] is None else f"{b['mean_call']:.0f}",
             f"{b['rec10']:.3f}", f"{b['qps']:.0f}"]
            for b in r["batched"]
        ]  # fmt: skip
        parts += [
            f"### {items:,} items (HNSW build {r['build_s']:.0f} s)",
            headline,
            "Brute-force QPS: "
            + ", ".join(f"{n} {q:.2f}" for n, q in r["brute_qps"].items())
            + ".",
            markdown_table(
                [
                    "metric",
                    "P",
                    "ef",
                    "scored",
                    "Rec@10",
                    "Rec@100",
                    "QPS",
                    "× brute force",
                    "p50 ms",
                    "p99 ms",
                ],
                rows,
            ),  # fmt: skip
            "Q-HiPANNS: the same users searched side by side "
            f"(P {ABLATION_P}, ef {r['batched_ef']}), candidates scored in calls of at most "
            "B pairs; the first row searches them one at a time.",
            markdown_table(["B", "scoring calls", "pairs per call", "Rec@10", "QPS"], batched),
        ]
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a smoke run; writes nothing")
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="the world's seed")
    parser.add_argument("--seeds", type=int, default=3, help="model seeds (AUC, SCL ablation)")
    parser.add_argument("--out", type=Path, default=None, help=f"default {DOC}")
    parser.add_argument(
        "--movielens", type=Path, default=Path("../shared/datasets/ml-latest-small")
    )
    parser.add_argument(
        "--device", default=current().device, help="where relevance is scored: auto, cpu, cuda"
    )
    args = parser.parse_args(argv)
    device = scoring_device(args.device)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    train_items, per_user, epochs = (3_000, 10, 2) if args.tiny else (TRAIN_ITEMS, 50, 15)
    w = world(train_items, 2_000, args.dim, 64, args.seed)
    pairs = training_pairs(w, per_user, args.seed)
    runs = [models(w, pairs, epochs, seed) for seed in range(args.seeds)]
    aucs = [{name: auc for name, (_, auc) in fitted.items()} for fitted in runs]
    efs = (100,) if args.tiny else ABLATION_EFS
    ablated = ablation(w, runs, 20 if args.tiny else 100, efs, device)
    scales = TINY if args.tiny else SCALES
    results = {s.items: run_scale(s, runs[0], args.dim, 64, args.seed, device) for s in scales}
    ml = []
    if args.movielens.exists() and not args.tiny:
        ml = movielens_aucs(args.movielens, args.seeds, args.dim)
    text = section(aucs, ablated, results, args.dim, ml, device)
    print(text)
    if args.out is not None or not args.tiny:
        write_section("neural-retrieval", text, doc=args.out or DOC)
    return {"aucs": aucs, "ablation": ablated, "results": results, "movielens": ml}


if __name__ == "__main__":
    main()
