"""The optional JVM packages: what a COGRAPH_SPARK_PACKAGES value loads, and a session that
starts once, with one warning line, when a package cannot be fetched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spark_jobs import jvm_packages
from spark_jobs.jvm_packages import _base_name, fetched, libraries

ROOT = Path(__file__).resolve().parents[2]


def test_jar_identity_drops_version_and_scala_suffix():
    assert _base_name("jackson-core-2.18.2.jar") == "jackson-core"
    assert _base_name("delta-spark_2.13-4.4.0.jar") == "delta-spark"
    assert _base_name("zstd-jni-1.5.7-3.jar") == "zstd-jni"
    assert _base_name("hadoop-client-api-3.4.2.jar") == "hadoop-client-api"


def test_settings_values(monkeypatch, tmp_path):
    assert libraries("none").jars == () and libraries("none").notes == ()
    with pytest.raises(ValueError, match="expected 'auto', 'none' or Maven coordinates"):
        libraries("delta")
    monkeypatch.setenv("COGRAPH_JVM_JARS", str(tmp_path))
    empty = libraries("auto")
    assert empty.jars == () and "no JVM packages in" in empty.notes[0]


def test_auto_loads_the_fetched_delta_without_sparks_own_jars(caps):
    delta = fetched().get("delta")
    if delta is None and not os.getenv("CI"):
        pytest.skip("delta-spark was not fetched on this machine (no Maven repository)")
    names = {_base_name(j.name) for j in delta}
    assert {"delta-spark", "delta-storage"} <= names
    assert not names & jvm_packages.spark_shipped()  # Spark's own copies win
    assert caps.delta  # and the tests' session (packages=auto) loaded them


def test_a_failed_fetch_is_remembered_for_the_process(monkeypatch, tmp_path):
    monkeypatch.setenv("COGRAPH_JVM_JARS", str(tmp_path))
    monkeypatch.setattr(jvm_packages, "_failed", {})
    calls = []

    def refuse(name, coordinate, folder):
        calls.append(coordinate)
        return f"{name}: {coordinate} not fetched (was not found)"

    monkeypatch.setattr(jvm_packages, "fetch", refuse)
    for _ in range(2):
        libs = libraries("org.example:missing:1.0")
        assert libs.jars == () and libs.notes == (
            "org.example_missing_1.0: org.example:missing:1.0 not fetched (was not found)",
        )
    assert calls == ["org.example:missing:1.0"]


def test_session_without_an_unserved_package_starts_once_with_one_warning(tmp_path):
    """A real run in its own process (one JVM per process): Maven answers 'not found' for
    a version that was never published, and Spark starts without it."""
    script = (
        "import logging; logging.basicConfig(level=logging.WARNING);"
        "from spark_jobs.session import SparkSettings, get_spark;"
        "spark, caps = get_spark(SparkSettings(master='local[1]', "
        "packages='io.delta:delta-spark_2.13:0.0.0-never-published'));"
        "print('DELTA', caps.delta, spark.range(3).count())"
    )
    env = {**os.environ, "COGRAPH_JVM_JARS": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "DELTA False 3" in done.stdout
    ours = [ln for ln in done.stderr.splitlines() if "not fetched" in ln]
    assert len(ours) == 1 and "0.0.0-never-published" in ours[0]
    # no resolver report, no Java stack, and none of Spark's default-profile banners (the
    # driver logs through spark_jobs/log4j2.properties)
    assert not [ln for ln in done.stderr.splitlines() if ln.startswith(("\tat ", "::", "Ivy"))]
    assert "log4j profile" not in done.stderr and "native-hadoop" not in done.stderr
