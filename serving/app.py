"""The similar-items and recommendation service: a Starlette ASGI app.

Read-only endpoints serve the current :class:`~serving.artifact.IndexBundle`; a reload
builds the next bundle off the event loop and swaps one reference, so requests in flight
finish on the bundle they started with. Bad input gets a 4xx naming what is wrong, never
a 500.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from serving.artifact import IndexBundle, load_bundle
from serving.batcher import MicroBatcher
from serving.metrics import Metrics
from serving.retrieval import (
    EVENT_WEIGHTS,
    recommend_mean,
    recommend_multi_seed,
    similar,
    weighted_mean,
)
from storage.versions import latest

MAX_K = 1000
MAX_HISTORY = 1000
MAX_PRIOR = 10.0  # |popularity-prior weight|: log-degrees are at most about 15


@dataclass(frozen=True)
class ServiceConfig:
    index_root: Path  # <lake>/ann_index: version folders and the LATEST pointer
    admin_token: str = ""  # empty: the admin endpoint refuses everyone
    micro_batching: bool = True
    max_batch: int = 64
    max_wait_ms: float = 0.0
    max_body_bytes: int = 64 * 1024
    poll_seconds: float = 0.0  # > 0: reload by itself when LATEST moves (incremental updates)


class BadRequest(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class Served:
    """The current bundle and its lookups, replaced as a whole on reload."""

    def __init__(self, bundle: IndexBundle) -> None:
        self.bundle = bundle
        self.entity_of = bundle.entity_ids()
        self.item_of = {entity: item for item, entity in self.entity_of.items()}
        concepts = bundle.concepts.group_by("entity_id").aggregate([("concept", "list")])
        self.concepts_of = dict(
            zip(
                concepts.column("entity_id").to_pylist(),
                [set(c) for c in concepts.column("concept_list").to_pylist()],
                strict=True,
            )
        )

    def entity(self, item_id: str) -> int:
        entity = self.entity_of.get(item_id)
        if entity is None or not self.bundle.index.contains(entity):
            raise BadRequest(404, f"Unknown item_id {item_id!r}")
        return entity


def parse_k(raw: str | int | None, default: int = 10) -> int:
    if raw is None:
        return default
    try:
        k = int(raw)
    except (TypeError, ValueError):
        raise BadRequest(422, f"k must be an integer in 1..{MAX_K}, got {raw!r}") from None
    if not 1 <= k <= MAX_K:
        raise BadRequest(422, f"k must be in 1..{MAX_K}, got {k}")
    return k


def parse_prior(raw: str | float | None) -> float | None:
    """The caller's popularity-prior weight (``None``: the model's validated one). Negative
    weights are allowed: they push results toward the long tail."""
    if raw is None:
        return None
    try:
        prior = float(raw)
    except (TypeError, ValueError):
        prior = math.nan
    if isinstance(raw, bool) or not (math.isfinite(prior) and abs(prior) <= MAX_PRIOR):
        raise BadRequest(422, f"prior must be a number in [-{MAX_PRIOR}, {MAX_PRIOR}], got {raw!r}")
    return prior


def create_app(config: ServiceConfig) -> Starlette:
    metrics = Metrics()
    batcher = MicroBatcher(config.max_batch, config.max_wait_ms, on_batch=metrics.batch)
    state: dict[str, Served] = {}
    reload_lock = asyncio.Lock()

    def install(bundle: IndexBundle) -> None:
        state["served"] = Served(bundle)
        metrics.index_version = bundle.version
        metrics.index_entities = len(bundle.index)

    async def search(served: Served, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        call = served.bundle.index.search
        if config.micro_batching:
            return await batcher.search(call, queries, k)
        metrics.batch(len(queries))
        return await asyncio.to_thread(call, queries, k)

    def handler(
        route: str, fn: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            start = time.perf_counter()
            try:
                response = await fn(request)
            except BadRequest as error:
                response = JSONResponse({"detail": error.detail}, status_code=error.status)
            metrics.request(route, response.status_code, time.perf_counter() - start)
            return response

        return wrapped

    async def body(request: Request) -> dict:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > config.max_body_bytes:
            raise BadRequest(413, f"Body over {config.max_body_bytes} bytes")
        raw = await request.body()
        if len(raw) > config.max_body_bytes:
            raise BadRequest(413, f"Body over {config.max_body_bytes} bytes")
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise BadRequest(422, f"Malformed JSON: {error}") from None
        if not isinstance(data, dict):
            raise BadRequest(422, "The body must be a JSON object")
        return data

    def results(served: Served, found: list[tuple[int, float]], explain_for: int | None) -> list:
        out = []
        for entity, score in found:
            row = {"item_id": served.item_of[entity], "score": round(score, 6)}
            if explain_for is not None:
                shared = served.concepts_of.get(explain_for, set()) & served.concepts_of.get(
                    entity, set()
                )
                row["shared_concepts"] = sorted(shared)
            out.append(row)
        return out

    async def similar_items(request: Request) -> Response:
        served = state["served"]
        item_id = request.path_params["item_id"]
        k = parse_k(request.query_params.get("k"))
        entity = served.entity(item_id)
        explain = request.query_params.get("explain", "false").lower() in ("1", "true", "yes")
        prior = parse_prior(request.query_params.get("prior"))
        query = served.bundle.query(np.array([entity]), prior)[0]
        found = await similar(lambda q, kk: search(served, q, kk), query, entity, k)
        return JSONResponse(
            {
                "item_id": item_id,
                "index_version": served.bundle.version,
                "results": results(served, found, entity if explain else None),
            }
        )

    def history_of(served: Served, data: dict) -> tuple[np.ndarray, np.ndarray, list[str]]:
        history = data.get("history")
        if not isinstance(history, list) or not history:
            raise BadRequest(422, "history must be a non-empty list of {item_id, weight?, event?}")
        if len(history) > MAX_HISTORY:
            raise BadRequest(422, f"history has {len(history)} items; at most {MAX_HISTORY}")
        entities, weights, unknown = [], [], []
        for i, entry in enumerate(history):
            if not isinstance(entry, dict) or not isinstance(entry.get("item_id"), (str, int)):
                raise BadRequest(422, f"history[{i}] needs an item_id (string)")
            weight = entry.get("weight", 1.0)
            if (
                isinstance(weight, bool)
                or not isinstance(weight, (int, float))
                or not (math.isfinite(weight) and weight >= 0)
            ):
                raise BadRequest(422, f"history[{i}].weight must be a finite number >= 0")
            event = entry.get("event", "view")
            if event not in EVENT_WEIGHTS:
                raise BadRequest(
                    422, f"history[{i}].event {event!r} is not one of {sorted(EVENT_WEIGHTS)}"
                )
            item_id = str(entry["item_id"])
            entity = served.entity_of.get(item_id)
            if entity is None or not served.bundle.index.contains(entity):
                unknown.append(item_id)
                continue
            entities.append(entity)
            weights.append(float(weight) * EVENT_WEIGHTS[event])
        if not entities:
            raise BadRequest(404, f"No known item in history: unknown item_id {unknown[:10]}")
        return np.array(entities), np.array(weights, dtype=np.float32), unknown

    async def recommend(request: Request) -> Response:
        served = state["served"]
        data = await body(request)
        k = parse_k(data.get("k"))
        strategy = data.get("strategy", "mean")
        if strategy not in ("mean", "multi_seed"):
            raise BadRequest(422, f"strategy must be 'mean' or 'multi_seed', got {strategy!r}")
        seeds = data.get("seeds", 8)
        if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= 64:
            raise BadRequest(422, "seeds must be an integer in 1..64")
        prior = parse_prior(data.get("prior"))
        entities, weights, unknown = history_of(served, data)
        seen = set(entities.tolist())
        queries = served.bundle.query(entities, prior)
        run = lambda q, kk: search(served, q, kk)  # noqa: E731
        if strategy == "mean":
            found = await recommend_mean(run, weighted_mean(queries, weights), seen, k)
        else:
            # the most recent (last) heavy items seed the search
            order = np.argsort(-weights[::-1], kind="stable")[:seeds]
            found = await recommend_multi_seed(run, queries[::-1][order], seen, k)
        return JSONResponse(
            {
                "strategy": strategy,
                "index_version": served.bundle.version,
                "ignored_unknown_items": unknown,
                "results": results(served, found, None),
            }
        )

    async def healthz(request: Request) -> Response:
        served = state.get("served")
        return JSONResponse(
            {
                "status": "ok",
                "index_version": served.bundle.version,
                "entities": len(served.bundle.index),
            }
        )

    async def metrics_text(request: Request) -> Response:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    async def swap(folder: Path) -> str:
        """Load ``folder`` off the event loop and serve it; returns the previous version."""
        async with reload_lock:
            bundle = await asyncio.to_thread(load_bundle, folder)
            previous = state["served"].bundle.version
            install(bundle)
            metrics.reloads += 1
        return previous

    async def follow_latest() -> None:
        while True:
            await asyncio.sleep(config.poll_seconds)
            try:
                folder = latest(config.index_root)
                if folder.name != state["served"].bundle.version:
                    await swap(folder)
            except (OSError, ValueError):  # a half-published or removed version: next time
                continue

    async def reload(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        if not config.admin_token or not hmac.compare_digest(token, config.admin_token):
            raise BadRequest(401, "A valid bearer token is required")
        data = await body(request) if int(request.headers.get("content-length") or 0) else {}
        version = data.get("version")
        if version is not None and (
            not isinstance(version, str) or "/" in version or version.startswith(".")
        ):
            raise BadRequest(422, "version must be a folder name under the index root")
        folder = config.index_root / version if version else latest(config.index_root)
        if not folder.exists():
            raise BadRequest(404, f"No index version {version!r} under {config.index_root}")
        previous = await swap(folder)
        return JSONResponse(
            {"previous_version": previous, "index_version": state["served"].bundle.version}
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        install(await asyncio.to_thread(load_bundle, latest(config.index_root)))
        batcher.start()
        follower = asyncio.create_task(follow_latest()) if config.poll_seconds > 0 else None
        yield
        if follower is not None:
            follower.cancel()
        await batcher.stop()

    routes = [
        Route(
            "/v1/items/{item_id:path}/similar", handler("similar", similar_items), methods=["GET"]
        ),
        Route("/v1/recommend", handler("recommend", recommend), methods=["POST"]),
        Route("/healthz", handler("healthz", healthz), methods=["GET"]),
        Route("/metrics", metrics_text, methods=["GET"]),
        Route("/v1/admin/reload", handler("reload", reload), methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
