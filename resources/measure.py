"""Seconds and peak memory of a stage, for asset metadata.

Memory is the resident set of this process and its children (the Spark JVM is a
child of the Python driver), sampled on a background thread, so a Spark stage's
peak is counted where it happens rather than where Python allocates.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

import psutil

SAMPLE_SECONDS = 0.1


def tree_rss_bytes(proc: psutil.Process) -> int:
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:  # a worker may end between listing and reading
            continue
    return total


class Measure:
    """``with Measure() as m: ...`` then ``m.seconds`` and ``m.peak_rss_mb``."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._peak = 0
        self._start = 0.0
        self.seconds = 0.0

    def _sample(self) -> None:
        while True:
            self._peak = max(self._peak, tree_rss_bytes(self._proc))
            if self._stop.wait(SAMPLE_SECONDS):
                return

    def __enter__(self) -> Measure:
        self._start = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, tree_rss_bytes(self._proc))
        self.seconds = time.perf_counter() - self._start

    @property
    def peak_rss_mb(self) -> float:
        return round(self._peak / 2**20, 1)

    def metadata(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}_seconds": round(self.seconds, 3),
            f"{prefix}_peak_rss_mb": self.peak_rss_mb,
        }
