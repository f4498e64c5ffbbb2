"""Micro-batching: concurrent requests' queries go to the index in one call.

At most ``max_batch`` query rows go in one call (GMP-GR's inter-query aggregation): one
faiss call over B rows runs them in parallel threads and pays the Python and call
overhead once. The call runs in a worker thread, so the event loop keeps accepting
requests meanwhile, and those requests form the next batch. With ``max_wait_ms`` 0 (the
default) a batch is whatever is queued when the previous call ends, so a lone request
never waits; above 0, a batch also waits that long for company.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class Searchable(Protocol):
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class _Pending:
    index: Searchable  # the index the request's queries were built for
    queries: np.ndarray
    k: int
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    def __init__(
        self,
        max_batch: int = 64,
        max_wait_ms: float = 0.0,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def search(
        self, index: Searchable, queries: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``index.search(queries, k)``, batched with other requests for the same index."""
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(index, queries, k, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            rows = len(batch[0].queries)
            deadline = loop.time() + self.max_wait
            while rows < self.max_batch:
                timeout = deadline - loop.time()
                try:
                    if timeout <= 0:
                        item = self._queue.get_nowait()
                    else:
                        item = await asyncio.wait_for(self._queue.get(), timeout)
                except (TimeoutError, asyncio.QueueEmpty):
                    break
                batch.append(item)
                rows += len(item.queries)
            # during a reload, requests built for the old and the new index can meet; the
            # key is the index object itself (each request's bound method is a new object)
            groups: dict[int, list[_Pending]] = {}
            for p in batch:
                groups.setdefault(id(p.index), []).append(p)
            for group in groups.values():
                await self._serve(group)

    async def _serve(self, batch: list[_Pending]) -> None:
        k = max(p.k for p in batch)
        queries = np.concatenate([p.queries for p in batch])
        rows = len(queries)
        try:
            scores, ids = await asyncio.to_thread(batch[0].index.search, queries, k)
        except Exception as error:  # every waiting request gets the failure, none hangs
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(error)
            return
        if self._on_batch is not None:
            self._on_batch(rows)
        start = 0
        for p in batch:
            end = start + len(p.queries)
            if not p.future.done():
                p.future.set_result((scores[start:end, : p.k], ids[start:end, : p.k]))
            start = end
