"""A real Spark standalone cluster on 127.0.0.1: one master and one worker, started from the
installed pyspark with ``spark-class`` and stopped with their process groups."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyspark


@dataclass(frozen=True)
class Cluster:
    master_url: str
    ui_url: str
    master_log: Path  # what the master did: "Registered app ...", "Launching executor ..."

    def state(self) -> dict:
        with urllib.request.urlopen(f"{self.ui_url}/json/", timeout=5) as answer:
            return json.load(answer)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _daemon(spark_home: Path, args: list[str], log: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [str(spark_home / "bin/spark-class"), *args],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the stop reaches every JVM child
    )


def _wait(
    ready: Callable[[], bool],
    what: str,
    procs: list[subprocess.Popen],
    logs: list[Path],
    seconds: float = 120,
) -> None:
    """Poll ``ready`` until it holds; fail with the daemons' log tails if one exits first
    or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            break
        try:
            if ready():
                return
        except OSError:  # the web UI is not listening yet
            pass
        time.sleep(0.5)
    tails = "\n".join(log.read_text()[-2000:] for log in logs)
    raise RuntimeError(f"Spark standalone {what} did not come up:\n{tails}")


@contextmanager
def standalone_cluster(folder: Path, cores: int = 2, memory: str = "2g") -> Iterator[Cluster]:
    spark_home = Path(pyspark.__file__).parent
    env = {
        **os.environ,
        "SPARK_HOME": str(spark_home),
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOG_DIR": str(folder),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    port, ui_port, worker_ui = free_port(), free_port(), free_port()
    logs = [folder / "master.log", folder / "worker.log"]
    cluster = Cluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}", logs[0])
    procs = [
        _daemon(
            spark_home,
            ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
             "--port", str(port), "--webui-port", str(ui_port)],
            logs[0], env,
        )
    ]  # fmt: skip
    try:
        _wait(lambda: cluster.state()["status"] == "ALIVE", "master", procs, logs)
        procs.append(
            _daemon(
                spark_home,
                ["org.apache.spark.deploy.worker.Worker", cluster.master_url,
                 "--host", "127.0.0.1", "--cores", str(cores), "--memory", memory,
                 "--webui-port", str(worker_ui), "--work-dir", str(folder / "work")],
                logs[1], env,
            )
        )  # fmt: skip
        _wait(lambda: cluster.state()["aliveworkers"] == 1, "worker", procs, logs)
        yield cluster
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
