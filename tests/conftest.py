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
# It loads the JVM packages `make install` fetched (delta-spark), as a run does by default;
# which engine commits a table is the lake's setting, so both paths run in this JVM. It
# holds every test's local checkpoints: with 2 GiB, a late broadcast join in the end-to-end
# smoke test once ran out of driver memory ("Not enough memory to build and broadcast").
TEST_SPARK = SparkSettings(master="local[2]", driver_memory="4g", shuffle_partitions=4)


@pytest.fixture(scope="session")
def spark_and_caps() -> tuple[SparkSession, SparkCapabilities]:
    return get_spark(TEST_SPARK)


@pytest.fixture(scope="session")
def spark(spark_and_caps: tuple[SparkSession, SparkCapabilities]) -> SparkSession:
    return spark_and_caps[0]


@pytest.fixture(autouse=True, scope="module")
def _release_cached_frames():
    """Assets persist frames for their own writes; one session serves every test module,
    so drop what a module cached before the next one runs (as a fresh run process would)."""
    yield
    active = SparkSession.getActiveSession()
    if active is not None:
        active.catalog.clearCache()


@pytest.fixture(scope="session")
def caps(spark_and_caps: tuple[SparkSession, SparkCapabilities]) -> SparkCapabilities:
    return spark_and_caps[1]


def require_jvm(caps: SparkCapabilities, package: str) -> None:
    """Skip a test whose JVM package did not load; in CI delta-spark must have loaded
    (Maven serves it), GraphFrames may not (Maven Central here does not serve it)."""
    if getattr(caps, package):
        return
    reason = f"{package} JVM package not on Spark's classpath ({caps.note or 'not fetched'})"
    if package == "delta" and os.getenv("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def movielens() -> Path:
    if not (MOVIELENS / "ratings.csv").exists():
        pytest.skip(f"MovieLens not found at {MOVIELENS} (set COGRAPH_MOVIELENS_PATH)")
    return MOVIELENS


@pytest.fixture(scope="session")
def movielens_graph(spark, movielens, tmp_path_factory) -> dict:
    """The knowledge graph of ml-latest-small (built once per test run)."""
    from spark_jobs.coengagement import CoengagementParams, build_coengagement
    from spark_jobs.graph import GraphParams, build_graph, prune_triples
    from spark_jobs.ingest import ingest
    from spark_jobs.readers import read_movielens

    staging = tmp_path_factory.mktemp("movielens-staging")
    out = ingest(read_movielens(spark, movielens, staging=staging), "ml")
    params = GraphParams()
    edges = build_coengagement(out.interactions, CoengagementParams(max_items_per_user=50))
    graph = build_graph(out.catalog, edges, prune_triples(out.concepts, params), params)
    return {name: df.persist() for name, df in graph.items()}
