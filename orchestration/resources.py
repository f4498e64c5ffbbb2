"""Resources: the Spark session and the lake (where tables and artifacts live)."""

import os
from pathlib import Path

import dagster as dg
from pydantic import Field
from pyspark.sql import SparkSession

from spark_jobs.session import DEFAULT_PACKAGES, SparkCapabilities, SparkSettings, get_spark

ENV_PREFIX = "COGRAPH_"


def env(name: str, default: str) -> str:
    """A setting from ``COGRAPH_<NAME>``, the one prefix every deployment setting uses."""
    return os.getenv(f"{ENV_PREFIX}{name}", default)


class SparkResource(dg.ConfigurableResource):
    """One SparkSession per process; ``local[*]`` unless a master URL is configured.

    Delta Lake and GraphFrames are requested as JVM packages; where they cannot be
    resolved the session starts without them and :attr:`capabilities` says so.
    """

    master: str = "local[*]"
    driver_memory: str = "4g"
    shuffle_partitions: int = 8
    jvm_packages: list[str] = Field(default_factory=lambda: list(DEFAULT_PACKAGES))
    local_jars: list[str] = Field(default_factory=list)

    def _settings(self) -> SparkSettings:
        return SparkSettings(
            master=self.master,
            driver_memory=self.driver_memory,
            shuffle_partitions=self.shuffle_partitions,
            jvm_packages=tuple(self.jvm_packages),
            local_jars=tuple(self.local_jars),
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

    def path(self, *parts: str) -> Path:
        return Path(self.root).resolve().joinpath(*parts)
