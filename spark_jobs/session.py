"""The one place a SparkSession is built.

The session asks for the Delta Lake and GraphFrames JVM packages through
``spark.jars.packages`` (or local jars). Where they cannot be resolved (no Maven
repository reachable, as on an air-gapped machine), Ivy fails within seconds; the
session is then started again without them and the failure is logged once. Callers
look at :class:`SparkCapabilities` to pick the Delta or the Parquet + deltalake path.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from dataclasses import dataclass, field
from importlib.metadata import version

from pyspark import SparkContext
from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


def _maven_coordinate(group_artifact: str, pip_name: str) -> str:
    # The JVM package is released in step with its Python package, as
    # delta-spark's own configure_spark_with_delta_pip assumes.
    return f"{group_artifact}:{version(pip_name)}"


DEFAULT_PACKAGES = (
    _maven_coordinate("io.delta:delta-spark_2.13", "delta-spark"),
    _maven_coordinate("io.graphframes:graphframes-spark4_2.13", "graphframes-py"),
)

_DELTA_CLASS = "io.delta.sql.DeltaSparkSessionExtension"
_GRAPHFRAMES_CLASS = "org.graphframes.GraphFramePythonAPI"


@dataclass(frozen=True)
class SparkSettings:
    """How to start Spark. Every field has a laptop default."""

    master: str = "local[*]"
    app_name: str = "cograph"
    driver_memory: str = "4g"
    shuffle_partitions: int = 8
    jvm_packages: tuple[str, ...] = DEFAULT_PACKAGES
    local_jars: tuple[str, ...] = ()
    extra_conf: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SparkCapabilities:
    """Which optional JVM libraries the running session can use."""

    delta: bool
    graphframes: bool
    note: str = ""


_cached: tuple[SparkSession, SparkCapabilities] | None = None


def _builder(settings: SparkSettings, with_jvm_libs: bool) -> SparkSession.Builder:
    builder = (
        SparkSession.builder.master(settings.master)
        .appName(settings.app_name)
        .config("spark.driver.memory", settings.driver_memory)
        .config("spark.sql.shuffle.partitions", str(settings.shuffle_partitions))
        # deltalake (and Delta readers in general) refuse Spark's legacy INT96 timestamps.
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    )
    for key, value in settings.extra_conf.items():
        builder = builder.config(key, value)
    if with_jvm_libs:
        if settings.jvm_packages:
            builder = builder.config("spark.jars.packages", ",".join(settings.jvm_packages))
        if settings.local_jars:
            builder = builder.config("spark.jars", ",".join(settings.local_jars))
        builder = builder.config("spark.sql.extensions", _DELTA_CLASS).config(
            "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        )
    return builder


def _class_loads(spark: SparkSession, name: str) -> bool:
    try:
        loader = spark._jvm.Thread.currentThread().getContextClassLoader()  # type: ignore[union-attr]
        spark._jvm.java.lang.Class.forName(name, True, loader)  # type: ignore[union-attr]
    except Exception:  # py4j raises its own error type for ClassNotFoundException
        return False
    return True


def _start(settings: SparkSettings) -> tuple[SparkSession, SparkCapabilities]:
    wants_jvm_libs = bool(settings.jvm_packages or settings.local_jars)
    note = ""
    spark: SparkSession | None = None
    if wants_jvm_libs:
        try:
            spark = _builder(settings, with_jvm_libs=True).getOrCreate()
        except Exception as exc:  # Ivy resolution failure surfaces as a gateway exit
            note = (
                f"JVM packages {list(settings.jvm_packages) + list(settings.local_jars)} could "
                f"not be loaded ({type(exc).__name__}); Spark started without them: Delta "
                "tables are committed with deltalake and graph algorithms run on DataFrames."
            )
            log.warning(note)
    if spark is None:
        spark = _builder(settings, with_jvm_libs=False).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    if spark.sparkContext.getCheckpointDir() is None:  # GraphFrames' components need one
        spark.sparkContext.setCheckpointDir(tempfile.mkdtemp(prefix="cograph-checkpoints-"))
    caps = SparkCapabilities(
        delta=_class_loads(spark, _DELTA_CLASS),
        graphframes=_class_loads(spark, _GRAPHFRAMES_CLASS),
        note=note,
    )
    return spark, caps


def get_spark(settings: SparkSettings | None = None) -> tuple[SparkSession, SparkCapabilities]:
    """Return the process-wide session, starting it on first use.

    One JVM per process: a second call with other settings gets the running session
    (Spark cannot host two contexts in one process).
    """
    global _cached
    if _cached is not None and SparkContext._active_spark_context is not None:
        return _cached
    settings = settings or SparkSettings()
    # Python workers must run this interpreter (with pyarrow), not whatever `python3` is.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    _cached = _start(settings)
    return _cached
