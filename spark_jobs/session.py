"""The one place a SparkSession is built.

The session loads the optional JVM packages (delta-spark, GraphFrames) as local jars that
:mod:`spark_jobs.jvm_packages` fetched with Maven, so a start resolves nothing; a package
that could not be fetched is one warning line. Callers look at :class:`SparkCapabilities`
to see what loaded.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pyspark import SparkContext
from pyspark.sql import SparkSession

from spark_jobs.jvm_packages import JvmLibraries, libraries

log = logging.getLogger(__name__)

_DELTA_CLASS = "io.delta.sql.DeltaSparkSessionExtension"
_GRAPHFRAMES_CLASS = "org.graphframes.GraphFramePythonAPI"


@dataclass(frozen=True)
class SparkSettings:
    """How to start Spark. Every field has a laptop default."""

    master: str = "local[*]"
    app_name: str = "cograph"
    driver_memory: str = "4g"
    shuffle_partitions: int = 8
    packages: str = "auto"  # COGRAPH_SPARK_PACKAGES: auto, none or Maven coordinates
    extra_conf: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SparkCapabilities:
    """Which optional JVM libraries the running session can use."""

    delta: bool
    graphframes: bool
    note: str = ""


_cached: tuple[SparkSession, SparkCapabilities] | None = None
LOG4J = Path(__file__).with_name("log4j2.properties")


def _builder(settings: SparkSettings, libs: JvmLibraries) -> SparkSession.Builder:
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
        .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={LOG4J}")
    )
    for key, value in settings.extra_conf.items():
        builder = builder.config(key, value)
    if libs.jars:
        builder = builder.config("spark.jars", ",".join(libs.jars))
    if any(Path(jar).name.startswith("delta-spark") for jar in libs.jars):
        builder = (
            builder.config("spark.sql.extensions", _DELTA_CLASS)
            .config(
                "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
            )
            # Delta rebuilds a table's snapshot over 50 partitions by default: on a few
            # cores that is most of a small commit's time (25 s against 44 s for five
            # appends and a MERGE of 10^5 rows, measured on 2 cores)
            .config("spark.databricks.delta.snapshotPartitions", str(settings.shuffle_partitions))
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
    libs = libraries(settings.packages)
    notes = list(libs.notes)
    spark: SparkSession | None = None
    if libs.jars:
        try:
            spark = _builder(settings, libs).getOrCreate()
        except Exception as exc:  # a jar the JVM refuses surfaces as a gateway exit
            notes.append(f"Spark did not start with {len(libs.jars)} JVM jars ({exc})")
    if spark is None:
        spark = _builder(settings, JvmLibraries()).getOrCreate()
    note = "; ".join(notes)
    if note:
        log.warning(note)
    spark.sparkContext.setLogLevel("ERROR")
    if spark.sparkContext.getCheckpointDir() is None:  # GraphFrames' components need one
        checkpoints = tempfile.mkdtemp(prefix="cograph-checkpoints-")
        atexit.register(shutil.rmtree, checkpoints, ignore_errors=True)
        spark.sparkContext.setCheckpointDir(checkpoints)
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
