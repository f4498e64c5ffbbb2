"""Resources: the Spark session and the lake (where tables and artifacts live)."""

from typing import Literal

import dagster as dg
from pydantic import Field
from pyspark.sql import SparkSession

from settings import config_field
from spark_jobs.session import SparkCapabilities, SparkSettings, get_spark
from storage.layout import LakeLayout


class SparkResource(dg.ConfigurableResource):
    """One SparkSession per process; ``local[*]`` unless a master URL is configured.
    :attr:`capabilities` says which optional JVM packages loaded."""

    master: str = config_field("spark_master")
    driver_memory: str = Field("4g", description="Spark driver memory.")
    shuffle_partitions: int = Field(8, description="Partitions of Spark's shuffles.")
    packages: str = config_field("spark_packages")

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

    root: str = config_field("lake_root")
    writer_lease_seconds: float = config_field("writer_lease_seconds")
    # deltalake is the default: its commit takes a fraction of a second where delta-spark's
    # takes seconds on one machine (delta-spark needs its JVM package)
    delta_engine: Literal["deltalake", "delta-spark"] = config_field("delta_engine")

    @property
    def layout(self) -> LakeLayout:
        return LakeLayout.at(self.root)

    def uses_delta_spark(self, capabilities: SparkCapabilities) -> bool:
        if self.delta_engine == "delta-spark" and not capabilities.delta:
            raise RuntimeError(
                "COGRAPH_DELTA_ENGINE=delta-spark, but delta-spark is not on Spark's classpath "
                f"({capabilities.note or 'COGRAPH_SPARK_PACKAGES does not load it'})"
            )
        return self.delta_engine == "delta-spark"
