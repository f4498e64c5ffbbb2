"""The similar-items and recommendation service: a Starlette ASGI app.

Read-only endpoints serve the current :class:`~serving.artifact.IndexBundle`; a reload
builds the next bundle off the event loop and swaps one reference, so requests in flight
finish on the bundle they started with. Requests are validated by the models in
:mod:`serving.schemas`; every answer, errors included, is JSON, and no exception reaches
the server (an unexpected one is a logged, counted 500 with a JSON body, and the
connection stays usable). Bodies are read against a size limit and a time limit as they
arrive, chunked ones included. The OpenAPI document is at ``/openapi.json``, a page that
renders it at ``/docs``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np
import orjson
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from serving import schemas as S
from serving.artifact import IndexBundle, load_bundle
from serving.batcher import MicroBatcher, Searchable
from serving.e2e_ranker import E2ERanker, newest_ranker
from serving.index_versions import Selection, load_newest
from serving.metrics import Metrics
from serving.neural_metric import NeuralMetric, newest_metric, scoring_device
from serving.neural_search import NeuralSearcher
from serving.openapi import DOCS_PAGE, openapi_document
from serving.retrieval import (
    EVENT_WEIGHTS,
    Hit,
    Keep,
    nearest,
    recommend_multi_seed,
    weighted_mean,
)

log = logging.getLogger("cograph.serving")
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class ServiceConfig:
    index_root: Path  # <lake>/ann_index: version folders and the LATEST pointer
    admin_token: str = ""  # empty: the admin endpoints refuse everyone
    micro_batching: bool = True
    max_batch: int = 64
    max_wait_ms: float = 0.0
    max_body_bytes: int = 64 * 1024
    body_timeout_s: float = 10.0  # the whole body must arrive within this
    poll_seconds: float = 0.0  # > 0: reload by itself when LATEST moves (incremental updates)
    url: str = ""  # where clients reach it, for the start-up line
    default_domain: str = "default"  # the domain of items whose catalog names none
    ranker_root: Path | None = None  # <lake>/e2e_ranker: the end-to-end rankers' versions
    metric_root: Path | None = None  # <lake>/relevance_model: the neural relevance's versions
    workers: int = 1  # processes serving the port; above 1 the admin endpoints answer 409
    device: str = "auto"  # where strategy neural scores: auto (CUDA when present), cpu, cuda[:N]

    def to_json(self) -> str:
        """For worker processes (:func:`serving.__main__.worker_app`)."""
        return json.dumps({k: str(v) if isinstance(v, Path) else v
                           for k, v in dataclasses.asdict(self).items()})  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> ServiceConfig:
        values = json.loads(text)
        for name in ("index_root", "ranker_root", "metric_root"):
            values[name] = None if values[name] is None else Path(values[name])
        return cls(**values)


class Json(JSONResponse):
    """JSON through orjson: a 64-id batch answer is 640 result rows, and the standard
    library's encoder was a large share of a request's time."""

    def render(self, content: object) -> bytes:
        return orjson.dumps(content)


class BadRequest(Exception):
    def __init__(self, status: int, detail: str, errors: list[S.FieldError] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.errors = status, detail, errors or []


def error_response(status: int, detail: str, errors: list[S.FieldError] | None = None) -> Response:
    body = S.Error(detail=detail, errors=errors or [])
    return Json(body.model_dump(), status_code=status)


def invalid(error: ValidationError) -> BadRequest:
    """A 422 naming each refused field (never echoing huge inputs)."""
    fields = [
        S.FieldError(field=".".join(str(p) for p in e["loc"]) or ".", message=e["msg"][:200])
        for e in error.errors(include_url=False)[:20]
    ]
    summary = "; ".join(f"{f.field}: {f.message}" for f in fields[:3])
    return BadRequest(422, f"Invalid request: {summary}", fields)


class Models(NamedTuple):
    """What the service re-scores or searches with beside the index (each may be absent)."""

    ranker: E2ERanker | None
    metric: NeuralMetric | None


def load_models(config: ServiceConfig) -> Models:
    metric = newest_metric(config.metric_root)
    if metric is not None:
        metric = metric.on(scoring_device(config.device))
    return Models(newest_ranker(config.ranker_root), metric)


class Served:
    """The current bundle and its lookups, replaced as a whole on reload."""

    def __init__(self, bundle: IndexBundle, folder: Path, default_domain: str, models: Models):
        self.bundle, self.folder, self.ranker = bundle, folder.name, models.ranker
        self.neural, self.no_neural = neural_searcher(bundle, models.metric)
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
        columns = bundle.entities.column_names
        ids = bundle.entities.column("entity_id").to_pylist()

        def by_entity(name: str) -> dict[int, str | None]:
            values = bundle.entities.column(name).to_pylist() if name in columns else []
            return dict(zip(ids, values, strict=False))

        self.title_of, self.domain_of = by_entity("title"), by_entity("domain")
        # an item without a domain is in the default one, as the cross-domain holdout counts it
        self.default_domain = default_domain
        self.domains = {d or self.default_domain for d in self.domain_of.values()}
        self.log_degree = bundle.log_degree

    def score(self, query: np.ndarray, entity: int) -> float:
        """The served score ``[h, w] · [h_e, log(1 + deg_e)]`` of one entity for a query."""
        vector = np.asarray(self.bundle.vectors[entity], dtype=np.float32)
        return float(query[:-1] @ vector + query[-1] * self.log_degree[entity])

    def entity(self, item_id: str) -> int | None:
        entity = self.entity_of.get(item_id)
        return entity if entity is not None and self.bundle.index.contains(entity) else None

    def known(self, item_id: str) -> int:
        entity = self.entity(item_id)
        if entity is None:
            raise BadRequest(404, f"Unknown item_id {item_id[:200]!r}")
        return entity

    def keep(self, filters: S.Filters) -> Keep | None:
        if filters.domain is None:
            return None
        if not self.domain_of:
            raise BadRequest(422, "domain: this index has no item domains")
        if filters.domain not in self.domains:
            known = ", ".join(sorted(self.domains)[:20])
            raise BadRequest(422, f"domain: unknown domain {filters.domain!r} (known: {known})")
        return lambda e: (self.domain_of.get(e) or self.default_domain) == filters.domain

    def excluded(self, filters: S.Filters) -> set[int]:
        return {e for item in filters.exclude if (e := self.entity(item)) is not None}

    def results(self, hits: list[Hit], queries: np.ndarray, explain_for: int | None) -> list[dict]:
        """:class:`~serving.schemas.Result` rows, built as plain dicts (a model per row
        cost more than the search). A hit's prior is the weight its query carries (the last
        component of ``[h, w]``) times its log-degree; the rest of the score is similarity."""
        out = []
        for hit in hits:
            prior = float(queries[hit.row, -1] * self.log_degree[hit.entity])
            row = {
                "item_id": self.item_of[hit.entity],
                "score": round(hit.score, 6),
                "similarity": round(hit.score - prior, 6),
                "prior": round(prior, 6),
            }
            for name, facts in (("title", self.title_of), ("domain", self.domain_of)):
                if (value := facts.get(hit.entity)) is not None:
                    row[name] = value
            if explain_for is not None:
                shared = self.concepts_of.get(explain_for, set()) & self.concepts_of.get(
                    hit.entity, set()
                )
                row["shared_concepts"] = sorted(shared)
            out.append(row)
        return out


def neural_searcher(
    bundle: IndexBundle, metric: NeuralMetric | None
) -> tuple[NeuralSearcher | None, str]:
    """The neural search over ``bundle``'s rows, or None and why (the 409's detail): a
    relevance model fits only the embeddings it was trained on."""
    if metric is None:
        return None, NO_METRIC
    served = str(bundle.meta.get("model_version", ""))
    if metric.embedding_version != served:
        return None, (
            f"The relevance model {metric.version} was trained on embeddings "
            f"{metric.embedding_version!r}, the index serves {served!r}: run neural_refresh "
            "(make demo-neural) for the served embeddings"
        )
    searcher = NeuralSearcher(bundle.index, bundle.vectors, metric)
    _ = searcher.graph  # built with the bundle's load, not inside the first request
    return searcher, ""


NO_METRIC = (
    "No neural relevance model is published: materialize relevance_model (make demo-neural); "
    "a model that does not beat the single-behaviour one is not published"
)
SEVERAL_WORKERS = (
    "Reload and pins need one worker: a request reaches one of several worker processes, "
    "and each follows LATEST by itself (--poll-seconds)"
)
E2E_CANDIDATES = 200  # strategy e2e: the ANN candidates the ranker re-scores
NO_RANKER = (
    "No end-to-end ranker is published: materialize e2e_ranker (make demo-e2e); a ranker "
    "that loses to two-stage is not published"
)


def with_scores(rows: list[dict], scores: list[float | None], name: str) -> list[dict]:
    """``rows`` with a re-scoring strategy's score ``name`` (``ranker_score``, ``relevance``)."""
    for row, score in zip(rows, scores, strict=False):
        if score is not None:
            row[name] = round(score, 6)
    return rows


_INT = re.compile(r"[+]?[0-9]{1,6}")
_FLOAT = re.compile(r"[+-]?([0-9]{1,6}(\.[0-9]{0,12})?|\.[0-9]{1,12})([eE][+-]?[0-9]{1,3})?")
_BOOL = {"true": True, "1": True, "false": False, "0": False}


def similar_query(request: Request) -> S.SimilarQuery:
    """The query string of a similar-items request, as strictly as a JSON body."""
    params = request.query_params
    raw: dict[str, object] = {}
    for name in set(params.keys()):
        values = params.getlist(name)
        if len(values) > 1:
            raise BadRequest(422, f"{name}: given {len(values)} times")
        raw[name] = values[0]
    parsers: dict[str, Callable[[str], object]] = {
        "k": lambda v: int(v) if _INT.fullmatch(v) else v,
        "prior": lambda v: float(v) if _FLOAT.fullmatch(v) else v,
        "explain": lambda v: _BOOL.get(v.lower(), v),
        "exclude": lambda v: [x for x in v.split(",") if x],
    }
    typed = {name: parsers.get(name, str)(str(value)) for name, value in raw.items()}
    try:
        return S.SimilarQuery.model_validate(typed)
    except ValidationError as error:
        raise invalid(error) from None


def create_app(config: ServiceConfig) -> Starlette:
    metrics = Metrics()
    batcher = MicroBatcher(config.max_batch, config.max_wait_ms, on_batch=metrics.batch)
    state: dict[str, Served] = {}
    selection = Selection(config.index_root)
    reload_lock = asyncio.Lock()

    def install(bundle: IndexBundle, folder: Path, models: Models) -> None:
        state["served"] = Served(bundle, folder, config.default_domain, models)
        metrics.index_version = bundle.version
        metrics.index_entities = len(bundle.index)

    async def search(
        index: Searchable, queries: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The index's (or the neural searcher's) answer, concurrent requests' rows
        batched into one call (for the neural searcher, Q-HiPANNS: their candidates are
        scored in shared calls)."""
        if config.micro_batching:
            return await batcher.search(index, queries, k)
        metrics.batch(len(queries))
        return await asyncio.to_thread(index.search, queries, k)

    def handler(
        route: str, fn: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            start = time.perf_counter()
            try:
                response = await fn(request)
            except BadRequest as error:
                response = error_response(error.status, error.detail, error.errors)
            except ClientDisconnect:
                response = error_response(400, "The client went away mid-request")
            except Exception:  # a bug: logged and counted, and the connection stays usable
                log.exception("Unexpected error on %s %s", request.method, route)
                response = error_response(500, "Internal error; it has been logged")
            metrics.request(route, response.status_code, time.perf_counter() - start)
            return response

        return wrapped

    async def read_body(request: Request) -> bytes:
        """The body, refused (413) as soon as it passes the limit and (408) when it takes
        longer than the body timeout to arrive."""
        declared = request.headers.get("content-length", "")
        if re.fullmatch(r"[0-9]{1,18}", declared) and int(declared) > config.max_body_bytes:
            raise BadRequest(413, f"Body over {config.max_body_bytes} bytes")
        chunks, size = [], 0
        try:
            async with asyncio.timeout(config.body_timeout_s):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > config.max_body_bytes:
                        raise BadRequest(413, f"Body over {config.max_body_bytes} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            raise BadRequest(408, f"Body not received within {config.body_timeout_s:g} s") from None
        return b"".join(chunks)

    async def parse(request: Request, model: type[M]) -> M:
        raw = await read_body(request)
        try:
            return model.model_validate_json(raw or b"{}")
        except ValidationError as error:
            raise invalid(error) from None

    async def similar_items(request: Request) -> Response:
        served = state["served"]
        item_id = request.path_params["item_id"]
        q = similar_query(request)
        entity = served.known(item_id)
        query = served.bundle.query(np.array([entity]), q.prior)
        skip = {entity} | served.excluded(q)
        run = partial(search, served.bundle.index)
        [hits] = await nearest(run, query, [skip], q.k, served.keep(q))
        return Json(
            {
                "item_id": item_id,
                "index_version": served.bundle.version,
                "results": served.results(hits, query, entity if q.explain else None),
            }
        )

    async def similar_batch(request: Request) -> Response:
        served = state["served"]
        req = await parse(request, S.SimilarBatchRequest)
        entities = [served.entity(item) for item in req.item_ids]
        known = np.array([e for e in entities if e is not None], dtype=np.int64)
        hits: list[list[Hit]] = []
        queries = served.bundle.query(known, req.prior)
        if len(known):
            excluded = served.excluded(req)
            skip = [{int(e)} | excluded for e in known]
            run = partial(search, served.bundle.index)
            hits = await nearest(run, queries, skip, req.k, served.keep(req))
        items, found = [], iter(range(len(known)))
        for item, entity in zip(req.item_ids, entities, strict=True):
            if entity is None:
                items.append({"item_id": item, "error": "unknown item_id"})
                continue
            row = next(found)
            explain = entity if req.explain else None
            results = served.results(hits[row], queries, explain)
            items.append({"item_id": item, "results": results})
        return Json({"index_version": served.bundle.version, "items": items})

    def history_of(
        served: Served, history: list[S.HistoryEntry]
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        entities, weights, unknown = [], [], []
        for entry in history:
            entity = served.entity(entry.item_id)
            if entity is None:
                unknown.append(entry.item_id)
                continue
            entities.append(entity)
            weights.append(entry.weight * EVENT_WEIGHTS[entry.event])
        if not entities:
            raise BadRequest(404, f"No known item in history: unknown item_id {unknown[:10]}")
        return np.array(entities), np.array(weights, dtype=np.float32), unknown

    async def recommend(request: Request) -> Response:
        served = state["served"]
        req = await parse(request, S.RecommendRequest)
        entities, weights, unknown = history_of(served, req.history)
        skip = set(entities.tolist()) | served.excluded(req)
        queries = served.bundle.query(entities, req.prior)
        run = partial(search, served.bundle.index)
        keep = served.keep(req)
        extra: list[float | None] = []
        if req.strategy == "neural":
            if served.neural is None:
                raise BadRequest(409, served.no_neural)
            user = weighted_mean(np.asarray(served.bundle.vectors[entities]), weights)[None, :]
            [found] = await nearest(partial(search, served.neural), user, [skip], req.k, keep)
            query = weighted_mean(queries, weights)[None, :]
            hits = [Hit(h.entity, served.score(query[0], h.entity), 0) for h in found]
            extra = [h.score for h in found]
        elif req.strategy in ("mean", "e2e"):
            query = weighted_mean(queries, weights)[None, :]
            if req.strategy == "e2e":
                if served.ranker is None:
                    raise BadRequest(409, NO_RANKER)
                [pool] = await nearest(run, query, [skip], max(req.k, E2E_CANDIDATES), keep)
                order = served.ranker.rerank(
                    [served.item_of[e] for e in entities.tolist()],
                    weights,
                    [served.item_of[h.entity] for h in pool],
                )[: req.k]
                hits = [pool[pos] for pos, _ in order]
                extra = [score for _, score in order]
            else:
                [hits] = await nearest(run, query, [skip], req.k, keep)
        else:
            # the most recent (last) heavy items seed the search
            order = np.argsort(-weights[::-1], kind="stable")[: req.seeds]
            query = queries[::-1][order]
            hits = await recommend_multi_seed(run, query, skip, req.k, keep)
        return Json(
            {
                "strategy": req.strategy,
                "index_version": served.bundle.version,
                "ignored_unknown_items": unknown,
                "results": with_scores(
                    served.results(hits, query, None),
                    extra,
                    "relevance" if req.strategy == "neural" else "ranker_score",
                ),
            }
        )

    def health() -> S.Health:
        served = state["served"]
        return S.Health(
            status="ok",
            index_version=served.bundle.version,
            entities=len(served.bundle.index),
            pinned=selection.pinned is not None,
            neural_device=served.neural.metric.device if served.neural else None,
        )

    async def healthz(request: Request) -> Response:
        return Json(health().model_dump())

    async def metrics_text(request: Request) -> Response:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    async def swap(folder: Path) -> str:
        """Load ``folder`` off the event loop and serve it; returns the previous version."""
        async with reload_lock:
            bundle = await asyncio.to_thread(load_bundle, folder)
            models = await asyncio.to_thread(load_models, config)
            previous = state["served"].bundle.version
            install(bundle, folder, models)
            metrics.reloads += 1
        return previous

    async def follow_latest() -> None:
        """Serve what :class:`Selection` wants; a version that does not load is logged,
        remembered and skipped, and the loop never ends on an error."""
        while True:
            await asyncio.sleep(config.poll_seconds)
            wanted = None
            try:
                wanted = selection.wanted()
                if wanted and wanted != state["served"].folder and not selection.known_bad(wanted):
                    await swap(config.index_root / wanted)
                    log.info("Serving index version %s", wanted)
            except Exception as error:  # a broken or half-removed version: keep serving
                if wanted:
                    selection.mark_bad(wanted)
                metrics.reload_failures += 1
                log.error("Index version %s does not load (%s: %s); still serving %s",
                          wanted, type(error).__name__, error,
                          state["served"].folder)  # fmt: skip

    def authorize(request: Request) -> None:
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        expected = config.admin_token.encode()
        if not expected or not hmac.compare_digest(token.encode("utf-8", "replace"), expected):
            raise BadRequest(401, "A valid bearer token is required")

    def one_worker() -> None:
        if config.workers > 1:
            raise BadRequest(409, SEVERAL_WORKERS)

    async def reload(request: Request) -> Response:
        authorize(request)
        one_worker()
        req = await parse(request, S.ReloadRequest)
        name = req.version or selection.wanted()
        folder = config.index_root / name if name else None
        if folder is None or not folder.is_dir():
            raise BadRequest(404, f"No index version {req.version!r}")
        try:
            previous = await swap(folder)
        except Exception as error:
            log.error("Reload of %s failed (%s: %s)", name, type(error).__name__, error)
            raise BadRequest(422, f"Index version {name!r} does not load") from None
        if req.version:
            selection.pin(req.version)
        else:
            selection.unpin()
        body = S.ReloadResponse(
            previous_version=previous,
            index_version=state["served"].bundle.version,
            pinned=selection.pinned is not None,
        )
        return Json(body.model_dump())

    async def unpin(request: Request) -> Response:
        authorize(request)
        one_worker()
        await parse(request, S.Strict)
        selection.unpin()
        return Json(health().model_dump())

    async def openapi(request: Request) -> Response:
        return Json(openapi_document())

    async def docs(request: Request) -> Response:
        return HTMLResponse(DOCS_PAGE)

    async def root(request: Request) -> Response:
        return Json({"service": "cograph similar items", "docs": "/docs",
                             "openapi": "/openapi.json", **health().model_dump()})  # fmt: skip

    async def http_error(request: Request, error: Exception) -> Response:
        """404 and 405 from routing, as JSON like every other answer, and counted."""
        status = error.status_code if isinstance(error, HTTPException) else 500
        detail = {404: "No such endpoint", 405: "Method not allowed"}.get(status, "HTTP error")
        metrics.request("unmatched", status, 0.0)
        headers = getattr(error, "headers", None)
        return Json(S.Error(detail=detail).model_dump(), status, headers=headers)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        bundle, folder = await asyncio.to_thread(load_newest, config.index_root, load_bundle)
        install(bundle, folder, await asyncio.to_thread(load_models, config))
        log.info("cograph similar items on %s: %s; API %s/docs",
                 config.url or "(in process)", summary(bundle, folder), config.url)  # fmt: skip
        batcher.start()
        follower = asyncio.create_task(follow_latest()) if config.poll_seconds > 0 else None
        yield
        if follower is not None:
            follower.cancel()
        await batcher.stop()

    routes = [
        Route("/", handler("root", root), methods=["GET"]),
        Route(
            "/v1/items/{item_id:path}/similar", handler("similar", similar_items), methods=["GET"]
        ),
        Route("/v1/items/similar:batch", handler("similar_batch", similar_batch), methods=["POST"]),
        Route("/v1/recommend", handler("recommend", recommend), methods=["POST"]),
        Route("/healthz", handler("healthz", healthz), methods=["GET"]),
        Route("/readyz", handler("readyz", healthz), methods=["GET"]),
        Route("/metrics", metrics_text, methods=["GET"]),
        Route("/openapi.json", handler("openapi", openapi), methods=["GET"]),
        Route("/docs", handler("docs", docs), methods=["GET"]),
        Route("/v1/admin/reload", handler("reload", reload), methods=["POST"]),
        Route("/v1/admin/unpin", handler("unpin", unpin), methods=["POST"]),
    ]
    return Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error}
    )


def summary(bundle: IndexBundle, folder: Path) -> str:
    """The start-up line's facts about the served version."""
    recall = bundle.meta.get("recall_at_10")
    shown = f"{recall:.3f}" if isinstance(recall, float) and math.isfinite(recall) else "n/a"
    return f"index version {folder.name}, {len(bundle.index):,} entities, recall@10 {shown}"
