"""One materialized synthetic lake per test run; tests that change a lake work on a copy."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from assets.raw import IngestConfig
from tests.assets.lakes import SMALL, run
from tests.conftest import ROOT


@dataclass(frozen=True)
class Materialized:
    lake: Path
    result: dg.ExecuteInProcessResult
    home: Path  # the DAGSTER_HOME that holds the run (the UI test serves it)


@pytest.fixture(scope="session")
def materialized_lake(spark, tmp_path_factory) -> Materialized:
    """Every asset on the small synthetic input, never changed: tests change copies."""
    lake = tmp_path_factory.mktemp("materialized")
    home = tmp_path_factory.mktemp("dagster_home")
    # the project's instance config, as `make` installs it (no onboarding dialog in the UI)
    shutil.copy(ROOT / "orchestration" / "dagster.yaml", home / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(home))  # open while the session runs
    return Materialized(lake, run(lake, IngestConfig(synthetic=SMALL), instance=instance), home)
