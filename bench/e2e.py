"""End-to-end mode, measured: every arm of :mod:`training.e2e_run` on the demo default and
on ml-latest-small, written into the ``e2e`` section of docs/quality.md
(``python -m bench.e2e``).

The demo default is the synthetic generator's output with the rows ingest would
quarantine dropped; ml-latest-small is its ratings (timestamps) and its genres and tags
as concepts. Both run the asset's defaults (:class:`assets.e2e.E2EConfig`).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd

from assets.e2e import E2EConfig
from bench.report import stamp, write_section
from resources.markdown import markdown_table
from spark_jobs.synthetic import SyntheticSpec, generate
from training.device import device_name, pick_device
from training.e2e import END_TO_END, TWO_STAGE
from training.e2e_run import TARGET, E2EReport, run_arms
from training.time_split import e2e_inputs

DOC = Path(__file__).resolve().parents[1] / "docs" / "quality.md"


TINY_SPEC = SyntheticSpec(n_users=200, n_items=300, n_interactions=6_000)
TINY_CONFIG = E2EConfig(dim=8, epochs=2, batch_size=128, negatives=64, max_steps_per_epoch=3)


def synthetic_frames(spec: SyntheticSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    interactions, items, concepts = generate(spec)
    ts = pd.to_numeric(interactions["ts"], errors="coerce")
    valid = (
        interactions["user_id"].notna()
        & ts.notna()
        & interactions["item_id"].isin(items["item_id"])
    )
    return interactions[valid].assign(ts=ts[valid].astype("int64")), concepts


def movielens_frames(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    ratings = pd.read_csv(root / "ratings.csv")
    movies = pd.read_csv(root / "movies.csv")
    tags = pd.read_csv(root / "tags.csv")
    interactions = pd.DataFrame(
        {"user_id": ratings["userId"], "item_id": ratings["movieId"], "ts": ratings["timestamp"]}
    )
    genres = movies.assign(concept=movies["genres"].str.split("|")).explode("concept")
    genres = genres[genres["concept"] != "(no genres listed)"]
    concepts = pd.concat(
        [
            pd.DataFrame(
                {"item_id": genres["movieId"], "relation": "genre", "concept": genres["concept"]}
            ),
            pd.DataFrame({"item_id": tags["movieId"], "relation": "tag", "concept": tags["tag"]}),
        ]
    )
    return interactions, concepts


def _mean_sd(values: list[float]) -> str:
    return (
        f"{np.mean(values):.4f} ± {np.std(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"
    )


def seeds_table(reports: list[E2EReport]) -> str:
    """Each arm and peer over the seeds: test metrics' mean ± sd, the ratio of mean NDCG@20
    to two-stage's, the mean step time."""
    names = [*reports[0].arms, *reports[0].peers]

    def values(name: str, metric: str) -> list[float]:
        return [(r.arms.get(name) or r.peers[name])["test"][metric] for r in reports]

    base = float(np.mean(values(TWO_STAGE, "ndcg@20")))
    rows = []
    for name in names:
        steps = [r.arms[name]["step_seconds"] for r in reports if name in r.arms]
        rows.append(
            (
                name,
                _mean_sd(values(name, "recall@20")),
                _mean_sd(values(name, "ndcg@20")),
                _mean_sd(values(name, "auc")),
                f"{np.mean(values(name, 'ndcg@20')) / base:.3f}×",
                f"{1000 * np.mean(steps):.0f} ms" if steps else "—",
            )
        )
    header = ["arm", "recall@20", "ndcg@20", "auc", "× two-stage", "step"]
    costs = [
        (name, f"{np.mean([r.costs[name] for r in reports]):.1f} s") for name in reports[0].costs
    ]
    return "\n\n".join(
        [
            markdown_table(header, rows),
            markdown_table(["refresh of", "seconds (training + full-graph inference)"], costs),
        ]
    )


def dataset_section(
    title: str, frames: tuple[pd.DataFrame, pd.DataFrame], config: E2EConfig, seeds: int
) -> tuple[str, list[E2EReport]]:
    device = pick_device()
    tick = time.perf_counter()
    data = e2e_inputs(*frames)
    reports = []
    for seed in range(seeds):
        params = dataclasses.replace(config.params(), seed=seed)
        reports.append(run_arms(data, params, device, log=print).report)
    c = reports[0].counts
    per_seed = "; ".join(
        f"seed {seed}: {r.ratio:.3f}× (difference {d:+.4f}, 95% interval {lo:+.4f} to "
        f"{hi:+.4f}, gate {'holds' if r.holds else 'blocks'})"
        for seed, r in enumerate(reports)
        for d, lo, hi in [r.difference()]
    )
    ratio = np.mean([r.ndcg(END_TO_END) for r in reports]) / np.mean(
        [r.ndcg(TWO_STAGE) for r in reports]
    )
    return (
        "\n\n".join(
            [
                f"### {title}",
                f"{c['users']} users, {c['items']} items; {c['train_rows']} training, "
                f"{c['validation_rows']} validation and {c['test_rows']} test (user, item) rows; "
                f"{c['test_queries']} test users; graph of {c['graph_edges']} directed edges. "
                f"Over {seeds} seed(s), end-to-end is **{ratio:.3f}×** two-stage on mean test "
                f"NDCG@20 (target {TARGET}×); {per_seed}. All runs in "
                f"{time.perf_counter() - tick:.0f} s on {device_name(device)}.",
                seeds_table(reports),
            ]
        ),
        reports,
    )


def main(argv: list[str] | None = None) -> list[list[E2EReport]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--movielens", type=Path, default=Path("../shared/datasets/ml-latest-small")
    )
    parser.add_argument("--out", type=Path, default=DOC)
    parser.add_argument("--tiny", action="store_true", help="seconds-long sizes (the smoke test)")
    parser.add_argument("--seeds", type=int, default=3, help="runs per dataset (seeds 0..n-1)")
    args = parser.parse_args(argv)
    config = TINY_CONFIG if args.tiny else E2EConfig()
    sections = [
        "## End-to-end mode (E2E-GRec)",
        f"Written by `python -m bench.e2e`; {stamp('torch')}. A temporal split of each "
        "user's items (the last 20% test, the 10% before validation); every arm keeps its "
        "epoch of best validation NDCG@20 and is measured once on test: Recall@20, NDCG@20 "
        "and AUC of the test items against all items, the user's history left out. Arms and "
        "protocol in `training/e2e.py` and `training/time_split.py`. Each seed reruns every "
        "arm (initialisation and sampling; the split is the same); the gate is the asset's "
        "blocking check (`assets/e2e.py`). The refresh cost is what "
        "each pipeline pays to produce a servable ranker (two-stage: GNN pretraining, one "
        "full-graph inference and the ranker's training; end-to-end: its joint training and "
        "one full-graph inference).",
    ]
    datasets = [
        ("Demo default (synthetic)", synthetic_frames(TINY_SPEC if args.tiny else SyntheticSpec()))
    ]
    if args.movielens.exists() and not args.tiny:
        datasets.append(("ml-latest-small", movielens_frames(args.movielens)))
    reports = []
    for title, frames in datasets:
        section, runs = dataset_section(title, frames, config, args.seeds)
        sections.append(section)
        reports.append(runs)
    write_section("e2e", "\n\n".join(sections), doc=args.out, header="# Quality\n")
    return reports


if __name__ == "__main__":
    main()
