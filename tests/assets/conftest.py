"""One materialized synthetic lake per test run; tests that change a lake work on a copy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from assets.raw import IngestConfig
from tests.assets.lakes import SMALL, run


@dataclass(frozen=True)
class Materialized:
    lake: Path
    result: dg.ExecuteInProcessResult


@pytest.fixture(scope="session")
def materialized_lake(spark, tmp_path_factory) -> Materialized:
    """Every asset on the small synthetic input, never changed: tests change copies."""
    lake = tmp_path_factory.mktemp("materialized")
    return Materialized(lake, run(lake, IngestConfig(synthetic=SMALL)))
