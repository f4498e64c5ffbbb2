"""The whole lineage materialized in process, for benchmarks that time it."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import dagster as dg

from assets.model import TrainConfig, TransEConfig
from assets.raw import IngestConfig
from orchestration.definitions import ASSETS, CHECKS, CROSS_DOMAIN, REFRESH


@dataclass(frozen=True)
class Refresh:
    seconds: float
    step_seconds: dict[str, float]  # Dagster step key -> its duration from the event log


def full_refresh(
    resources: dict,
    ingest: IngestConfig,
    quick: bool = False,
    cross_domain: bool = False,
    ops: dict | None = None,
) -> Refresh:
    """What the ``full_refresh`` job rebuilds (with ``cross_domain``: what
    ``cross_domain_refresh`` does, given a target on the resource), the default training
    config unless ``quick``; ``ops`` overrides the config of the steps it names."""
    ops = {"raw_tables": ingest, **(ops or {})}
    if quick:
        ops["concept_pretraining"] = TransEConfig(dim=16, epochs=3)
        ops["gnn_checkpoint"] = TrainConfig(dim=16, epochs=2, models=["semantic"])
    # benchmarks measure time, not quality: the gate must not stop the index being built
    previous = os.environ.get("COGRAPH_GATE_MARGIN")
    os.environ["COGRAPH_GATE_MARGIN"] = "1.0"
    try:
        start = time.perf_counter()
        result = dg.materialize(
            [*ASSETS, *CHECKS],
            selection=REFRESH | CROSS_DOMAIN if cross_domain else REFRESH,
            resources=resources,
            run_config=dg.RunConfig(ops=ops),
        )
        seconds = time.perf_counter() - start
    finally:
        if previous is None:
            os.environ.pop("COGRAPH_GATE_MARGIN")
        else:
            os.environ["COGRAPH_GATE_MARGIN"] = previous
    steps = {
        e.step_key: e.event_specific_data.duration_ms / 1000
        for e in result.all_events
        if e.event_type_value == "STEP_SUCCESS"
    }
    return Refresh(seconds, steps)
