"""Starting a server process in the background and waiting until it answers.

Used by tests and benchmarks that talk to real servers on 127.0.0.1. The process gets
its own process group, so that children it starts (dagster's code server) stop with it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def background_server(
    command: list[str],
    probe_url: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120.0,
) -> Iterator[subprocess.Popen]:
    """Run ``command`` until the block ends; enter once ``probe_url`` answers 2xx."""
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{command[0]} exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                if requests.get(probe_url, timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{probe_url} did not answer within {timeout:.0f} s")
            time.sleep(0.3)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def similar_items_service(
    lake: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
) -> Iterator[str]:
    """``python -m serving`` (with ``args``) on the lake's latest index, on a free port;
    yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "serving", "--lake", str(lake), "--port", str(port), *args]
    root = Path(__file__).resolve().parents[1]
    with background_server(command, f"{url}/healthz", env, cwd=root):
        yield url
