"""The neural_refresh job on a materialized lake: the relevance model and the
single-behaviour baseline trained on the interactions' behaviours over the served
embeddings, the graph search over the served index checked against brute force, the
blocking check, and the model published only when it passes; the service then answers
strategy neural with it. The sensor that reruns it when new embeddings are served."""

from __future__ import annotations

import dagster as dg

from assets.neural import RelevanceConfig
from orchestration.definitions import ASSETS, CHECKS, NEURAL
from orchestration.sensors import relevance_sensor
from serving.artifact import bundle_meta, load_bundle
from serving.neural_metric import load_metric
from storage.layout import RELEVANCE_MODEL, LakeLayout
from storage.versions import latest, publish
from tests.assets.lakes import lake_copy, resources
from tests.serving.test_api import Service
from training.muirml_run import MULTI, SINGLE, RelevanceReport, load_report


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
    served = load_bundle(latest(layout.index)).meta["model_version"]
    assert report.embedding_version == served
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


def relevance_tick(lake) -> dg.RunRequest | dg.SkipReason:
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance, resources={"lake": resources(lake)["lake"]}
        )
        return relevance_sensor(context)


def test_relevance_sensor_follows_the_served_embeddings_once_opted_in(materialized_lake, tmp_path):
    lake = lake_copy(materialized_lake.lake, tmp_path)
    layout = LakeLayout(lake)
    assert "has not run" in relevance_tick(lake).skip_message  # opt-in: nothing asked
    served = bundle_meta(latest(layout.index))["model_version"]

    def trained_on(version: str, run: str) -> None:
        report = RelevanceReport([], "purchase", {}, {}, [], {}, embedding_version=version)
        publish(report, layout.relevance_models, run)

    trained_on(served, "run-1")
    assert "for the served embeddings" in relevance_tick(lake).skip_message
    trained_on("an-older-model", "run-2")  # e.g. the nightly refresh retrained since
    request = relevance_tick(lake)
    assert isinstance(request, dg.RunRequest) and request.run_key == f"relevance-{served}"
