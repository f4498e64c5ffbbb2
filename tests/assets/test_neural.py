"""The neural_refresh job on a materialized lake: the relevance model and the
single-behaviour baseline trained on the interactions' behaviours over the served
embeddings, the graph search over the served index checked against brute force, the
blocking check, and the model published only when it passes; the service then answers
strategy neural with it."""

from __future__ import annotations

import dagster as dg

from assets.neural import RelevanceConfig
from orchestration.definitions import ASSETS, CHECKS, NEURAL
from serving.artifact import load_bundle
from serving.neural_metric import load_metric
from storage.layout import RELEVANCE_MODEL, LakeLayout
from storage.versions import latest
from tests.assets.lakes import lake_copy, resources
from tests.serving.test_api import Service
from training.muirml_run import MULTI, SINGLE, load_report


def test_neural_refresh_trains_measures_and_gates_the_relevance_model(materialized_lake, tmp_path):
    lake = lake_copy(materialized_lake.lake, tmp_path)
    result = dg.materialize(
        [*ASSETS, *CHECKS],
        selection=NEURAL,
        resources=resources(lake),
        run_config=dg.RunConfig(
            ops={"relevance_model": RelevanceConfig(epochs=4, check_queries=50)}
        ),
        raise_on_error=False,
    )
    layout = LakeLayout(lake)
    folder = latest(layout.relevance_models)
    report = load_report(folder)
    assert report.behaviours == ["view", "like", "purchase"] and report.target == "purchase"
    for arm in (MULTI, SINGLE):
        assert 0.5 < report.aucs[arm]["auc_vs_random"] <= 1
    (event,) = [
        e for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "relevance_model"
    ]  # fmt: skip
    metadata = event.materialization.metadata
    assert metadata["rows"].value > 0 and "plot_validation_auc" in metadata
    assert metadata["graph_search_recall_at_10"].value >= 0.8
    assert (
        metadata["graph_search_scored_per_query"].value < metadata["graph_search_graph_rows"].value
    )
    (check,) = result.get_asset_check_evaluations()
    assert check.passed == report.beats_single
    assert (folder / RELEVANCE_MODEL).exists() == check.passed
    if not check.passed:
        return
    metric = load_metric(folder)
    bundle = load_bundle(latest(layout.index))
    assert metric.embedding_version == bundle.meta["model_version"]
    item = bundle.entities.column("item_id")[0].as_py()
    service = Service(layout.index, metric_root=layout.relevance_models)
    try:
        body = service(
            "POST", "/v1/recommend", {"history": [{"item_id": item}], "strategy": "neural"}
        ).json()
        assert len(body["results"]) == 10 and "relevance" in body["results"][0]
    finally:
        service.close()
