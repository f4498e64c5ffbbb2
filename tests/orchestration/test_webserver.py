"""The real dagster-webserver on 127.0.0.1 serves the whole asset graph over GraphQL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.assets.test_materialize import ISSUE_ASSETS
from tests.conftest import ROOT

QUERY = "{ assetNodes { assetKey { path } groupName dependencyKeys { path } } }"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def webserver(tmp_path: Path):
    port = free_port()
    webserver_bin = Path(sys.executable).parent / "dagster-webserver"
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "COGRAPH_LAKE_ROOT": str(tmp_path / "lake")}
    # its own process group: the webserver starts a code-server child that outlives a plain kill
    proc = subprocess.Popen(
        [str(webserver_bin), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"webserver exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                if requests.get(f"{url}/server_info", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        else:
            raise TimeoutError("dagster-webserver did not answer within 120 s")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


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
