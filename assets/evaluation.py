"""Evaluation: the split fixed before training, every model scored on it, the quality gate."""

import json
import math
from pathlib import Path

import dagster as dg
import pyarrow as pa
from pydantic import Field

from resources.markdown import markdown_table
from resources.measure import Measure
from resources.metadata import rounded
from resources.plots import bars, png_markdown
from resources.spark_lake import LakeResource
from settings import config_field, current
from training.checkpoint import load_model_set
from training.device import pick_device
from training.evaluation import (
    BEST_SELLERS,
    COLD_EXPOSURE,
    GROUPS,
    HEADLINE,
    STRICT,
    TRANSDUCTIVE,
    WARMUP,
    EvaluationReport,
    evaluate_models,
    gate_bars,
    gate_failures,
    load_report,
)
from training.kg_arrays import kg_arrays
from training.ranking import MAX_QUERIES
from training.split import EvaluationSplit, SplitParams, make_split

GROUP = "evaluation"


class SplitConfig(dg.Config):
    test_share: float = Field(0.1, description="Share of EELs held out as the test set.")
    inductive_share: float = Field(
        0.2, description="Share of entities held out whole: new items, unseen in training."
    )
    warmup_links: int = Field(
        3, description="EELs a held-out entity gets back for the warm-up setting."
    )
    seed: int = Field(0, description="Seed of the split.")


class EvaluationConfig(dg.Config):
    memory_budget_mb: int = config_field("inference_memory_budget_mb")
    max_queries: int = Field(
        MAX_QUERIES,
        description="Queries ranked per setting, a seeded sample reported with a bootstrap "
        "interval (0: all of them, at a cost of queries × entities each).",
    )


@dg.asset(group_name="split")  # between the graph and training, as the pipeline runs
def evaluation_split(
    context: dg.AssetExecutionContext,
    config: SplitConfig,
    knowledge_graph: dict[str, pa.Table],
) -> dg.Output[pa.Table]:
    """Test EELs and inductive entities (with their warm-up EELs), fixed by seed; the
    shards and every model train without them."""
    with Measure() as m:
        kg = kg_arrays(knowledge_graph["nodes"], knowledge_graph["edges"])
        split = make_split(kg, SplitParams(**config.model_dump()))
    context.log.info(
        f"Split: {split.test_pairs.shape[1]} test EELs, {len(split.inductive)} inductive "
        f"entities, {split.warmup_pairs.shape[1]} warm-up EELs"
    )
    return dg.Output(
        split.to_arrow(),
        metadata=rounded(
            {
                "test_eels": split.test_pairs.shape[1],
                "inductive_entities": len(split.inductive),
                "warmup_eels": split.warmup_pairs.shape[1],
                **m.metadata("compute"),
            }
        ),
    )


@dg.asset(group_name=GROUP, io_manager_key="folder_io_manager")
def embedding_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    gnn_checkpoint: Path,
    knowledge_graph: dict[str, pa.Table],
    evaluation_split: pa.Table,
) -> dg.Output[EvaluationReport]:
    """MAP@10/50/100 and Recall of every trained model and baseline: transductive (and per
    cold-start group), strict cold start, warm-up and rare-concept similarity."""
    models = load_model_set(gnn_checkpoint)
    split = EvaluationSplit.from_arrow(evaluation_split)
    kg = kg_arrays(knowledge_graph["nodes"], knowledge_graph["edges"])
    with Measure() as m:
        results = evaluate_models(
            models, kg, split, config.memory_budget_mb, pick_device(), context.log.info,
            max_queries=config.max_queries or None,
        )  # fmt: skip
    report = EvaluationReport(results, models.primary, gnn_checkpoint.name)
    table = comparison_table(report)
    context.log.debug("\n" + table)  # in the metadata; the summary prints the headline
    settings = [TRANSDUCTIVE, *(f"{TRANSDUCTIVE}/{g}" for g in GROUPS), STRICT, WARMUP]
    plot = bars(
        {name: [r[s]["map@10"] for s in settings] for name, r in results.items()},
        [_setting_label(s) for s in settings],
        title="MAP@10 by setting (test split)",
        highlight=models.primary,
    )
    return dg.Output(
        report,
        metadata=rounded(
            {
                "primary": models.primary,
                "model_version": report.model_version,
                "map_at_10": report.value(models.primary),
                "map_at_10_95%_interval": report.interval(models.primary),
                "queries": int(report.value(models.primary, metric="queries")),
                "strict_cold_start_map_at_10": report.value(models.primary, STRICT),
                "comparison": dg.MetadataValue.md(table),
                # strict cold-start queries: how much of each model's top 10 is best-sellers
                "cold_query_exposure": dg.MetadataValue.md(exposure_table(report)),
                "plot_map_at_10_by_setting": png_markdown(plot, "MAP@10 by setting"),
                **m.metadata("compute"),
            }
        ),
    )


def _setting_label(setting: str) -> str:
    """``transductive/group1`` -> ``degree (3, 6]``: the groups by training EEL degree."""
    group = setting.removeprefix(f"{TRANSDUCTIVE}/")
    if group not in GROUPS:
        return setting
    lo, hi = GROUPS[group]
    return f"degree ≤ {hi:g}" if lo == -math.inf else f"degree ({lo:g}, {hi:g}]"


def comparison_table(report: EvaluationReport) -> str:
    """One row per model, one column per headline metric; then the primary's lift."""
    rows: list[tuple[object, ...]] = [
        (
            f"**{model}**" if model == report.primary else model,
            *(f"{r[s][m]:.4f}" for s, m in HEADLINE),
        )  # fmt: skip
        for model, r in report.results.items()
    ]
    lift = []
    for s, m in HEADLINE:
        name, best = report.best_baseline(s, m)
        ratio = report.value(report.primary, s, m) / best if best > 0 else math.nan
        lift.append(f"{ratio:.2f}× ({name})")
    rows.append((f"{report.primary} ÷ best other", *lift))
    return markdown_table(["model", *(f"{s} {m}" for s, m in HEADLINE)], rows)


def exposure_table(report: EvaluationReport) -> str:
    """Cold-query exposure of every model (``training.evaluation.cold_query_exposure``)."""
    return markdown_table(
        ["model", f"top-10 among the {BEST_SELLERS} best-sellers", "top-10 sharing a concept"],
        [
            (model, f"{e['bestseller_share']:.1%}", f"{e['concept_overlap_share']:.1%}")
            for model, r in report.results.items()
            if (e := r.get(COLD_EXPOSURE)) is not None
        ],
    )


@dg.asset_check(asset=embedding_evaluation, blocking=True)
def quality_gate(lake: LakeResource, embedding_evaluation: Path) -> dg.AssetCheckResult:
    """Blocks a model worse than the best no-learning baseline, or than the last accepted
    model, on all-entity MAP@10 by more than ``COGRAPH_GATE_MARGIN`` (relative), naming
    the bar it missed; a passing model is accepted."""
    margin = current().gate_margin
    report = load_report(embedding_evaluation)
    value = report.value(report.primary)
    accepted_path = lake.layout.accepted_model
    accepted = json.loads(accepted_path.read_text()) if accepted_path.exists() else None
    bars_to_pass = gate_bars(report, accepted)
    failing = gate_failures(value, bars_to_pass, margin)
    if not failing:
        accepted_path.parent.mkdir(parents=True, exist_ok=True)
        record = {"model_version": report.model_version, "map_at_10": value}
        tmp = accepted_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(accepted_path)
    return dg.AssetCheckResult(
        passed=not failing,
        description=(
            f"MAP@10 {value:.4f} is more than {margin:.0%} below {sorted(failing)}"
            if failing
            else f"MAP@10 {value:.4f} accepted"
        ),
        metadata=rounded(
            {
                "map_at_10": value,
                "margin": margin,
                **{f"bar: {k}": v for k, v in bars_to_pass.items()},
            }
        ),
    )
