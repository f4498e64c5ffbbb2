"""The Dagster UI in a real browser: the real webserver over the materialized lake's run,
its lineage page and an asset page rendered by headless Chromium.

``SCREENSHOTS_DIR=docs/ui pytest tests/assets/test_ui.py`` also saves the pages as
PNGs (docs/ui/ holds the ones taken from `make demo`'s run)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import requests

from orchestration.definitions import ASSETS
from serving.launch import background_server, free_port
from tests.browser import CHROMIUM, MISSING, page_text, screenshot
from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=MISSING)
ASSET_KEYS = [key for a in ASSETS for key in a.keys]
# the groups in pipeline order, as the collapsed lineage shows them
GROUPS = ["ingest", "graph", "split", "shards", "model", "embeddings", "evaluation", "serving",
          "incremental"]  # fmt: skip


def ui(home: Path, lake: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).parent / "dagster-webserver"), "-w", "workspace.yaml",
               "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
    env = {"DAGSTER_HOME": str(home), "COGRAPH_LAKE_ROOT": str(lake)}
    return background_server(command, f"{url}/server_info", env, cwd=ROOT), url


def wait_for_code_location(url: str) -> None:
    query = "{ assetNodes { assetKey { path } } }"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        reply = requests.post(f"{url}/graphql", json={"query": query}, timeout=30).json()
        if (reply.get("data") or {}).get("assetNodes"):
            return
        time.sleep(1)
    raise TimeoutError("the code location did not load")


def test_lineage_and_the_evaluation_page_render(materialized_lake):
    server, url = ui(materialized_lake.home, materialized_lake.lake)
    shots = os.getenv("SCREENSHOTS_DIR")
    with server:
        wait_for_code_location(url)
        lineage = page_text(f"{url}/asset-groups")
        missing = [group for group in GROUPS if group not in lineage]
        assert not missing, f"the lineage page lacks the groups {missing}"
        # the catalog renders the rows in view only: a window tall enough for all of them
        catalog = page_text(f"{url}/assets", size=(1600, 4000))
        missing = [key.path[-1] for key in ASSET_KEYS if key.path[-1] not in catalog]
        assert not missing, f"the catalog lacks {missing}"
        neighbours = page_text(f"{url}/assets/knowledge_graph?view=lineage")
        assert "coengagement_edges" in neighbours and "hasp_shards" in neighbours
        page = page_text(f"{url}/assets/embedding_evaluation")
        # the run's metadata: the plot, the comparison table, the interval
        for key in ("plot_map_at_10_by_setting", "comparison", "map_at_10_95%_interval"):
            assert key in page, f"embedding_evaluation's page lacks {key}"
        if shots:
            screenshot(f"{url}/asset-groups", Path(shots) / "lineage.png")
            screenshot(f"{url}/assets/knowledge_graph?view=lineage", Path(shots) / "graph.png")
            screenshot(f"{url}/assets/embedding_evaluation", Path(shots) / "evaluation.png",
                       size=(1600, 1400))  # fmt: skip
