"""End-to-end mode (E2E-GRec): a two-tower ranker trained jointly with the GNN, measured
against two-stage and the other arms on a temporal split, served by ``/v1/recommend``
with ``strategy: "e2e"``.

Opt-in, like the cross-domain group: the ``e2e_refresh`` job runs it after the lineage's
raw tables (``make demo-e2e``). The blocking check holds end-to-end to the two-stage arm:
when end-to-end is worse beyond the noise of the test users, the folder keeps the report
but no ranker, so the service keeps the ranker it had.
"""

from pathlib import Path

import dagster as dg
from pydantic import Field
from pyspark.sql import DataFrame

from resources.markdown import markdown_table
from resources.measure import Measure
from resources.metadata import rounded
from resources.plots import curves, png_markdown
from spark_jobs import constants as C
from training.device import device_name, pick_device
from training.e2e import END_TO_END, TWO_STAGE, E2EParams
from training.e2e_run import TARGET, E2EReport, E2ERun, load_report, run_arms
from training.time_split import e2e_inputs

GROUP = "e2e"


class E2EConfig(dg.Config):
    dim: int = Field(32, description="Embedding and tower size.")
    layers: int = Field(2, description="GNN layers (one fan-out per layer).")
    fanouts: list[int] = Field([8, 4], description="Neighbours sampled per node, per hop.")
    history: int = Field(10, description="History items sampled per user in a step.")
    batch_size: int = Field(512, description="Positive (user, item) rows per step.")
    negatives: int = Field(512, description="Uniform random negatives per step.")
    epochs: int = Field(10, description="Epochs per arm (the best on validation is kept).")
    max_steps_per_epoch: int = Field(200, description="Steps per epoch at most.")
    seed: int = Field(0, description="Seed of initialisation and sampling.")

    def params(self) -> E2EParams:
        values = self.model_dump()
        if len(values["fanouts"]) != values["layers"]:
            raise dg.Failure(
                f"fanouts {values['fanouts']} needs one entry per layer ({values['layers']})"
            )
        return E2EParams(**{**values, "fanouts": tuple(values["fanouts"])})


@dg.asset(group_name=GROUP, io_manager_key="folder_io_manager")
def e2e_ranker(
    context: dg.AssetExecutionContext,
    config: E2EConfig,
    raw_interactions: DataFrame,
    item_concepts: DataFrame,
) -> dg.Output[E2ERun]:
    """Every arm (no graph, two-stage, end-to-end and its ablations) and ItemCF/EASE on a
    temporal split of each user's items; the end-to-end ranker for serving when it is not
    worse than two-stage beyond the test users' noise."""
    device = pick_device()
    with Measure() as m:
        interactions = raw_interactions.select(C.USER_ID, C.ITEM_ID, C.TS).toPandas()
        concepts = item_concepts.select(C.ITEM_ID, C.RELATION, C.CONCEPT).toPandas()
        data = e2e_inputs(interactions, concepts)
        run = run_arms(data, config.params(), device, log=context.log.info)
    report = run.report
    return dg.Output(
        run,
        metadata=rounded(
            {
                "rows": len(interactions),
                **report.counts,
                "device": device_name(device),
                "arms": dg.MetadataValue.md(arms_table(report)),
                "ratio_e2e_over_two_stage": report.ratio,
                "ranker_published": run.publishes,
                **{f"step_seconds_{n}": a["step_seconds"] for n, a in report.arms.items()},
                **{f"refresh_seconds_{n}": s for n, s in report.costs.items()},
                **_plots(report),
                **m.metadata("compute"),
            }
        ),
    )


def arms_table(report: E2EReport) -> str:
    """One row per arm and peer: test Recall@20, NDCG@20, AUC, validation NDCG@20, the
    ratio to two-stage, the step time."""
    base = report.ndcg(TWO_STAGE) if TWO_STAGE in report.arms else float("nan")
    rows = []
    for name, result in [*report.arms.items(), *report.peers.items()]:
        t = result["test"]
        step = result.get("step_seconds")
        rows.append(
            (
                name,
                f"{t['recall@20']:.4f}",
                f"{t['ndcg@20']:.4f}",
                f"{t['auc']:.4f}",
                f"{result['validation']['ndcg@20']:.4f}",
                f"{t['ndcg@20'] / base:.2f}×" if base else "—",
                "—" if step is None else f"{1000 * step:.0f} ms",
            )
        )
    header = ["arm", "recall@20", "ndcg@20", "auc", "validation ndcg@20", "× two-stage", "step"]
    costs = [(name, f"{s:.1f} s") for name, s in report.costs.items()]
    return "\n\n".join(
        [
            markdown_table(header, rows),
            markdown_table(["refresh of", "seconds (training + full-graph inference)"], costs),
        ]
    )


def _plots(report: E2EReport) -> dict[str, object]:
    out = {}
    weights = report.arms.get(END_TO_END, {}).get("loss_weights") or []
    if weights:
        figure = curves(
            list(range(1, len(weights) + 1)),
            {"ranking": [w[0] for w in weights], "GFAE": [w[1] for w in weights]},
            title="GradNorm loss weights over training",
            xlabel="step",
        )
        out["plot_gradnorm_weights"] = png_markdown(figure, "GradNorm weights")
    series = {name: a["curve"] for name, a in report.arms.items() if a["curve"]}
    if series:
        longest = max(len(c) for c in series.values())
        figure = curves(
            list(range(1, longest + 1)),
            series,
            title="Validation NDCG@20 per epoch",
            xlabel="epoch",
        )
        out["plot_validation_curves"] = png_markdown(figure, "Validation curves")
    return out


@dg.asset_check(asset=e2e_ranker, blocking=True)
def e2e_beats_two_stage(e2e_ranker: Path) -> dg.AssetCheckResult:
    """End-to-end is not worse than two-stage on test NDCG@20 beyond the test users' noise:
    the paired per-user difference's 95% bootstrap interval reaches 0 or above (the issue's
    target, 1.05× two-stage, is reported beside it)."""
    report = load_report(e2e_ranker)
    diff, lo, hi = report.difference()
    return dg.AssetCheckResult(
        passed=report.holds,
        description=f"end-to-end is {report.ratio:.3f}× two-stage on test NDCG@20 "
        f"(difference {diff:+.4f}, 95% interval {lo:+.4f} to {hi:+.4f}; target {TARGET}×)",
        metadata=rounded(
            {"ratio": report.ratio, "difference": diff, "low": lo, "high": hi, "target": TARGET}
        ),
    )
