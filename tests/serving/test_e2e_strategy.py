"""``/v1/recommend`` with ``strategy: "e2e"``: ANN candidates re-scored by the published
end-to-end ranker; a 409 with a JSON body while none is published."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from storage.layout import E2E_RANKER, LakeLayout
from tests.serving.test_api import JSON, Service, publish_index
from tests.training.test_e2e import TINY, tiny_inputs
from training.e2e import END_TO_END
from training.e2e_run import run_arms

HISTORY = {"history": [{"item_id": "item-3"}, {"item_id": "item-8", "event": "like"}], "k": 10}


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> LakeLayout:
    layout = LakeLayout(tmp_path_factory.mktemp("lake"))
    publish_index(layout.index, "v1")
    return layout


def test_without_a_published_ranker_e2e_is_a_409(lake):
    # a folder whose ranker file is garbage counts as none: the service still starts
    broken = lake.e2e_rankers / "broken"
    broken.mkdir(parents=True)
    (broken / E2E_RANKER).write_bytes(b"not a ranker")
    service = Service(lake.index, ranker_root=lake.e2e_rankers)
    try:
        reply = service("POST", "/v1/recommend", {**HISTORY, "strategy": "e2e"})
        assert reply.status == 409
        assert "e2e_ranker" in reply.json()["detail"]
        assert service("POST", "/v1/recommend", HISTORY).status == 200
    finally:
        service.close()


def test_e2e_re_scores_the_ann_candidates(lake):
    data = tiny_inputs()
    # the tiny run's items named as the index's, so that the ranker knows 300 of its 2000
    data = dataclasses.replace(
        data, item_ids=np.array([f"item-{i}" for i in range(data.num_items)])
    )
    run = run_arms(data, TINY, torch.device("cpu"), arms=(END_TO_END,), log=lambda _: None)
    run.report.arms["two_stage"] = run.report.arms[END_TO_END]  # the gate needs its peer
    assert run.report.difference() == (0.0, 0.0, 0.0)
    assert run.publishes
    folder = lake.e2e_rankers / "run-1"
    run.save(folder)
    service = Service(lake.index, ranker_root=lake.e2e_rankers)
    try:
        body = service("POST", "/v1/recommend", {**HISTORY, "strategy": "e2e"}, headers=JSON).json()
        results = body["results"]
        assert body["strategy"] == "e2e" and len(results) == 10
        scored = [r["ranker_score"] for r in results if "ranker_score" in r]
        assert scored == sorted(scored, reverse=True)
        # the ranked ones come first, the items the ranker never saw after them
        assert all("ranker_score" in r for r in results[: len(scored)])
        assert not {r["item_id"] for r in results} & {"item-3", "item-8"}
        mean = service("POST", "/v1/recommend", HISTORY).json()["results"]
        assert [r["item_id"] for r in mean] != [r["item_id"] for r in results]
    finally:
        service.close()
