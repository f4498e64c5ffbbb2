"""Resources: the Spark session and the lake (where tables and artifacts live)."""

import os
from pathlib import Path

import dagster as dg
from pyspark.sql import SparkSession

from spark_jobs.session import SparkCapabilities, SparkSettings, get_spark

ENV_PREFIX = "COGRAPH_"
DELTA_ENGINES = ("deltalake", "delta-spark")


def env(name: str, default: str) -> str:
    """A setting from ``COGRAPH_<NAME>``, the one prefix every deployment setting uses."""
    return os.getenv(f"{ENV_PREFIX}{name}", default)


class SparkResource(dg.ConfigurableResource):
    """One SparkSession per process; ``local[*]`` unless a master URL is configured.

    ``packages`` (``COGRAPH_SPARK_PACKAGES``) says which optional JVM packages load:
    ``auto`` (the jars ``make install`` fetched), ``none``, or Maven coordinates;
    :attr:`capabilities` says what loaded.
    """

    master: str = "local[*]"
    driver_memory: str = "4g"
    shuffle_partitions: int = 8
    packages: str = env("SPARK_PACKAGES", "auto")

    def _settings(self) -> SparkSettings:
        return SparkSettings(
            master=self.master,
            driver_memory=self.driver_memory,
            shuffle_partitions=self.shuffle_partitions,
            packages=self.packages,
        )

    @property
    def session(self) -> SparkSession:
        return get_spark(self._settings())[0]

    @property
    def capabilities(self) -> SparkCapabilities:
        return get_spark(self._settings())[1]


class LakeResource(dg.ConfigurableResource):
    """The lake root: Delta tables under ``<root>/<group>/<table>``, artifacts beside them."""

    root: str = "lake"
    # how long a writer waits for the lake's single-writer lease before failing
    writer_lease_seconds: float = float(env("WRITER_LEASE_SECONDS", "1800"))

    # Who commits Delta versions: deltalake (Spark writes Parquet, deltalake commits it; the
    # default: a commit takes a fraction of a second where delta-spark's takes seconds on one
    # machine) or delta-spark (Spark's own Delta writer and MERGE; needs its JVM package).
    delta_engine: str = env("DELTA_ENGINE", "deltalake")

    def path(self, *parts: str) -> Path:
        return Path(self.root).resolve().joinpath(*parts)

    def uses_delta_spark(self, capabilities: SparkCapabilities) -> bool:
        if self.delta_engine not in DELTA_ENGINES:
            raise ValueError(
                f"COGRAPH_DELTA_ENGINE={self.delta_engine!r}; expected one of {DELTA_ENGINES}"
            )
        if self.delta_engine == "delta-spark" and not capabilities.delta:
            raise RuntimeError(
                "COGRAPH_DELTA_ENGINE=delta-spark, but delta-spark is not on Spark's classpath "
                f"({capabilities.note or 'COGRAPH_SPARK_PACKAGES does not load it'})"
            )
        return self.delta_engine == "delta-spark"
