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


def rendered(url: str, wanted: list[str], size: tuple[int, int] = (1600, 1000)) -> str:
    """The page's text, loaded again (up to three times) until it holds every ``wanted``
    string: the UI fetches its data after the first paint, and on a loaded machine (the
    whole suite running) 20 s of the browser's virtual time has not always been enough."""
    for _ in range(3):
        text = page_text(url, size=size)
        if all(w in text for w in wanted):
            break
    return text


def test_lineage_and_the_evaluation_page_render(materialized_lake):
    server, url = ui(materialized_lake.home, materialized_lake.lake)
    shots = os.getenv("SCREENSHOTS_DIR")
    with server:
        wait_for_code_location(url)
        lineage = rendered(f"{url}/asset-groups", GROUPS)
        missing = [group for group in GROUPS if group not in lineage]
        assert not missing, f"the lineage page lacks the groups {missing}"
        # the catalog renders the rows in view only: a window tall enough for all of them
        names = [key.path[-1] for key in ASSET_KEYS]
        catalog = rendered(f"{url}/assets", names, size=(1600, 4000))
        missing = [name for name in names if name not in catalog]
        assert not missing, f"the catalog lacks {missing}"
        neighbours = rendered(
            f"{url}/assets/knowledge_graph?view=lineage", ["coengagement_edges", "hasp_shards"]
        )
        assert "coengagement_edges" in neighbours and "hasp_shards" in neighbours
        # the run's metadata: the plot, the comparison table, the interval
        keys = ["plot_map_at_10_by_setting", "comparison", "map_at_10_95%_interval"]
        page = rendered(f"{url}/assets/embedding_evaluation", keys)
        for key in keys:
            assert key in page, f"embedding_evaluation's page lacks {key}"
        if shots:
            screenshot(f"{url}/asset-groups", Path(shots) / "lineage.png")
            screenshot(f"{url}/assets/knowledge_graph?view=lineage", Path(shots) / "graph.png")
            screenshot(f"{url}/assets/embedding_evaluation", Path(shots) / "evaluation.png",
                       size=(1600, 1400))  # fmt: skip
