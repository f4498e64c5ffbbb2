"""Neural multi-relational relevance (GMP-GR's MUIRML) for ``/v1/recommend`` with
``strategy: "neural"``: the learned relevance, searched over the served HNSW graph.

Opt-in, like the e2e group: the ``neural_refresh`` job trains it on the raw interactions'
behaviours over the served embeddings (``make demo-neural``). The multi-behaviour model is
measured against the single-behaviour one on held-out pairs of the deepest behaviour, and
its graph search over the ``ann_index`` bundle against brute force under the same metric.
The blocking check holds it to the single-behaviour model: a model that does not beat it
keeps its report but is not published, so the service keeps the one it had.
"""

from pathlib import Path

import dagster as dg
from pydantic import Field
from pyspark.sql import DataFrame

from resources.markdown import markdown_table
from resources.measure import Measure
from resources.metadata import rounded
from resources.plots import curves, png_markdown
from serving.artifact import load_bundle
from serving.neural_metric import NeuralMetric
from serving.neural_search import NeuralSearcher, SearchSettings, search_quality
from spark_jobs import constants as C
from training.device import device_name, pick_device
from training.muirml_fit import MuirmlParams
from training.muirml_run import MULTI, SINGLE, RelevanceReport, RelevanceRun, load_report
from training.muirml_run import run_relevance as train_relevance

GROUP = "neural"


class RelevanceConfig(dg.Config):
    hidden: int = Field(64, description="Width of the MLP's two hidden layers.")
    epochs: int = Field(15, description="Epochs (the best on validation AUC is kept).")
    negatives: int = Field(4, description="Random items per training pair.")
    scl_weight: float = Field(0.1, description="λ of the self-covariant loss (0: none).")
    ef: int = Field(64, description="Graph search: result list per query.")
    parallel: int = Field(2, description="Graph search: parallel searches per query (P).")
    seeds: int = Field(32, description="Graph search: inner-product seeds (0: HNSW's descent).")
    check_queries: int = Field(200, description="Test users whose search is checked.")
    seed: int = Field(0, description="Seed of initialisation, sampling and check users.")

    def params(self) -> MuirmlParams:
        return MuirmlParams(
            hidden=self.hidden,
            epochs=self.epochs,
            negatives=self.negatives,
            scl_weight=self.scl_weight,
            # the served score's order: relevance correlated with L2 instead (the searcher
            # walks an L2 graph) ranked test items below random ones on the test lake
            distance="inner",
            seed=self.seed,
        )


@dg.asset(group_name=GROUP, io_manager_key="folder_io_manager")
def relevance_model(
    context: dg.AssetExecutionContext,
    config: RelevanceConfig,
    raw_interactions: DataFrame,
    ann_index: Path,
) -> dg.Output[RelevanceRun]:
    """MUIRML (one probability per behaviour, attention-weighted into one relevance, with
    the self-covariant loss) and the single-behaviour baseline on a temporal split of each
    user's pairs, over the served index's embeddings (not the newest matrix: one the quality
    gate kept out of the index is not served); its graph search over that index checked
    against brute force."""
    device = pick_device()
    with Measure() as m:
        columns = (C.USER_ID, C.ITEM_ID, C.EVENT, C.WEIGHT, C.TS)
        interactions = raw_interactions.select(*columns).toPandas()
        bundle = load_bundle(ann_index)
        item_ids = bundle.entities.column("item_id").to_numpy(zero_copy_only=False)
        run = train_relevance(
            interactions,
            item_ids,
            bundle.vectors,
            bundle.meta["model_version"],
            config.params(),
            device,
            log=context.log.info,
        )
        metric = NeuralMetric(run.arrays()).on(str(device))
        settings = SearchSettings(ef=config.ef, parallel=config.parallel, seeds=config.seeds)
        searcher = NeuralSearcher(bundle.index, bundle.vectors, metric, settings)
        quality = search_quality(searcher, run.test_users(config.check_queries, config.seed))
    report = run.report
    return dg.Output(
        run,
        metadata=rounded(
            {
                "rows": len(interactions),
                **report.counts,
                "behaviours": ", ".join(report.behaviours),
                "target_behaviour": report.target,
                "aucs": dg.MetadataValue.md(auc_table(report)),
                f"auc_{MULTI.replace('-', '_')}": report.aucs[MULTI]["auc"],
                f"auc_{SINGLE.replace('-', '_')}": report.aucs[SINGLE]["auc"],
                "scenario_weights": dg.MetadataValue.md(scenario_table(report)),
                "model_published": run.publishes,
                "device": device_name(device),
                "embedding_version": run.embedding_version,
                **{f"graph_search_{k}": v for k, v in quality.items()},
                **_plot(report),
                **m.metadata("compute"),
            }
        ),
    )


def auc_table(report: RelevanceReport) -> str:
    rows = [
        (name, f"{a['auc']:.4f}", f"{a['auc_vs_shallow']:.4f}", f"{a['auc_vs_random']:.4f}")
        for name, a in report.aucs.items()
    ]
    header = [
        "model",
        f"AUC (held-out {report.target})",
        "vs shallower pairs",
        "vs random items",
    ]
    return markdown_table(header, rows)


def scenario_table(report: RelevanceReport) -> str:
    weights = zip(report.behaviours, report.scenario, strict=True)
    header = ["behaviour", f"weight in the {report.target} scenario"]
    return markdown_table(header, [(b, f"{w:.3f}") for b, w in weights])


def _plot(report: RelevanceReport) -> dict[str, object]:
    series = {name: [h["valid_auc"] for h in hist] for name, hist in report.history.items()}
    longest = max((len(s) for s in series.values()), default=0)
    if not longest:
        return {}
    figure = curves(
        list(range(1, longest + 1)),
        series,
        title=f"Validation AUC on held-out {report.target} pairs per epoch",
        xlabel="epoch",
    )
    return {"plot_validation_auc": png_markdown(figure, "Validation AUC")}


@dg.asset_check(asset=relevance_model, blocking=True)
def relevance_beats_single_behaviour(relevance_model: Path) -> dg.AssetCheckResult:
    """The multi-behaviour relevance ranks held-out pairs of the deepest behaviour better
    (AUC) than the single-behaviour model trained on the same pairs."""
    report = load_report(relevance_model)
    multi, single = report.aucs[MULTI]["auc"], report.aucs[SINGLE]["auc"]
    return dg.AssetCheckResult(
        passed=report.beats_single,
        description=f"held-out {report.target} AUC: multi-behaviour {multi:.4f}, "
        f"single-behaviour {single:.4f}",
        metadata=rounded({"multi_behaviour": multi, "single_behaviour": single}),
    )
