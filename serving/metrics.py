"""Prometheus text-format metrics, kept in process (no client library needed)."""

from __future__ import annotations

import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        for i, upper in enumerate(self.buckets):
            if value <= upper:
                self.counts[i] += 1
        self.total += 1
        self.sum += value

    def lines(self, name: str, labels: str = "") -> list[str]:
        sep = "," if labels else ""
        out = [
            f'{name}_bucket{{{labels}{sep}le="{upper}"}} {count}'
            for upper, count in zip(self.buckets, self.counts, strict=True)
        ]
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.total}')
        out.append(f"{name}_sum{{{labels}}} {self.sum}")
        out.append(f"{name}_count{{{labels}}} {self.total}")
        return out


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.latency: dict[str, Histogram] = {}
        self.batches = Histogram(BATCH_BUCKETS)
        self.index_version = ""
        self.index_entities = 0
        self.reloads = 0
        self.reload_failures = 0

    def request(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(route, status)] += 1
            self.latency.setdefault(route, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def batch(self, rows: int) -> None:
        with self._lock:
            self.batches.observe(rows)

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP cograph_requests_total Requests by route and status.",
                "# TYPE cograph_requests_total counter",
                *(
                    f'cograph_requests_total{{route="{r}",status="{s}"}} {n}'
                    for (r, s), n in sorted(self.requests.items())
                ),
                "# HELP cograph_request_seconds Request latency.",
                "# TYPE cograph_request_seconds histogram",
            ]
            for route, hist in sorted(self.latency.items()):
                lines += hist.lines("cograph_request_seconds", f'route="{route}"')
            lines += [
                "# HELP cograph_index_batch_rows Query rows per index call (micro-batching).",
                "# TYPE cograph_index_batch_rows histogram",
                *self.batches.lines("cograph_index_batch_rows"),
                "# HELP cograph_index_info The served index version.",
                "# TYPE cograph_index_info gauge",
                f'cograph_index_info{{version="{self.index_version}"}} 1',
                "# TYPE cograph_index_entities gauge",
                f"cograph_index_entities {self.index_entities}",
                "# TYPE cograph_index_reloads_total counter",
                f"cograph_index_reloads_total {self.reloads}",
                "# HELP cograph_index_reload_failures_total Versions that did not load.",
                "# TYPE cograph_index_reload_failures_total counter",
                f"cograph_index_reload_failures_total {self.reload_failures}",
            ]
        return "\n".join(lines) + "\n"
