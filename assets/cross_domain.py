"""Cross-domain cold start (NetEase/PGL): user-item edges, walk models on the joint and the
target-only graph, and the evaluation of cold users and new target items.

Opt-in: these assets run in the ``cross_domain_refresh`` job, with a target domain set on
the ``cross_domain`` resource (``COGRAPH_CROSS_DOMAIN_TARGET``); the graph build then holds
the target's cold-user and new-item rows out (:mod:`spark_jobs.domain_holdout`).
"""

from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow.compute as pc
import torch
from pydantic import Field
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from assets.graph import CoengagementConfig
from resources.cross_domain import CrossDomainResource
from resources.markdown import markdown_table
from resources.measure import Measure
from resources.metadata import rounded
from resources.plots import bars, png_markdown
from settings import config_field
from spark_jobs import constants as C
from spark_jobs import domain_holdout as H
from spark_jobs import user_item_edges as UI
from spark_jobs.coengagement import CoengagementParams
from training.baselines import signals
from training.checkpoint import load_model_set
from training.cross_domain import (
    COLD_USERS,
    EXPOSURE,
    HEADLINE,
    JOINT,
    NEW_ITEMS,
    CrossDomainReport,
    MarkedInteractions,
    evaluate_cross_domain,
    load_report,
)
from training.cross_domain_models import (
    WalkModels,
    load_walk_models,
    train_encoder_twins,
    train_walk_models,
)
from training.deepwalk import DeepWalkParams
from training.device import pick_device
from training.hasp import HaspParams
from training.inference import embed_graph
from training.kg_arrays import kg_from_frames
from training.shard_store import open_shards
from training.split import EvaluationSplit, training_view
from training.transe import load_transe

GROUP = "cross_domain"


def _required(cross_domain: CrossDomainResource) -> H.DomainHoldout:
    holdout = cross_domain.holdout
    if not holdout.enabled:
        raise dg.Failure(
            "The cross-domain assets need a target domain: set COGRAPH_CROSS_DOMAIN_TARGET "
            "(or the cross_domain resource's `target`) and run cross_domain_refresh, so that "
            "the graph is built without the rows they measure."
        )
    return holdout


def _in_target(
    catalog: DataFrame, nodes: DataFrame, holdout: H.DomainHoldout, n: int
) -> np.ndarray:
    domains = H.entity_domains(catalog, nodes, holdout.default_domain).toArrow()
    mask = np.zeros(n, dtype=bool)
    entity = domains.column(H.ENTITY).to_numpy()
    mask[entity] = pc.equal(domains.column(C.DOMAIN), holdout.target).to_numpy(zero_copy_only=False)
    return mask


@dg.asset(group_name=GROUP)
def user_item_edges(
    context: dg.AssetExecutionContext,
    config: CoengagementConfig,
    cross_domain: CrossDomainResource,
    raw_interactions: DataFrame,
    item_catalog: DataFrame,
    knowledge_graph: dict[str, DataFrame],
) -> dg.Output[DataFrame]:
    """User nodes and their user-item edges on graph ids, from the training interactions
    (the target's held-out rows left out), capped per user as co-engagement caps them."""
    holdout = _required(cross_domain)
    with Measure() as m:
        interactions = H.training_interactions(raw_interactions, item_catalog, holdout)
        params = CoengagementParams(**config.model_dump())
        domains = H.item_domains(item_catalog, holdout.default_domain)
        edges = UI.user_item_edges(interactions, domains, knowledge_graph["nodes"], params)
        edges = edges.persist()
        per_domain = {
            r[C.DOMAIN]: r["edges"]
            for r in edges.groupBy(C.DOMAIN).agg(F.count("*").alias("edges")).collect()
        }
        users = edges.select(UI.USER).distinct().count()
    context.log.info(f"{sum(per_domain.values())} user-item edges of {users} users")
    return dg.Output(
        edges,
        metadata=rounded(
            {
                "rows": sum(per_domain.values()),
                "users": users,
                "edges_per_domain": dg.MetadataValue.json(per_domain),
                **m.metadata("compute"),
            }
        ),
    )


class WalkConfig(dg.Config):
    dim: int = Field(64, description="Embedding size.")
    walk_length: int = Field(20, description="Nodes per walk.")
    walks_per_node: int = Field(5, description="Walks started from each node (item).")
    window: int = Field(4, description="Skip-gram context window.")
    epochs: int = Field(2, description="Passes, each over fresh walks.")
    seed: int = Field(0, description="Seed of walks and initialization.")


@dg.asset(group_name=GROUP, io_manager_key="folder_io_manager")
def cross_domain_walk_models(
    context: dg.AssetExecutionContext,
    config: WalkConfig,
    cross_domain: CrossDomainResource,
    item_catalog: DataFrame,
    knowledge_graph: dict[str, DataFrame],
    user_item_edges: DataFrame,
) -> dg.Output[WalkModels]:
    """DeepWalk and Metapath2Vec (item-user-item and item-concept-item metapaths), each on
    the joint graph and on the target domain alone."""
    holdout = _required(cross_domain)
    kg = kg_from_frames(knowledge_graph)
    in_target = _in_target(item_catalog, knowledge_graph["nodes"], holdout, kg.num_entities)
    edges = user_item_edges.select(UI.USER, UI.ENTITY).toArrow()
    params = DeepWalkParams(**config.model_dump())
    with Measure() as m:
        models = train_walk_models(
            kg,
            edges.column(UI.USER).to_numpy(),
            edges.column(UI.ENTITY).to_numpy(),
            in_target,
            params,
            pick_device(),
            context.log.info,
        )
    return dg.Output(
        models,
        metadata=rounded(
            {
                "models": dg.MetadataValue.json(
                    {name: view for name, (view, _) in models.tables.items()}
                ),
                "target_entities": int(in_target.sum()),
                **m.metadata("compute"),
            }
        ),
    )


class TwinConfig(dg.Config):
    memory_budget_mb: int = config_field("inference_memory_budget_mb")


@dg.asset(group_name=GROUP, io_manager_key="folder_io_manager")
def target_only_encoders(
    context: dg.AssetExecutionContext,
    config: TwinConfig,
    cross_domain: CrossDomainResource,
    item_catalog: DataFrame,
    knowledge_graph: dict[str, DataFrame],
    evaluation_split: DataFrame,
    hasp_shards: Path,
    concept_pretraining: Path,
    gnn_checkpoint: Path,
) -> dg.Output[WalkModels]:
    """Twins of the run's encoders (same variant, shape and training parameters) trained
    on the target domain alone, over shards of that view: the peers that say what the
    other domains' behaviour adds."""
    holdout = _required(cross_domain)
    kg = kg_from_frames(knowledge_graph)
    in_target = _in_target(item_catalog, knowledge_graph["nodes"], holdout, kg.num_entities)
    split = EvaluationSplit.from_arrow(evaluation_split.toArrow())
    with Measure() as m:
        twins = train_encoder_twins(
            load_model_set(gnn_checkpoint).checkpoints,
            training_view(kg, split),
            kg,
            in_target,
            load_transe(concept_pretraining),
            HaspParams.of_manifest(open_shards(hasp_shards).manifest),
            config.memory_budget_mb,
            pick_device(),
            context.log.info,
        )
    return dg.Output(
        twins,
        metadata=rounded(
            {
                "models": dg.MetadataValue.json(sorted(twins.tables)),
                "target_entities": int(in_target.sum()),
                **m.metadata("compute"),
            }
        ),
    )


def marked_interactions(
    raw_interactions: DataFrame,
    item_catalog: DataFrame,
    nodes: DataFrame,
    holdout: H.DomainHoldout,
    num_entities: int,
) -> MarkedInteractions:
    """The distinct (user, entity) rows with the holdout's marks, users coded in id order."""
    rows = H.evaluation_rows(raw_interactions, item_catalog, nodes, holdout).toArrow()
    users = rows.column(C.USER_ID).to_numpy(zero_copy_only=False)
    codes = np.unique(users, return_inverse=True)[1]
    return MarkedInteractions(
        codes.astype(np.int64),
        rows.column(H.ENTITY).to_numpy(),
        rows.column(H.HELD_OUT).to_numpy(zero_copy_only=False),
        rows.column(H.COLD_USER).to_numpy(zero_copy_only=False),
        rows.column(H.NEW_ITEM).to_numpy(zero_copy_only=False),
        _in_target(item_catalog, nodes, holdout, num_entities),
    )


class CrossDomainEvaluationConfig(dg.Config):
    memory_budget_mb: int = config_field("inference_memory_budget_mb")
    seed: int = Field(0, description="Seed of the validation/test halves and the samples.")


@dg.asset(group_name=GROUP, io_manager_key="folder_io_manager")
def cross_domain_evaluation(
    context: dg.AssetExecutionContext,
    config: CrossDomainEvaluationConfig,
    cross_domain: CrossDomainResource,
    raw_interactions: DataFrame,
    item_catalog: DataFrame,
    knowledge_graph: dict[str, DataFrame],
    gnn_checkpoint: Path,
    cross_domain_walk_models: Path,
    target_only_encoders: Path,
) -> dg.Output[CrossDomainReport]:
    """Cold users (Recall@20, NDCG@20 of target items from their other-domain history),
    new target items (MAP@10) and how often new items reach the users who engaged them:
    every encoder of the run and the walk models (joint), their target-only twins, against
    popular in target, cross-domain ItemCF and popularity + concepts."""
    holdout = _required(cross_domain)
    nodes = knowledge_graph["nodes"]
    kg = kg_from_frames(knowledge_graph)
    device = pick_device()
    with Measure() as m:
        data = marked_interactions(raw_interactions, item_catalog, nodes, holdout, kg.num_entities)
        model_set = load_model_set(gnn_checkpoint)
        vectors = {}
        for name, checkpoint in model_set.checkpoints.items():
            context.log.info(f"Embedding the whole graph with {name}")
            out = embed_graph(checkpoint, kg, config.memory_budget_mb, device)
            vectors[name] = (JOINT, out.vectors)
        for folder in (cross_domain_walk_models, target_only_encoders):
            for name, (view, table) in load_walk_models(folder).tables.items():
                vectors[name] = (view, table.embeddings)
        empty = torch.empty(2, 0, dtype=torch.long)
        without_domain = item_catalog.where(F.col(C.DOMAIN).isNull()).count()
        report = evaluate_cross_domain(
            data, signals(kg, empty), vectors, holdout.target, config.seed
        )
    if report.empty:
        context.log.warning(f"Domain {holdout.target!r} has no items: nothing to evaluate")
    return dg.Output(
        report,
        metadata=rounded(
            {
                "target_domain": holdout.target,
                **report.counts,
                f"items_in_{holdout.default_domain}_domain": without_domain,
                "comparison": dg.MetadataValue.md(report_table(report)),
                **_plot(report),
                **m.metadata("compute"),
            }
        ),
    )


def report_table(report: CrossDomainReport) -> str:
    """One row per scorer: what it is, each task's test metrics (λ chosen on validation)."""
    if report.empty:
        return f"Domain `{report.target}` has no items: nothing was evaluated."
    columns = [(COLD_USERS, "recall@20"), (COLD_USERS, "ndcg@20"), (NEW_ITEMS, "map@10"),
               (EXPOSURE, "hit@20")]  # fmt: skip
    rows = []
    for name, kind in report.kinds.items():
        cells = []
        for task, metric in columns:
            result = report.results[task].get(name)
            cells.append(
                "—" if result is None else f"{result['metrics'].get(metric, float('nan')):.4f}"
            )
        lams = " / ".join(f"{report.results[t][name]['lam']:g}" for t in report.results)
        rows.append((name, kind, *cells, lams))
    header = ["scorer", "trained on", *(f"{t} {m}" for t, m in columns),
              f"λ ({' / '.join(report.results)})"]  # fmt: skip
    targets = [
        (label, t["model"], t["peer"], f"{t['ratio']:.2f}×", f"≥ {t['bar']}×")
        for label, t in report.target_ratios().items()
    ]
    return "\n\n".join(
        [
            markdown_table(header, rows),
            markdown_table(["target", "best joint model", "against", "ratio", "bar"], targets),
        ]
    )


def _plot(report: CrossDomainReport) -> dict[str, object]:
    if report.empty:
        return {}
    tasks = [COLD_USERS, NEW_ITEMS, EXPOSURE]
    figure = bars(
        {name: [report.value(t, name) for t in tasks] for name in report.kinds},
        [f"{t} {HEADLINE[t]}" for t in tasks],
        title=f"Cross-domain cold start, target {report.target} (test)",
    )
    return {"plot_cross_domain": png_markdown(figure, "Cross-domain cold start")}


def _check(report: CrossDomainReport, label: str) -> dg.AssetCheckResult:
    if report.empty:
        return dg.AssetCheckResult(
            passed=True, description=f"Domain {report.target!r} has no items: nothing measured"
        )
    t = report.target_ratios()[label]
    passed = bool(t["ratio"] >= t["bar"])
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{t['model']} is {t['ratio']:.2f}× {t['peer']} (bar {t['bar']}×)",
        metadata=rounded({"ratio": t["ratio"], "bar": t["bar"]}),
    )


@dg.asset_check(asset=cross_domain_evaluation)
def cold_users_beat_popular(cross_domain_evaluation: Path) -> dg.AssetCheckResult:
    """Cold users: the best joint model's Recall@20 at least 1.3× popular-in-target."""
    return _check(load_report(cross_domain_evaluation), "cold_users_vs_popular")


@dg.asset_check(asset=cross_domain_evaluation)
def cold_users_beat_target_only(cross_domain_evaluation: Path) -> dg.AssetCheckResult:
    """Cold users: the best joint model at least 1.2× the best target-only model."""
    return _check(load_report(cross_domain_evaluation), "cold_users_vs_target_only")


@dg.asset_check(asset=cross_domain_evaluation)
def new_items_beat_concepts(cross_domain_evaluation: Path) -> dg.AssetCheckResult:
    """New target items: the best joint model's MAP@10 at least 1.35× popularity+concepts."""
    return _check(load_report(cross_domain_evaluation), "new_items_vs_popularity_concepts")
