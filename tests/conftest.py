"""Session-wide fixtures: one SparkSession (real, local) and the MovieLens path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from spark_jobs.session import SparkCapabilities, SparkSettings, get_spark

ROOT = Path(__file__).resolve().parents[1]
MOVIELENS = Path(
    os.getenv("COGRAPH_MOVIELENS_PATH", ROOT.parent / "shared/datasets/ml-latest-small")
)

# The same settings the tests' Dagster resources use, so every test shares one JVM.
# The default JVM packages are requested on purpose: offline, that exercises the
# start-without-them path once per test run.
TEST_SPARK = SparkSettings(master="local[2]", driver_memory="2g", shuffle_partitions=4)


@pytest.fixture(scope="session")
def spark_and_caps() -> tuple[SparkSession, SparkCapabilities]:
    return get_spark(TEST_SPARK)


@pytest.fixture(scope="session")
def spark(spark_and_caps: tuple[SparkSession, SparkCapabilities]) -> SparkSession:
    return spark_and_caps[0]


@pytest.fixture(scope="session")
def caps(spark_and_caps: tuple[SparkSession, SparkCapabilities]) -> SparkCapabilities:
    return spark_and_caps[1]


@pytest.fixture(scope="session")
def movielens() -> Path:
    if not (MOVIELENS / "ratings.csv").exists():
        pytest.skip(f"MovieLens not found at {MOVIELENS} (set COGRAPH_MOVIELENS_PATH)")
    return MOVIELENS
