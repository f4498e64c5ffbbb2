"""Cross-domain cold start, measured: the cross-domain refresh on two datasets, its
evaluation written into docs/quality.md (``python -m bench.cross_domain``).

* the two-domain synthetic data (music, then live as the target), demo size;
* a real proxy: ml-latest-small split into two domains by genre family (a movie is
  ``action`` when at least half of its genres are action-family genres, else ``drama``;
  ``drama`` is the target), users shared, read through the generic reader. The split is
  the proxy's construction, not a model constant: nothing in the lineage knows it.

Each dataset runs the whole lineage into a fresh lake (default training config, encoders
``semantic`` and ``sage``, each also with EELs typed by domain, and DeepWalk; Metapath2Vec
and the target-only twins in the
cross-domain group), then the evaluation's table is written into the document's
``cross_domain`` section. On the synthetic data the section also says what the data allows:
the generator's own scorer, which knows every item's hidden topic, on the same cold users
and new items.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pyspark.sql import functions as F

from assets.cross_domain import marked_interactions, report_table
from assets.model import TrainConfig
from assets.raw import IngestConfig, SyntheticConfig
from bench.lineage import full_refresh
from bench.report import stamp, write_section
from orchestration.definitions import lake_resources
from resources.cross_domain import CrossDomainResource
from resources.io_manager import lake_tables
from resources.markdown import markdown_table
from resources.spark_lake import LakeResource, SparkResource
from spark_jobs import constants as C
from spark_jobs.synthetic import TASTE_CONCENTRATION, item_index, latent
from storage.lake_transaction import LakeTables
from storage.layout import LakeLayout
from storage.versions import latest
from training.cross_domain import (
    COLD_USERS,
    CONCEPTS,
    HEADLINE,
    JOINT,
    NEW_ITEMS,
    POPULAR,
    TARGET_ONLY,
    CrossDomainReport,
    cold_user_task,
    interaction_signals,
    load_report,
    new_item_task,
    score_task,
    topic_posterior_scorer,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "quality.md"
ACTION_FAMILY = {
    "Action", "Adventure", "Sci-Fi", "Thriller", "Crime", "Horror", "War", "Western",
    "Mystery", "Film-Noir", "Fantasy", "IMAX",
}  # fmt: skip
# each encoder twice: co-engagement links as one relation, and typed by the domains of their
# ends (``_domain_eels``), side by side on the same split
MODELS = ["semantic", "semantic_domain_eels", "sage", "sage_domain_eels", "deepwalk"]


def movielens_two_domains(root: Path, out: Path) -> IngestConfig:
    """ml-latest-small as generic files with a genre-family domain per movie."""
    movies = pd.read_csv(root / "movies.csv")
    genres = movies["genres"].str.split("|")
    action = genres.map(lambda g: 2 * sum(x in ACTION_FAMILY for x in g) >= len(g))
    items = pd.DataFrame(
        {
            "item_id": movies["movieId"],
            "domain": action.map({True: "action", False: "drama"}),
            "title": movies["title"],
        }
    )
    ratings = pd.read_csv(root / "ratings.csv")
    interactions = pd.DataFrame(
        {
            "user_id": ratings["userId"],
            "item_id": ratings["movieId"],
            "event": "rating",
            "weight": ratings["rating"],
            "ts": ratings["timestamp"],
        }
    )
    tags = pd.read_csv(root / "tags.csv")
    concepts = pd.concat(
        [
            movies.assign(concept=genres)
            .explode("concept")
            .query("concept != '(no genres listed)'")
            .assign(relation="genre")[["movieId", "relation", "concept"]],
            tags.assign(relation="tag").rename(columns={"tag": "concept"})[
                ["movieId", "relation", "concept"]
            ],
        ]
    ).rename(columns={"movieId": "item_id"})
    paths = {name: out / f"{name}.csv" for name in ("interactions", "items", "concepts")}
    interactions.to_csv(paths["interactions"], index=False)
    items.to_csv(paths["items"], index=False)
    concepts.to_csv(paths["concepts"], index=False)
    return IngestConfig(
        source="generic",
        interactions_path=str(paths["interactions"]),
        items_path=str(paths["items"]),
        concepts_path=str(paths["concepts"]),
    )


def dataset_section(title: str, ingest: IngestConfig, target: str) -> str:
    with tempfile.TemporaryDirectory(prefix="cograph-cross-domain-") as tmp:
        lake = Path(tmp)
        spark = SparkResource(master="local[2]", shuffle_partitions=4)
        resources = lake_resources(spark, LakeResource(root=str(lake)))
        resources["cross_domain"] = CrossDomainResource(target=target)
        refresh = full_refresh(
            resources, ingest, cross_domain=True, ops={"gnn_checkpoint": TrainConfig(models=MODELS)}
        )
        report = load_report(latest(LakeLayout(lake).artifact("cross_domain_evaluation")))
        c = report.counts
        ceiling = ""
        if ingest.source == "synthetic":
            tables = lake_tables(resources["lake"], spark)
            values = topic_ceiling(tables, spark, resources["cross_domain"], ingest)
            ceiling = ceiling_paragraph(values, report)

        def step(name: str) -> float:
            return refresh.step_seconds.get(name, float("nan"))

        return "\n\n".join(
            [
                f"### {title}",
                f"Target `{target}`: {c['target_items']} items; {c['held_out_rows']} rows held "
                f"out; test queries: {report.results['cold_users']['popular_in_target']['queries']}"
                f" cold users, {report.results['new_items']['popular_in_target']['queries']} new "
                f"items, {c['new_item_exposure_queries']} users with new-item rows. Whole "
                f"lineage {refresh.seconds:.0f} s (cross-domain walk models "
                f"{step('cross_domain_walk_models'):.0f} s, evaluation "
                f"{step('cross_domain_evaluation'):.0f} s).",
                report_table(report),
                *([ceiling] if ceiling else []),
            ]
        )


def topic_ceiling(
    tables: LakeTables,
    spark: SparkResource,
    cross_domain: CrossDomainResource,
    ingest: IngestConfig,
) -> dict[str, dict[str, float]]:
    """How far the synthetic tasks can be taken: the headline metric of the generator's own
    scorer (:func:`~training.cross_domain.topic_posterior_scorer`, which knows each item's
    hidden topic; a new item is a history of one) on the run's test halves of the cold
    users and the new items, with popularity from the training users (``"training"``) and
    the generator's exact weights (``"exact"``): task -> popularity -> value."""
    session = spark.session
    nodes = tables.read(session, "knowledge_graph/nodes")
    entities = nodes.where(F.col(C.NODE_TYPE) == C.ENTITY).select(C.NODE_ID, C.KEY).toArrow()
    keys = np.empty(entities.num_rows, dtype=object)
    keys[entities.column(C.NODE_ID).to_numpy()] = entities.column(C.KEY).to_pylist()
    spec = ingest.synthetic.spec()
    data = marked_interactions(
        tables.read(session, "raw_interactions"), tables.read(session, "item_catalog"), nodes,
        cross_domain.holdout, len(keys),
    )  # fmt: skip
    hidden, at = latent(spec), item_index(keys)
    exact = torch.from_numpy(hidden.log_popularity(at)).float()
    in_target = torch.from_numpy(data.in_target)
    # the evaluation's default seed: the same queries and halves
    tasks = {COLD_USERS: cold_user_task(data), NEW_ITEMS: new_item_task(data)}
    popularity = {"training": interaction_signals(data).log_users, "exact": exact}
    out: dict[str, dict[str, float]] = {kind: {} for kind in tasks}
    for name, log_popularity in popularity.items():
        scorer = topic_posterior_scorer(
            hidden.item_topic[at], data.in_target, log_popularity, TASTE_CONCENTRATION,
            spec.in_topic_share,
        )  # fmt: skip
        for kind, task in tasks.items():
            score = score_task(kind, task, scorer, log_popularity, in_target, (1.0,))
            out[kind][name] = score.metrics[HEADLINE[kind]]
    return out


def ceiling_paragraph(ceiling: dict[str, dict[str, float]], report: CrossDomainReport) -> str:
    """:func:`topic_ceiling` beside the bars' peers and the best joint models."""
    popular = report.value(COLD_USERS, POPULAR)
    concepts = report.value(NEW_ITEMS, CONCEPTS)
    twin, twin_value = report.best(COLD_USERS, TARGET_ONLY)
    rows = []
    for name, knows in (
        ("training", "hidden topics; popularity from training users"),
        ("exact", "hidden topics and exact popularity"),
    ):
        users, items = ceiling[COLD_USERS][name], ceiling[NEW_ITEMS][name]
        rows.append(["topic posterior", knows, f"{users:.4f}", users, f"{items:.4f}", items])
    user_model, users = report.best(COLD_USERS, JOINT)
    item_model, items = report.best(NEW_ITEMS, JOINT)
    rows.append(
        ["best joint model", "the data", f"{user_model} {users:.4f}", users,
         f"{item_model} {items:.4f}", items]
    )  # fmt: skip
    table = markdown_table(
        ["scorer", "knows", "cold_users recall@20", "× popular_in_target", f"× {twin}",
         "new_items map@10", f"× {CONCEPTS}"],
        [[name, knows, u, f"{uv / popular:.2f}×", f"{uv / twin_value:.2f}×", i,
          f"{iv / concepts:.2f}×"] for name, knows, u, uv, i, iv in rows],
    )  # fmt: skip
    return (
        "**What the data allows.** The generator's own scorer on the same test halves "
        "(`topic_posterior_scorer` in `training/cross_domain.py`: the posterior of the "
        "user's topics given their history, a new item being a history of one, times the "
        "item's share of its topic's popularity) knows what the models must learn, every "
        "item's hidden topic. With popularity estimated from the training users, as every "
        "scorer here does, it is what a model that learned the topics perfectly would "
        "reach. With the generator's exact weights, which no sample of interactions gives, "
        "it is about the best any scorer can do for cold users; a new item's truth is its "
        "realized co-engagement, which the realized counts predict better.\n\n" + table
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    movielens = Path("../shared/datasets/ml-latest-small")
    parser.add_argument("--movielens", type=Path, default=movielens)
    parser.add_argument("--out", type=Path, default=DOC)
    args = parser.parse_args(argv)
    synthetic = IngestConfig(source="synthetic", synthetic=SyntheticConfig(cross_domain=True))
    sections = [
        "## Cross-domain cold start",
        f"Written by `python -m bench.cross_domain`; {stamp('torch', 'dagster')}. Test halves; "
        "each scorer's popularity weight λ is chosen on the validation half. Cold users: "
        "Recall@20 and NDCG@20 of their held-out target items from their other-domain "
        "history; new items: MAP@10 item-to-item; exposure: the share of held-out (user, new "
        "item) rows whose item is in the user's top 20. Definitions in "
        "`training/cross_domain.py`.",
        dataset_section("Two-domain synthetic (music → live)", synthetic, "live"),
    ]
    if args.movielens.exists():
        with tempfile.TemporaryDirectory(prefix="cograph-ml-two-domains-") as tmp:
            ingest = movielens_two_domains(args.movielens, Path(tmp))
            sections.append(
                dataset_section("ml-latest-small by genre family (action → drama)", ingest, "drama")
            )
    write_section("cross_domain", "\n\n".join(sections), doc=args.out)
    print(f"Wrote the cross-domain section of {args.out}")


if __name__ == "__main__":
    main()
