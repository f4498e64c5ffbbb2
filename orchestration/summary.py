"""``python -m orchestration.summary``: what the lake holds, and where to look next."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
from deltalake import DeltaTable

from serving.artifact import ENTITIES, load_bundle
from settings import current
from storage.delta_tables import table_rows
from storage.lake_log import LakeLog
from storage.layout import E2E_RANKER, RELEVANCE_MODEL, LakeLayout
from storage.versions import LATEST, latest
from training.cross_domain import load_report as load_cross_domain_report
from training.e2e_run import TARGET as E2E_TARGET
from training.e2e_run import load_report as load_e2e_report
from training.evaluation import NO_LEARNING, STRICT, TRANSDUCTIVE, load_report
from training.muirml_run import MULTI, SINGLE
from training.muirml_run import load_report as load_relevance_report


def recorded_tables(layout: LakeLayout) -> list[tuple[str, int, int]]:
    """(table path relative to the lake, recorded version, rows at it) for every table
    the lake's newest record names: what readers see."""
    snapshot = LakeLog(layout.tables).snapshot()
    return [
        (
            str(layout.table(name).relative_to(layout.root)),
            version,
            table_rows(DeltaTable(str(layout.table(name)), version=version)),
        )
        for name, version in sorted(snapshot.tables.items())
    ]


def headline(layout: LakeLayout) -> list[str]:
    """The served model against the best no-learning baseline, the gate's verdict, the
    index: what the run was for, in three lines."""
    folder = layout.artifact("embedding_evaluation")
    if not (folder / LATEST).exists():
        return []
    report = load_report(latest(folder))
    value = report.value(report.primary)
    name, best = report.best_baseline(TRANSDUCTIVE, "map@10", NO_LEARNING)
    strict = report.value(report.primary, STRICT)
    accepted = (
        json.loads(layout.accepted_model.read_text()) if layout.accepted_model.exists() else {}
    )
    passed = accepted.get("model_version") == report.model_version
    lines = [
        f"Served model {report.primary}: MAP@10 {value:.4f}, the best no-learning baseline "
        f"({name}) {best:.4f}: {value / best:.2f}x; strict cold start {strict:.4f}",
        "Quality gate: " + ("passed, the index was rebuilt" if passed else
                            "BLOCKED, the index was not rebuilt (see quality_gate in the UI)"),
    ]  # fmt: skip
    if (layout.index / LATEST).exists():
        meta = load_bundle(latest(layout.index)).meta
        lines.append(f"Index {meta['index_version']}: {meta['index_kind']}, "
                     f"recall@10 {meta['recall_at_10']:.3f} against exact search")  # fmt: skip
    return lines


def cross_domain_headline(layout: LakeLayout) -> list[str]:
    """The cross-domain evaluation's bars, where a cross_domain_refresh made one."""
    folder = layout.artifact("cross_domain_evaluation")
    if not (folder / LATEST).exists():
        return []
    report = load_cross_domain_report(latest(folder))
    if report.empty:
        return [f"Cross-domain: domain {report.target!r} has no items"]
    return [f"Cross-domain (target {report.target}): " + "; ".join(
        f"{label} {t['model']} {t['ratio']:.2f}x (bar {t['bar']}x)"
        for label, t in report.target_ratios().items()
    )]  # fmt: skip


def e2e_headline(layout: LakeLayout) -> list[str]:
    """End-to-end against two-stage, where an e2e_refresh made a report."""
    folder = layout.e2e_rankers
    if not (folder / LATEST).exists():
        return []
    report = load_e2e_report(latest(folder))
    served = "published" if (latest(folder) / E2E_RANKER).exists() else "not published"
    return [f"End-to-end ranker: {report.ratio:.2f}x two-stage on test NDCG@20 "
            f"(target {E2E_TARGET}x); ranker {served}"]  # fmt: skip


def neural_headline(layout: LakeLayout) -> list[str]:
    """The neural relevance against the single-behaviour model, where a neural_refresh ran."""
    folder = layout.relevance_models
    if not (folder / LATEST).exists():
        return []
    report = load_relevance_report(latest(folder))
    served = "published" if (latest(folder) / RELEVANCE_MODEL).exists() else "not published"
    multi, single = report.aucs[MULTI]["auc"], report.aucs[SINGLE]["auc"]
    return [f"Neural relevance: held-out {report.target} AUC {multi:.3f} "
            f"(single-behaviour {single:.3f}); model {served}"]  # fmt: skip


def last_run() -> str | None:
    """How the last refresh run went and how long it took, from the Dagster instance."""
    if not os.getenv("DAGSTER_HOME"):
        return None
    instance = dg.DagsterInstance.get()
    runs = [
        run
        for job in ("full_refresh", "cross_domain_refresh", "e2e_refresh", "neural_refresh")
        for run in instance.get_runs(filters=dg.RunsFilter(job_name=job), limit=1)
    ]
    if not runs:
        return None
    stats, run = max(
        ((instance.get_run_stats(r.run_id), r) for r in runs),
        key=lambda pair: pair[0].start_time or 0.0,
    )
    took = (stats.end_time or time.time()) - (stats.start_time or time.time())
    return f"{run.job_name} {run.status.value.lower()} in {took / 60:.1f} min"


def main() -> None:
    layout = LakeLayout.at(current().lake_root)
    root = layout.root
    print(f"\nLake: {root}")
    print(f"{'table':<40} {'version':>7} {'rows':>12}")
    for name, version, rows in recorded_tables(layout):
        print(f"{name:<40} {version:>7} {rows:>12,}")
    artifacts = sorted(root.glob(f"*/{LATEST}"))
    if artifacts:
        print(f"\n{'artifact':<40} latest folder")
        for pointer in artifacts:
            print(f"{pointer.parent.name:<40} {pointer.parent / pointer.read_text().strip()}")
    print()
    for line in filter(
        None,
        [
            last_run(),
            *headline(layout),
            *cross_domain_headline(layout),
            *e2e_headline(layout),
            *neural_headline(layout),
        ],
    ):
        print(line)
    home = os.getenv("DAGSTER_HOME", "(a temporary folder)")
    print(f"\nDagster runs and asset metadata: {home}")
    print("Open the UI:  make ui, then http://127.0.0.1:3000/asset-groups (the lineage)")
    if (layout.index / LATEST).exists():
        entities = pq.read_table(latest(layout.index) / ENTITIES, columns=["item_id"])
        item = entities.column("item_id")[0].as_py()
        # `make serve` serves lake/ unless told otherwise (make demo-cross-domain's lake)
        default = root.resolve() == (Path.cwd() / "lake").resolve()
        lake = "" if default else f"COGRAPH_LAKE_ROOT={root} "
        print(f"Query it:     {lake}make serve, then")
        print(
            f"              curl 'http://127.0.0.1:8000/v1/items/{item}/similar?k=5&explain=true'"
        )
        print("              (API reference: http://127.0.0.1:8000/docs)")


if __name__ == "__main__":
    main()
