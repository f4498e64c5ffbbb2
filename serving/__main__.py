"""``python -m serving``: the similar-items service on the lake's latest ANN index.

Settings come from flags or ``COGRAPH_*`` variables: ``COGRAPH_LAKE_ROOT`` (the index is
``<lake>/ann_index/LATEST``), ``COGRAPH_ADMIN_TOKEN`` (bearer token of the reload
endpoint; unset, reload is refused), ``COGRAPH_MICRO_BATCHING`` (1 or 0),
``COGRAPH_RELOAD_POLL_SECONDS`` (follow ``LATEST`` by itself; 0 turns it off).
"""

from __future__ import annotations

import argparse

import uvicorn

from serving.app import ServiceConfig, create_app
from settings import current
from storage.layout import LakeLayout


def main() -> None:
    settings = current()
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__)
    parser.add_argument("--lake", default=settings.lake_root)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--micro-batching",
        type=int,
        choices=(0, 1),
        default=int(settings.micro_batching),
    )
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=0.0)
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=settings.reload_poll_seconds,
        help="check <lake>/ann_index/LATEST this often and serve a new version (0: never)",
    )
    args = parser.parse_args()
    config = ServiceConfig(
        index_root=LakeLayout.at(args.lake).index,
        admin_token=settings.admin_token,
        micro_batching=bool(args.micro_batching),
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        poll_seconds=args.poll_seconds,
    )
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
