"""The optional JVM packages (Delta Lake's delta-spark, GraphFrames): fetched once, loaded per run.

``make install`` runs ``python -m spark_jobs.jvm_packages``: Maven copies each package with
its runtime dependencies into its own folder under the jar folder (``COGRAPH_JVM_JARS``,
default ``.jvm`` in the checkout), less every jar that Spark ships itself (Spark's copy is the
one its classes were built against). A package that Maven cannot resolve is reported in one
line and left out; the others still load. At run time the session points ``spark.jars`` at
what was fetched: starting Spark resolves nothing, prints no Ivy report and starts once.

``COGRAPH_SPARK_PACKAGES`` says what a session loads:

- ``auto`` (default): the packages ``make install`` fetched, where there are any;
- ``none``: nothing (the offline path: Parquet written by Spark, committed by deltalake);
- Maven coordinates, comma-separated: fetched the same way when the session starts (once:
  the copy stays in the jar folder). One that cannot be fetched is named in one line, and
  remembered for the process, so a later session does not ask Maven again.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyspark

from settings import current

# The JVM releases are chosen here, not derived from the pip packages' versions: delta-spark
# 4.4.1 on PyPI has no 4.4.1 JVM artifact on Maven Central (4.4.0 is its JVM release).
PACKAGES = {
    "delta": "io.delta:delta-spark_2.13:4.4.0",
    "graphframes": "io.graphframes:graphframes-spark4_2.13:0.12.3",
}
DEFAULT_JAR_FOLDER = Path(__file__).resolve().parents[1] / ".jvm"
_MISSING = re.compile(r"\S+ was not found|Could not (?:find|transfer) artifact \S+")
_COMPLETE = "COORDINATE"  # written last into a package's folder: its copy is whole


_failed: dict[str, str] = {}  # coordinate -> why, for this process


@dataclass(frozen=True)
class JvmLibraries:
    """The jar files a session loads, and one line per package it could not have."""

    jars: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def jar_folder() -> Path:
    return Path(current().jvm_jars or DEFAULT_JAR_FOLDER)


def fetched(folder: Path | None = None) -> dict[str, list[Path]]:
    """The packages whose copy finished, by name, with their jars."""
    folder = folder or jar_folder()
    return {
        name: sorted((folder / name).glob("*.jar"))
        for name in PACKAGES
        if (folder / name / _COMPLETE).exists()
    }


def libraries(spec: str) -> JvmLibraries:
    """The jars for a ``COGRAPH_SPARK_PACKAGES`` value (see the module's docstring)."""
    spec = spec.strip()
    if spec == "none":
        return JvmLibraries()
    if spec == "auto":
        jars = tuple(str(j) for files in fetched().values() for j in files)
        if jars:
            return JvmLibraries(jars)
        return JvmLibraries(notes=(
            f"no JVM packages in {jar_folder()} (`python -m spark_jobs.jvm_packages` fetches "
            "them); Spark runs without delta-spark and GraphFrames",
        ))  # fmt: skip
    coordinates = [c.strip() for c in spec.split(",") if c.strip()]
    bad = [c for c in coordinates if c.count(":") != 2]
    if bad or not coordinates:
        raise ValueError(
            f"COGRAPH_SPARK_PACKAGES={spec!r}: expected 'auto', 'none' or Maven coordinates "
            f"group:artifact:version separated by commas (not {bad})"
        )
    folder, jars, notes = jar_folder(), [], []
    for coordinate in coordinates:
        name = coordinate.replace(":", "_")
        if coordinate not in _failed:
            report = fetch(name, coordinate, folder)
            if not (folder / name / _COMPLETE).exists():
                _failed[coordinate] = report
        if coordinate in _failed:
            notes.append(_failed[coordinate])
        else:
            jars += [str(j) for j in sorted((folder / name).glob("*.jar"))]
    return JvmLibraries(tuple(jars), tuple(notes))


def _base_name(jar: str) -> str:
    """``jackson-core-2.18.2.jar`` -> ``jackson-core``; ``delta-spark_2.13-4.4.0.jar`` ->
    ``delta-spark`` (the Scala suffix and the version are not part of the identity)."""
    stem = re.sub(r"-\d[\w.\-]*\.jar$", "", jar)
    return re.sub(r"_2\.1[23]$", "", stem)


def spark_shipped() -> set[str]:
    return {_base_name(j.name) for j in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}


def _pom(coordinate: str) -> str:
    group, artifact, version = coordinate.split(":")
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>cograph</groupId><artifactId>jvm-fetch</artifactId><version>0</version>"
        f"<dependencies><dependency><groupId>{group}</groupId><artifactId>{artifact}"
        f"</artifactId><version>{version}</version></dependency></dependencies></project>"
    )


def fetch(name: str, coordinate: str, folder: Path) -> str:
    """Copy one package and its runtime dependencies into ``folder/name``; say what happened."""
    target = folder / name
    marker = target / _COMPLETE
    if marker.exists() and marker.read_text().strip() == coordinate:
        return f"{name}: {coordinate} already fetched"
    if shutil.which("mvn") is None:
        return f"{name}: not fetched (no `mvn` on PATH); Spark runs without it"
    shutil.rmtree(target, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="cograph-jvm-") as tmp:
        (Path(tmp) / "pom.xml").write_text(_pom(coordinate))
        staging = Path(tmp) / "jars"
        done = subprocess.run(
            ["mvn", "-q", "-B", "dependency:copy-dependencies", "-DincludeScope=runtime",
             f"-DoutputDirectory={staging}"],
            cwd=tmp, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        if done.returncode != 0:
            found = _MISSING.search(done.stdout + done.stderr)
            reason = found.group(0) if found else f"mvn exited {done.returncode}"
            return f"{name}: {coordinate} not fetched ({reason}); Spark runs without it"
        shipped = spark_shipped()
        target.mkdir(parents=True)
        kept = [j for j in staging.glob("*.jar") if _base_name(j.name) not in shipped]
        for jar in kept:
            shutil.copy2(jar, target / jar.name)
    marker.write_text(coordinate + "\n")
    return f"{name}: {coordinate} fetched ({len(kept)} jars into {target})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=None, help="default: COGRAPH_JVM_JARS")
    parser.add_argument("names", nargs="*", help=f"of {sorted(PACKAGES)}; default: all")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(PACKAGES))
    if unknown:
        parser.error(f"unknown packages {unknown}; known: {sorted(PACKAGES)}")
    folder = args.folder or jar_folder()
    for name in args.names or PACKAGES:
        print(fetch(name, PACKAGES[name], folder), file=sys.stderr)


if __name__ == "__main__":
    main()
