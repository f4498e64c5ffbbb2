"""``python -m serving``: the similar-items service on the lake's latest ANN index.

Settings come from flags or ``COGRAPH_*`` variables (docs/settings.md):
``COGRAPH_LAKE_ROOT`` (the index is ``<lake>/ann_index/LATEST``), ``COGRAPH_ADMIN_TOKEN``
(bearer token of the admin endpoints; unset, they refuse everyone),
``COGRAPH_MICRO_BATCHING``, ``COGRAPH_RELOAD_POLL_SECONDS`` (follow ``LATEST``; 0: never).

Connection limits: at most ``--max-connections`` connections and requests in flight (more
get 503), a keep-alive connection closes after ``--keep-alive-seconds`` idle, a body must
arrive within ``--body-timeout-seconds`` and stay under 64 KiB. Slow request *headers*
are not timed out by uvicorn: put a proxy in front where clients are untrusted.
"""

from __future__ import annotations

import argparse
import logging
import os

import uvicorn
from starlette.applications import Starlette

from serving.app import ServiceConfig, create_app
from serving.http_protocol import SettingsHeaderDeadline, with_header_timeout
from settings import current
from storage.layout import LakeLayout

CONFIG_ENV = "SERVING_WORKER_CONFIG"  # how the parent hands its config to the workers
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
THREAD_POOLS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def worker_app() -> Starlette:
    """One worker process's app (``--workers`` above 1), configured by the parent."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    return create_app(ServiceConfig.from_json(os.environ[CONFIG_ENV]))


def main() -> None:
    settings = current()
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__)
    parser.add_argument("--lake", default=settings.lake_root)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--micro-batching", type=int, choices=(0, 1), default=int(settings.micro_batching)
    )
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=0.0)
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=settings.reload_poll_seconds,
        help="check <lake>/ann_index/LATEST this often and serve a new version (0: never)",
    )
    parser.add_argument("--max-connections", type=int, default=1000)
    parser.add_argument("--keep-alive-seconds", type=float, default=5.0)
    parser.add_argument("--body-timeout-seconds", type=float, default=10.0)
    parser.add_argument(
        "--header-timeout-seconds",
        type=float,
        default=settings.header_timeout_seconds,
        help="a request's headers must arrive within this (else 408 and the connection closes)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the port, each with its own copy of the index (the vectors "
        "are memory-mapped and shared); above 1, /v1/admin/reload and unpin answer 409 and "
        "each worker follows LATEST by itself (--poll-seconds), and /metrics is per worker",
    )
    args = parser.parse_args()
    config = ServiceConfig(
        index_root=LakeLayout.at(args.lake).index,
        ranker_root=LakeLayout.at(args.lake).e2e_rankers,
        metric_root=LakeLayout.at(args.lake).relevance_models,
        admin_token=settings.admin_token,
        micro_batching=bool(args.micro_batching),
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        body_timeout_s=args.body_timeout_seconds,
        poll_seconds=args.poll_seconds,
        url=f"http://{args.host}:{args.port}",
        default_domain=settings.default_domain,
        workers=args.workers,
        device=settings.device,
    )
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    if args.workers > 1:  # workers import the app and the protocol class by name
        os.environ[CONFIG_ENV] = config.to_json()
        timeout = type(settings).variable("header_timeout_seconds")  # what the workers read
        os.environ[timeout] = str(args.header_timeout_seconds)
        # the cores divided among the workers: faiss's and BLAS's thread pools in every
        # worker would otherwise each claim all of them (measured: a p99 of 1.2 s)
        threads = str(max(1, (os.cpu_count() or 1) // args.workers))
        for pool in THREAD_POOLS:
            os.environ.setdefault(pool, threads)
        app, http = "serving.__main__:worker_app", SettingsHeaderDeadline
    else:
        app, http = create_app(config), with_header_timeout(args.header_timeout_seconds)
    uvicorn.run(
        app,
        factory=args.workers > 1,
        workers=args.workers,
        host=args.host,
        port=args.port,
        log_level="info" if args.access_log else "warning",
        access_log=args.access_log,
        limit_concurrency=args.max_connections,
        timeout_keep_alive=int(args.keep_alive_seconds),
        http=http,
    )


if __name__ == "__main__":
    main()
