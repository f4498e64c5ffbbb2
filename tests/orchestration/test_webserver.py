"""The real dagster-webserver on 127.0.0.1 serves the whole asset graph over GraphQL."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import requests

from serving.launch import background_server, free_port
from tests.assets.test_materialize import ISSUE_ASSETS
from tests.conftest import ROOT

QUERY = "{ assetNodes { assetKey { path } groupName dependencyKeys { path } } }"


@pytest.fixture
def webserver(tmp_path: Path):
    port = free_port()
    webserver_bin = Path(sys.executable).parent / "dagster-webserver"
    env = {"DAGSTER_HOME": str(tmp_path), "COGRAPH_LAKE_ROOT": str(tmp_path / "lake")}
    url = f"http://127.0.0.1:{port}"
    command = [str(webserver_bin), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    with background_server(command, f"{url}/server_info", env, cwd=ROOT):
        yield url


def test_graphql_lists_the_asset_graph(webserver):
    deadline = time.monotonic() + 60
    while True:  # the code location may still be loading when the server first answers
        reply = requests.post(f"{webserver}/graphql", json={"query": QUERY}, timeout=30).json()
        nodes = (reply.get("data") or {}).get("assetNodes") or []
        if nodes or time.monotonic() > deadline:
            break
        time.sleep(1)
    by_name = {n["assetKey"]["path"][-1]: n for n in nodes}
    assert set(by_name) >= ISSUE_ASSETS
    deps = {d["path"][-1] for d in by_name["knowledge_graph"]["dependencyKeys"]}
    assert deps == {"item_catalog", "coengagement_edges", "semantic_triples"}
    assert by_name["raw_interactions"]["groupName"] == "ingest"
