"""The e2e_refresh job on a small lake: ingest, then every end-to-end arm; the report,
its metadata (the arms table, GradNorm's weights plotted), the blocking check, and the
ranker published only when the check's comparison allows it."""

from __future__ import annotations

import dagster as dg

from assets.e2e import E2EConfig
from assets.raw import IngestConfig
from orchestration.definitions import ASSETS, CHECKS, E2E
from orchestration.summary import e2e_headline
from storage.layout import E2E_RANKER, LakeLayout
from storage.versions import latest
from tests.assets.lakes import SMALL, resources
from training.e2e import ARMS
from training.e2e_run import load_report

SMALL_E2E = E2EConfig(dim=8, epochs=2, batch_size=128, negatives=64, max_steps_per_epoch=4)


def test_e2e_refresh_measures_every_arm_and_gates_the_ranker(tmp_path):
    result = dg.materialize(
        [*ASSETS, *CHECKS],
        selection=E2E.upstream(depth=1).required_multi_asset_neighbors(),
        resources=resources(tmp_path),
        run_config=dg.RunConfig(
            ops={"raw_tables": IngestConfig(synthetic=SMALL), "e2e_ranker": SMALL_E2E}
        ),
        raise_on_error=False,
    )
    layout = LakeLayout(tmp_path)
    folder = latest(layout.e2e_rankers)
    report = load_report(folder)
    assert set(report.arms) == set(ARMS) and {"popular", "itemcf", "ease"} <= set(report.peers)
    for arm in report.arms.values():
        assert 0 <= arm["test"]["ndcg@20"] <= 1 and arm["step_seconds"] > 0
    assert set(report.costs) == {"two_stage", "end_to_end"}
    (event,) = [
        e for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "e2e_ranker"
    ]  # fmt: skip
    metadata = event.materialization.metadata
    assert "two_stage" in metadata["arms"].value and "plot_gradnorm_weights" in metadata
    assert metadata["rows"].value > 0
    (check,) = result.get_asset_check_evaluations()
    assert check.passed == report.holds == (report.difference()[2] >= 0)
    # the ranker is there exactly when end-to-end held its own against two-stage
    assert (folder / E2E_RANKER).exists() == check.passed
    assert result.success == check.passed
    (line,) = e2e_headline(layout)
    assert "two-stage" in line and ("not published" in line) != check.passed
